"""Models by name. One explicit dict; unknown names raise."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .cnn import PaperCNN

__all__ = ["MODELS", "build_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "paper-cnn": PaperCNN,
}


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model: ``build_model("paper-cnn", num_classes=2, width=0.25, image_size=64)``."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return factory(**kwargs)
