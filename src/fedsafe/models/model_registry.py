"""Models by name: the registry (``paper-cnn``), MONAI networks (``monai:<Name>``) and user factories
(``package.module:factory``, ``external.py``); :func:`check_model` proves a built model fits its task.

Every model maps a (B, in_channels, image_size, image_size) float batch in [0, 1] to (B, num_classes) logits.

Example:
    >>> m = build_model("paper-cnn", num_classes=2, in_channels=1, image_size=16, kwargs={"width": 0.05})
    >>> check_model(m, "paper-cnn", num_classes=2, in_channels=1, image_size=16)
    >>> describe_model(m)["class"]
    'fedsafe.models.cnn.PaperCNN'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .cnn import PaperCNN
from .external import ModelError, build_external, is_external, one_line
from .inference import eval_mode

__all__ = ["MODELS", "ModelError", "build_model", "check_model", "describe_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "paper-cnn": PaperCNN,
}
"""Registered models: called with ``num_classes``, ``in_channels``, ``image_size`` and their own keywords."""


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: int,
                kwargs: Mapping[str, Any] | None = None, **extra: Any) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes on (in_channels, image_size, image_size) inputs.

    ``name``: a registered model (``paper-cnn``), ``monai:<Network>`` or ``package.module:factory``;
    ``kwargs`` (``model.kwargs``) and ``extra`` are passed on (the paper CNN's ``width``, ``dropout``, ...).
    Raises ModelError (a ValueError, one line naming the model) when it cannot be built.
    """
    both = sorted(set(kwargs or {}) & set(extra))
    if both:
        raise ModelError(f"model {name!r}: {both[0]!r} is given twice, in model.kwargs and as model.{both[0]}; "
                         "give it once")
    every = {**(kwargs or {}), **extra}
    if is_external(name):
        return build_external(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                              kwargs=every)
    try:
        factory = MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}, monai:<Network> or "
                         "package.module:factory") from None
    try:
        return factory(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **every)
    except (TypeError, ValueError) as e:
        raise ModelError(f"model {name!r}: {one_line(e)}") from None


def check_model(model: object, name: str, *, num_classes: int, in_channels: int, image_size: int) -> None:
    """One forward pass in eval mode (mode restored) on a zero batch (2, in_channels, image_size, image_size): the
    model must be an ``nn.Module`` with trainable floating-point parameters that returns (2, num_classes)
    floating-point logits. Raises ModelError (one line naming the model) otherwise."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"model {name!r}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    params = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
    if not params:
        raise ModelError(f"model {name!r}: has no trainable floating-point parameters")
    shape = (2, in_channels, image_size, image_size)
    try:
        with eval_mode(model), torch.no_grad():
            out = model(torch.zeros(shape, device=params[0].device, dtype=params[0].dtype))
    except Exception as e:  # noqa: BLE001 -- any failure of a forward pass on the task's shape is the finding
        raise ModelError(f"model {name!r}: a forward pass on a zero batch {shape} failed ({one_line(e)})") from None
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"model {name!r}: returned a {type(out).__name__} for a batch {shape}, expected a tensor "
                         f"of logits (2, {num_classes})")
    if tuple(out.shape) != (2, num_classes) or not out.is_floating_point():
        raise ModelError(f"model {name!r}: returned {out.dtype} {tuple(out.shape)} for a batch {shape}, expected "
                         f"floating-point logits (2, {num_classes}) for the task's {num_classes} classes")


def describe_model(model: nn.Module) -> dict[str, Any]:
    """What a run records of its model besides ``model.name`` and ``model.kwargs``: its class and size."""
    cls = type(model)
    return {"class": f"{cls.__module__}.{cls.__qualname__}",
            "parameters": sum(p.numel() for p in model.parameters()),
            "buffers": sum(b.numel() for b in model.buffers())}
