"""The evaluation loop of transfer (design §8): every client plays the attacker in turn, every client's final
model is evaluated on each attacker's adversarial examples.

For each attack configuration and each attacker m: m crafts adversarial examples on its own final model from its
own attack/test set X_m, with its model's clean predictions as labels (true labels as an option), from the start
:func:`fedsafe.evaluation.start_resolution.start_delta` resolves; then every client c's final model is evaluated on
X_m and on the adversarial X_m: per (m, c) clean accuracy, ASR (authors' and literal), attack accuracy, AETR
(:mod:`fedsafe.metrics.transfer`), the cosine of the input gradients of m and c (:mod:`fedsafe.metrics.alignment`),
and the attack's cost (wall seconds per batch, forward/backward passes per image).

A gradient-free attack (Square, :mod:`fedsafe.attacks.square`) runs the same way from its own random start, its
draws from the generator ``torch_generator(seed, "square", m)`` consumed batch after batch; its row counts the
forward passes it spent an image (at most queries + 1, the labels' included) and no gradient pass.

Precision: fp32 by default (evaluation exactness); "bf16" autocast is allowed and recorded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..attacks.iterative import AttackResult, attack_in_batches, iterative_attack
from ..attacks.registry import get_attack, get_query_attack
from ..attacks.spec import AttackSpec
from ..defaults import ATTACK_BATCH_SIZE, ATTACK_PRECISION
from ..metrics.alignment import gradient_cosine
from ..metrics.transfer import transfer_row
from ..models.inference import predict
from ..precision import resolve_precision
from ..progress import Progress, report
from ..runs.run import open_run
from ..seeding import torch_generator
from .adaptive_attacks import NOT_ADAPTIVE, adaptive_attack
from .results import TransferResult, make_result, nanmean
from .run_context import RunContext, load_context
from .sanity_cache import sanity_warnings
from .start_resolution import start_delta

__all__ = ["evaluate_transfer"]

log = logging.getLogger(__name__)


def _attack_kwargs(spec: AttackSpec, precision: str) -> dict[str, Any]:
    if spec.query:
        return {"eps": spec.eps, "queries": spec.steps, "precision": precision}
    kw: dict[str, Any] = {"eps": spec.eps, "centre_grad": spec.centre_grad, "precision": precision}
    if spec.attack != "fgsm":
        kw.update(alpha=spec.alpha, steps=spec.steps)
    return kw


def _predictions(models: Sequence[nn.Module], x: torch.Tensor, precision: str) -> np.ndarray:
    return np.stack([predict(m, x, precision=precision).cpu().numpy() for m in models])


def _evaluate_attacker(ctx: RunContext, spec: AttackSpec, m: int, *, precision: str, batch_size: int,
                       crn_precision: str, cosines: dict) -> tuple[list[dict[str, Any]], Any, np.ndarray]:
    split = ctx.data.client_test[m]
    x, y, model = split.x, split.y, ctx.models[m]
    labels = predict(model, x, precision=precision) if spec.labels == "pred" else y.clone()
    if spec.query:  # its own random start (stripes), its own generator
        start, source, crn_info = None, f"{spec.attack}-own", {}
        fn, extra, adaptive = (get_query_attack(spec.attack),
                               {"generator": torch_generator(spec.seed, spec.attack, m)}, NOT_ADAPTIVE)
    else:
        start, source, crn_info = start_delta(ctx, spec, m, x, crn_precision=crn_precision)
        # the insider's adaptive attacks (EOT over the downlink noise, the received copies' ensemble) take more inputs
        fn, extra, adaptive = adaptive_attack(ctx, spec, m) if spec.adaptive else (get_attack(spec.attack), {},
                                                                                   NOT_ADAPTIVE)
    res: AttackResult = attack_in_batches(fn, model, x, labels, batch_size=batch_size, start=start,
                                          **_attack_kwargs(spec, precision), **extra)
    batches = math.ceil(len(x) / batch_size)
    clean, adv = _predictions(ctx.models, x, precision), _predictions(ctx.models, res.x_adv, precision)
    row = transfer_row(clean, adv, y.cpu().numpy(), attacker=m)
    ckey = (m, spec.labels)
    if ckey not in cosines:  # independent of the attack: once per attacker and label kind
        cosines[ckey] = np.array([nanmean(gradient_cosine(model, target, x, labels).cpu().numpy())
                                  for target in ctx.models])
    align = cosines[ckey]
    base = {"attacker": m, "attack": spec.attack, "label": spec.label, "eps": spec.eps, "alpha": spec.alpha,
            "steps": spec.steps, "start": spec.start.name, "start_source": source,  # type: ignore[union-attr]
            "seed": spec.seed, "labels": spec.labels, "centre_grad": spec.centre_grad, "precision": precision,
            "n": row.n, "attack_seconds_per_batch": res.seconds / batches, "batch_size": min(batch_size, len(x)),
            "batches": batches, "fb_passes_per_image": res.forward_backward,
            "forward_passes_per_image": int(spec.labels == "pred") + res.forwards, "crn_window": None,
            "crn_steps": None, "crn_alpha": None, "crn_passes_per_image": 0, "crn_seconds": 0.0}
    base.update(crn_info)
    base.update(adaptive)
    rows = []
    for c in range(ctx.num_clients):
        rows.append({**base, "target": c, "self": c == m, "clean_acc": row.clean_acc[c],
                     "attack_acc": row.attack_acc[c], "asr": row.asr[c], "asr_literal": row.asr_literal[c],
                     "aetr": row.aetr[c], "n_correct": int(row.n_correct[c]), "n_aetr": int(row.n_aetr[c]),
                     "grad_cosine": align[c]})
    return rows, row, align


def _warm_up(ctx: RunContext, precision: str, batch_size: int) -> None:
    """One step on a batch of the timed shape first, so that lazy initialisation (kernel selection for a new
    shape) is not billed to the first timed attack."""
    x = ctx.data.client_test[0].x[:batch_size]
    iterative_attack(ctx.models[0], x, "pred", eps=0.01, alpha=0.01, steps=1, precision=precision)


def evaluate_transfer(
    run: str | Path | RunContext,
    specs: AttackSpec | Sequence[AttackSpec],
    *,
    precision: str = ATTACK_PRECISION,
    batch_size: int = ATTACK_BATCH_SIZE,
    crn_precision: str = ATTACK_PRECISION,
    sanity: bool = True,
    write: bool = True,
    progress: Progress | None = None,
) -> list[TransferResult]:
    """Evaluate each attack configuration of ``specs`` on the run (a directory, opened with
    :func:`fedsafe.runs.open_run`, or a :func:`load_context` context).

    ``batch_size`` images are attacked at a time (the papers' "one batch": 100, one client's attack set).
    Returns one :class:`TransferResult` per spec; with ``write`` their CSV and JSON go to ``RUN/attacks/``.
    """
    specs = [specs] if isinstance(specs, AttackSpec) else list(specs)
    if not specs:
        raise ValueError("no attack configuration to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    precision, crn_precision = resolve_precision(precision), resolve_precision(crn_precision)
    ctx = run if isinstance(run, RunContext) else load_context(open_run(run), progress=progress)
    warnings = sanity_warnings(ctx, precision=precision, cache=write) if sanity else []
    for w in warnings:
        log.info("sanity check: %s", w)
    _warm_up(ctx, precision, batch_size)
    cosines: dict = {}
    run_fields = {"run_dir": str(ctx.store.root), "task": ctx.data.task, "synthetic": ctx.data.synthetic,
                  "num_clients": ctx.num_clients}
    results, total, done = [], len(specs) * ctx.num_clients, 0
    for spec in specs:
        rows, trows, aligns = [], [], []
        for m in range(ctx.num_clients):
            report(progress, "attacks", done, total)
            r, t, a = _evaluate_attacker(ctx, spec, m, precision=precision, batch_size=batch_size,
                                         crn_precision=crn_precision, cosines=cosines)
            rows += r
            trows.append(t)
            aligns.append(a)
            done += 1
        report(progress, "attacks", done, total)
        key = spec.key(precision=precision, batch_size=batch_size, crn_precision=crn_precision)
        results.append(make_result(spec, rows, trows, np.stack(aligns), key=key, run=run_fields, warnings=warnings,
                                   precision=precision, crn_precision=crn_precision,
                                   layout=ctx.store.layout if write else None))
    return results
