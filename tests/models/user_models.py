"""Model factories as a user writes them (``model.name: user_models:<factory>``; the tests put this folder on
``sys.path``). Not fedsafe code: plain torch, with the conventions fedsafe asks of a factory."""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    """Two conv -> BatchNorm -> ReLU -> max-pool blocks and a linear head; attribute names unlike the papers' CNN."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, hidden: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(hidden * (image_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.body(x), 1))


def make_net(*, num_classes: int, in_channels: int, image_size: int, hidden: int = 8) -> nn.Module:
    return SmallNet(num_classes, in_channels, image_size, hidden)


def wrong_shape(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return SmallNet(num_classes + 1, in_channels, image_size)


def not_a_module(*, num_classes: int, in_channels: int, image_size: int) -> object:
    return {"num_classes": num_classes}


def no_image_size(*, num_classes: int, in_channels: int) -> nn.Module:
    return SmallNet(num_classes, in_channels, 16)


NOT_CALLABLE = 3
