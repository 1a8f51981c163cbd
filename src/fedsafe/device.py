"""Where a run computes (design §10): ``auto`` takes CUDA when present, else the CPU.

Every model, batch, attack and evaluation runs on the resolved device; random draws stay on CPU generators
(:mod:`fedsafe.seeding`), so a seed gives the same noise and splits on every device.

>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import re

import torch

from .hardware import cpu_features

__all__ = ["DeviceError", "describe_device", "resolve_device"]

_SYNTAX = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


class DeviceError(ValueError):
    """A device that is not valid or not present on this machine (one-line message)."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto | cpu | cuda | cuda:N`` -> a :class:`torch.device` present on this machine.

    Raises DeviceError for another string, for ``cuda`` on a machine without a usable CUDA device, and for a
    ``cuda:N`` beyond the devices present.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not _SYNTAX.fullmatch(name):
        raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for, but this machine has no usable CUDA device (torch "
                          f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto")
    index = int(name.split(":")[1]) if ":" in name else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                          "device(s)")
    return torch.device("cuda", index)


def describe_device(device: torch.device) -> str:
    """A human-readable name: ``cpu: AMD EPYC (x86_64; bf16 dot products: AVX512-BF16; no AMX)`` (the CPU's bf16
    units, :mod:`fedsafe.hardware`) or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu: {cpu_features().describe()}"
    return str(device)
