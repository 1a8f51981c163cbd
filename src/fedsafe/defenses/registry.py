"""Defences by name (SPEC section 5). One explicit dict; each entry builds the simulator hooks."""

from __future__ import annotations

from collections.abc import Callable

from ..config import ExperimentConfig
from ..federation.data import FederatedData
from ..federation.hooks import Hooks
from ..federation.simulator import FederationSpec
from .adversarial_training import build_adversarial_training
from .client_adversarial import build_client_adversarial_training
from .fed_safe import build_fed_safe

__all__ = ["DEFENSES", "hooks_for"]


def _none(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> Hooks:
    return Hooks()


DEFENSES: dict[str, Callable[[ExperimentConfig, FederatedData, FederationSpec], Hooks]] = {
    "none": _none,
    "adversarial-training": build_adversarial_training,
    "fed-safe": build_fed_safe,
    "client-adversarial-training": build_client_adversarial_training,
}


def hooks_for(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> Hooks:
    try:
        build = DEFENSES[cfg.defense.name]
    except KeyError:
        raise ValueError(f"defense.name: unknown defence {cfg.defense.name!r}; known: {', '.join(DEFENSES)}") from None
    hooks = build(cfg, data, spec)
    # -- online cross-round noise (SPEC 7): every client's CRN buffer, beside whatever defence is in use --
    if cfg.crn.enabled:
        import dataclasses

        from ..attacks.crn_hook import CrnClientHook

        if hooks.client is not None:
            raise ValueError(f"crn.enabled: defence {cfg.defense.name!r} already has a client hook")
        hooks = dataclasses.replace(hooks, client=CrnClientHook.from_config(cfg, data, spec))
    return hooks
