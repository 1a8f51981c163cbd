"""Carlini et al.'s sanity checks (:mod:`fedsafe.attacks.sanity`) of a run's attack evaluation, run once per run,
precision and version of the rules (:data:`fedsafe.attacks.sanity.RULES_VERSION`) and cached in
``RUN/attacks/sanity.json`` (through the run's store); a cache made under other rules is recomputed.

The eps curve: BIM-5 with step eps / 2.5 (it can cross the ball) at eps 0 (must give 0%), a small eps and a large
one (must give ~100%): 3 x 100 images x 12 passes a client (about a quarter of a PGD-40 evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..attacks.iterative import iterative_attack
from ..attacks.sanity import RULES_VERSION, run_sanity_checks
from ..defaults import ATTACK_PRECISION
from ..runs.store import RunFileError
from .run_context import RunContext

__all__ = ["SANITY_EPS", "SANITY_STEPS", "sanity_cache", "sanity_warnings"]

SANITY_EPS = (0.0, 0.03, 0.5)
SANITY_STEPS = 5


def _sanity_attack(model: nn.Module, x: torch.Tensor, precision: str) -> Callable[[float], torch.Tensor]:
    def attack(eps: float) -> torch.Tensor:  # eps = 0: one step, the clamp keeps x
        steps, alpha = (1, 1e-3) if eps == 0 else (SANITY_STEPS, eps / 2.5)
        return iterative_attack(model, x, "pred", eps=eps, alpha=alpha, steps=steps, precision=precision).x_adv

    return attack


def sanity_cache(ctx: RunContext) -> Path:
    """Where a run's sanity checks are cached: ``RUN/attacks/sanity.json``."""
    return ctx.store.layout.sanity


def sanity_warnings(ctx: RunContext, *, precision: str = ATTACK_PRECISION, cache: bool = True) -> list[str]:
    """The checks on every client's final model and attack set; warnings prefixed by client. With ``cache``
    they are read from / written to ``RUN/attacks/sanity.json`` (per precision; recomputed when made under other
    rules)."""
    path = sanity_cache(ctx)
    stored = {}
    if cache and path.is_file():
        try:
            stored = ctx.store.read_json(path)
        except RunFileError:
            stored = {}  # a damaged cache is recomputed
    if precision in stored and stored[precision].get("rules") == RULES_VERSION:
        return list(stored[precision]["warnings"])
    warnings = []
    for i, model in enumerate(ctx.models):
        x = ctx.data.client_test[i].x
        for w in run_sanity_checks(model, x, attack_at_eps=_sanity_attack(model, x, precision),
                                   eps_values=SANITY_EPS):
            warnings.append(f"client {i}: {w}")
    if cache:
        stored[precision] = {"warnings": warnings, "rules": RULES_VERSION, "eps_values": list(SANITY_EPS),
                             "attack": f"BIM-{SANITY_STEPS}, alpha eps/2.5"}
        ctx.store.write_json(path, stored)
    return warnings
