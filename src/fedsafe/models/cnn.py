"""The papers' CNN (Darzi et al., Fed-Safe and CRN papers; layer sizes from the authors' code, design §2).

conv3x3(pad 1) in->100->150, maxpool 2; 150->200->200, maxpool 2; 200->250->250, maxpool 2; flatten;
linear ->64->32->16->8, dropout 0.25, ->classes; ReLU after every layer but the last.

The convolution widths are scaled by ``width`` (1.0 = the papers' model). The model takes pixels in [0, 1]
and normalises inside itself, so attack budgets are in pixel units. The normalisation constants are
non-persistent buffers: they are not part of the state dict, so they are never noised, clipped or averaged.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PaperCNN", "conv_widths"]

_BASE_WIDTHS = (100, 150, 200, 200, 250, 250)
_FC = (64, 32, 16, 8)


def conv_widths(width: float) -> tuple[int, ...]:
    if not 0 < width <= 4:
        raise ValueError(f"width multiplier must be in (0, 4], got {width}")
    return tuple(max(1, round(c * width)) for c in _BASE_WIDTHS)


class _PoolReLU(nn.MaxPool2d):
    """Max-pooling, then ReLU: equal to ReLU then max-pooling, values and gradients alike (the pooled maximum of
    the ReLU is the ReLU of the maximum; where it is positive both route the gradient to the same first maximum,
    elsewhere both give 0), with the ReLU on a quarter of the elements."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(super().forward(x))


class PaperCNN(nn.Module):
    """Six 3x3 convolutions and five linear layers.

    Args:
        num_classes: output logits.
        in_channels: 1 (grey) or 3 (RGB).
        image_size: side of the square input (the papers: 100 for MRI, 96 for pathology).
        width: convolution width multiplier.
        mean, std: per-channel normalisation applied to the [0, 1] input.
        dropout: dropout before the last linear layer (papers: 0.25).

    Shapes: (B, in_channels, image_size, image_size) float in [0, 1] -> (B, num_classes) logits.

    >>> m = PaperCNN(num_classes=2, in_channels=1, image_size=32, width=0.1)
    >>> m(torch.rand(4, 1, 32, 32)).shape
    torch.Size([4, 2])
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 100,
        width: float = 1.0,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        c = conv_widths(width)
        self.num_classes, self.in_channels, self.image_size, self.width = num_classes, in_channels, image_size, width
        mean = mean if mean is not None else (0.5,) * in_channels
        std = std if std is not None else (0.5,) * in_channels
        if len(mean) != in_channels or len(std) != in_channels or min(std) <= 0:
            raise ValueError(f"mean/std must have {in_channels} entries and std > 0, got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        def conv(i: int, o: int, relu: bool = True) -> nn.Module:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), *([nn.ReLU(inplace=True)] if relu else []))

        # the ReLU of the convolution before each pooling runs after the pooling (_PoolReLU): the same numbers
        # forward and backward (max commutes with ReLU), on a quarter of the elements; the state dict's keys
        # are those of conv -> ReLU -> pool
        self.features = nn.Sequential(
            conv(in_channels, c[0]), conv(c[0], c[1], relu=False), _PoolReLU(2),
            conv(c[1], c[2]), conv(c[2], c[3], relu=False), _PoolReLU(2),
            conv(c[3], c[4]), conv(c[4], c[5], relu=False), _PoolReLU(2),
        )
        side = image_size // 2 // 2 // 2
        self.flat_features = c[5] * side * side
        layers: list[nn.Module] = []
        prev = self.flat_features
        for h in _FC:
            layers += [nn.Linear(prev, h), nn.ReLU(inplace=True)]
            prev = h
        layers += [nn.Dropout(dropout), nn.Linear(prev, num_classes)]
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.classifier(torch.flatten(self.features(x), 1))

    def macs_per_image(self) -> int:
        """Multiply-accumulates of one forward pass (convolutions and linear layers)."""
        total, side, cin = 0, self.image_size, self.in_channels
        for block in self.features:
            if isinstance(block, nn.MaxPool2d):
                side //= 2
                continue
            conv = block[0]
            total += side * side * conv.out_channels * cin * 9
            cin = conv.out_channels
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                total += layer.in_features * layer.out_features
        return total

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
