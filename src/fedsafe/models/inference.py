"""A model's mode and its predicted labels, one home for local training, evaluation, the attacks and the metrics.

A mode change is a context manager that restores every submodule's own previous mode (a frozen batch-norm layer in
an otherwise training model stays frozen). :func:`predict` runs in eval mode without gradient, in batches, under
``precision``'s autocast.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Dropout(0.5))
>>> predict(net, torch.zeros(5, 1, 2, 2), batch_size=2).shape, net.training
(torch.Size([5]), True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..precision import autocast, resolve_precision

__all__ = ["eval_mode", "predict", "train_mode"]


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, was in modes:
            m.training = was


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each one's previous mode."""
    return _mode(model, False)


def train_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Put every submodule in train mode for the block, then restore each one's previous mode."""
    return _mode(model, True)


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int | None = None, precision: str = "fp32",
            channels_last: bool = False) -> torch.Tensor:
    """The model's predicted labels (N,) int64 on ``x`` (N, C, H, W): eval mode (restored after), no gradient,
    ``batch_size`` images at a time (None: all at once), under ``precision``'s autocast ("auto" resolved for
    ``x``'s device), each batch in channels-last memory format when ``channels_last``."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if x.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    prec = resolve_precision(precision, x.device)
    size = batch_size or x.shape[0]
    out = []
    with eval_mode(model), torch.no_grad(), autocast(prec, x.device.type):
        for start in range(0, x.shape[0], size):
            xb = x[start:start + size]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            out.append(model(xb).argmax(1))
    return torch.cat(out)
