"""Numeric precision: fp32, or bf16 autocast where the hardware has fast bf16 matrix units.

``"auto"`` resolves to ``"bf16"`` on a CPU with AMX or AVX512-BF16 that oneDNN may use (see
:mod:`fedsafe.hardware`), or a CUDA device that supports bf16, else ``"fp32"``. bf16 is only ever used through
:func:`autocast`: parameters, inputs and input gradients stay fp32, so attack budgets and pixel clipping are exact
whatever the precision.

>>> resolve_precision("fp32")
'fp32'
>>> with autocast("fp32"):
...     pass
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal, TypeVar

import torch
from torch import nn

from .hardware import cpu_features
from .names import PRECISIONS as _NAMES

__all__ = ["Precision", "autocast", "cpu_has_fast_bf16", "resolve_precision", "to_channels_last"]

Precision = Literal["fp32", "bf16"]
T = TypeVar("T", nn.Module, torch.Tensor)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has bf16 matrix/dot-product instructions (AMX-BF16 or AVX512-BF16) and oneDNN is not
    capped below them (``ONEDNN_MAX_CPU_ISA``)."""
    return cpu_features().fast_bf16


def resolve_precision(name: str, device: str | torch.device = "cpu") -> Precision:
    """Map ``"fp32" | "bf16" | "auto"`` to ``"fp32" | "bf16"`` for ``device``."""
    if name not in _NAMES:
        raise ValueError(f"precision must be one of {_NAMES}, got {name!r}")
    if name != "auto":
        return name  # type: ignore[return-value]
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


@contextlib.contextmanager
def autocast(precision: str, device_type: str = "cpu") -> Iterator[None]:
    """``torch.autocast(bfloat16)`` for ``"bf16"``, nothing for ``"fp32"`` (``"auto"`` is resolved first)."""
    if resolve_precision(precision, device_type) == "fp32":
        yield
        return
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
        yield


def to_channels_last(obj: T) -> T:
    """A 4-D tensor in channels-last memory format (a new tensor; values unchanged), or a module converted
    *in place* (as ``Module.to`` does) and returned. Other tensors are returned as they are."""
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=torch.channels_last)
    if isinstance(obj, torch.Tensor):
        return obj.contiguous(memory_format=torch.channels_last) if obj.dim() == 4 else obj
    raise TypeError(f"expected an nn.Module or a torch.Tensor, got {type(obj).__name__}")
