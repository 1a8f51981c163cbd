"""Defenses by name (design §5). One explicit dict; each entry builds the simulator hooks from the defense's
config, the federation's data and spec, and a factory of the run's model (in its training format and device)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import DefenseConfig
from ..federation.federated_data import FederatedData
from ..federation.federation_spec import FederationSpec
from ..federation.hooks import Hooks
from .adversarial_training import build_adversarial_training, build_adversarial_training_shared
from .client_adversarial import build_client_adversarial_training
from .fed_safe import build_fed_safe

__all__ = ["DEFENSES", "defense_hooks"]

Builder = Callable[[DefenseConfig, FederatedData, FederationSpec, Callable[[], nn.Module]], Hooks]


def _none(defense: DefenseConfig, data: FederatedData, spec: FederationSpec,
          model_factory: Callable[[], nn.Module]) -> Hooks:
    return Hooks()


DEFENSES: dict[str, Builder] = {
    "none": _none,
    "adversarial-training": build_adversarial_training,
    "fed-safe": build_fed_safe,
    "client-adversarial-training": build_client_adversarial_training,
    "adversarial-training-shared": build_adversarial_training_shared,
}


def defense_hooks(defense: DefenseConfig, data: FederatedData, spec: FederationSpec,
                  model_factory: Callable[[], nn.Module]) -> Hooks:
    """The hooks of the defense ``defense.name``; ValueError naming the known ones otherwise."""
    try:
        build = DEFENSES[defense.name]
    except KeyError:
        raise ValueError(f"defense.name: unknown defense {defense.name!r}; known: {', '.join(DEFENSES)}") from None
    return build(defense, data, spec, model_factory)
