"""Start resolution: the delta an attacker's step loop starts from (design §§6-7), for a
:class:`fedsafe.attacks.spec.Start` on a loaded run.

* zero: delta = 0;
* uniform ("random"): a uniform point of the eps-ball from the generator ``torch_generator(seed, "attack-start", m)``;
* CRN-R: the attacker's cross-round noise at the start's own settings (:meth:`Start.crn_settings`: its budget and
  step, else the run's). The buffer the client hook accumulated online (``checkpoint.pt`` client states) is used
  when its settings equal these; otherwise it is replayed from the received copies the run kept
  (:func:`fedsafe.attacks.crn_hook.replay_crn`) and memoised on the context. Either way it is then projected into
  the attack's own eps-ball. Which one was used is returned ("crn-online" / "crn-replayed");
* CRN-R on the final model (``Start.crn(R, final=True)``, the control of design §7): the same R rounds of j centred
  steps, every round on the attacker's final model instead of the copy it received ("crn-final-model"): the same
  step loop, steps and step size, one model.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ..attacks.budget import check_window
from ..attacks.crn import CrnState, crn_replay
from ..attacks.crn_hook import crn_state_from, replay_crn
from ..attacks.spec import AttackSpec, CrnSettings
from ..attacks.starts import project_start, uniform_start
from ..defaults import ATTACK_PRECISION
from ..seeding import torch_generator
from .run_context import RunContext

__all__ = ["crn_start", "start_delta"]


def crn_start(ctx: RunContext, spec: AttackSpec, attacker: int, *, precision: str = ATTACK_PRECISION,
              batch_size: int | None = None) -> tuple[torch.Tensor, str, dict[str, Any]]:
    """(delta, source, info) of attacker ``attacker``'s CRN-R start: the online buffer if its settings match, else
    replayed (``source`` "crn-online" or "crn-replayed"; ``info``: the settings and the seconds the replay took)."""
    s = spec.start.crn_settings(ctx.cfg)  # type: ignore[union-attr]
    check_window(s.window, total_rounds=ctx.total_rounds)
    info = {"crn_window": s.window, "crn_steps": s.steps, "crn_alpha": s.alpha, "crn_centre_grad": s.centre_grad,
            "crn_passes_per_image": s.window * s.steps, "crn_seconds": 0.0}
    final = spec.start.final  # type: ignore[union-attr]
    online = crn_state_from(ctx.client_states[attacker], s.window) if ctx.client_states and not final else None
    if online is not None and online.rounds == s.window and _same(online, s):
        return online.delta, "crn-online", info
    key = (attacker, s.window, s.eps, s.alpha, s.steps, s.centre_grad, precision, batch_size, final)
    if final and key not in ctx.crn_cache:
        t0 = time.perf_counter()
        delta = crn_replay([ctx.models[attacker]] * s.window, ctx.data.client_test[attacker].x, eps=s.eps,
                           steps=s.steps, alpha=s.alpha, centre_grad=s.centre_grad, precision=precision,
                           batch_size=batch_size)
        ctx.crn_cache[key] = (delta, time.perf_counter() - t0)
    if key not in ctx.crn_cache:
        t0 = time.perf_counter()
        rounds = range(ctx.total_rounds - s.window + 1, ctx.total_rounds + 1)
        received = ctx.store.received_window(attacker, rounds)
        delta = replay_crn(received, ctx.data.client_test[attacker].x, model_factory=ctx.model_factory,
                           precision=precision, batch_size=batch_size, eps=s.eps, steps=s.steps, alpha=s.alpha,
                           centre_grad=s.centre_grad)
        ctx.crn_cache[key] = (delta, time.perf_counter() - t0)
    delta, seconds = ctx.crn_cache[key]
    info["crn_seconds"] = seconds
    return delta, "crn-final-model" if final else "crn-replayed", info


def _same(state: CrnState, s: CrnSettings) -> bool:
    return (math.isclose(state.eps, s.eps, rel_tol=1e-9) and math.isclose(state.alpha, s.alpha, rel_tol=1e-9)
            and state.steps == s.steps and state.centre_grad == s.centre_grad)


def start_delta(ctx: RunContext, spec: AttackSpec, attacker: int, x: torch.Tensor, *,
                crn_precision: str = ATTACK_PRECISION) -> tuple[torch.Tensor, str, dict[str, Any]]:
    """(delta, source, info) of ``spec``'s start for attacker ``attacker`` on its attack set ``x`` (n, C, H, W)."""
    kind = spec.start.kind  # type: ignore[union-attr]
    if kind == "zero":
        return torch.zeros_like(x), "zero", {}
    if kind == "uniform":
        return uniform_start(x, spec.eps, torch_generator(spec.seed, "attack-start", attacker)), "random", {}
    if spec.eps == 0:  # the ball is a point: nothing to start from
        return torch.zeros_like(x), "zero (eps=0)", {}
    delta, source, info = crn_start(ctx, spec, attacker, precision=crn_precision)
    return project_start(x, delta, spec.eps), source, info
