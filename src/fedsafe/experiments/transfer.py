"""Evaluation of transfer from a run directory (SPEC section 8): every client plays the attacker in turn,
every client's final model is evaluated on each attacker's adversarial examples.

For each attack configuration (:class:`AttackSpec`) and each attacker m:

1. m crafts adversarial examples on its own final model from its own attack/test set X_m, with its model's
   clean predictions as labels (true labels as an option), starting from zero, a uniform random point of
   the eps-ball (generator ``torch_generator(seed, "attack-start", m)``), or its cross-round noise CRN-R;
2. every client c's final model is evaluated on X_m and on the adversarial X_m; per (m, c): clean accuracy,
   ASR (authors' and literal), attack accuracy, AETR (:mod:`fedsafe.metrics.transfer`), the cosine of the
   input gradients of m and c (:mod:`fedsafe.metrics.alignment`), and the attack's cost (wall seconds per
   batch, forward/backward passes per image).

CRN start: the buffer the client hook accumulated online (``checkpoint.pt`` client states), when its settings
(eps, alpha, steps, centring) equal the requested ones; otherwise it is replayed from the received copies the
run kept (:func:`fedsafe.attacks.crn_hook.replay_crn`). Which one was used is recorded (``start_source``).

Outputs: a tidy :class:`pandas.DataFrame` (one row per attacker, target, attack config, seed) and a JSON
summary (ASR self, ASR avg benign, AASR, AETR, the matrices, the sanity-check warnings), written atomically
to ``RUN/attacks/<key>.csv`` and ``RUN/attacks/<key>.json``; ``<key>`` names the attack and start, followed by
a hash of the whole configuration (which the JSON holds in full).

Precision: fp32 by default (evaluation exactness); "bf16" autocast is allowed and recorded.

>>> # results = evaluate_transfer("runs/meningioma-cpu-...", sweep("pgd", eps=[0.05], alpha=[0.001],
>>> #                             steps=1, start="crn10"))
>>> # results[0].summary.aasr, results[0].csv_path
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..attacks.crn import crn_alpha
from ..attacks.crn_hook import crn_state_from, replay_crn
from ..attacks.iterative import AttackResult, attack_in_batches, iterative_attack, predict
from ..attacks.registry import get_attack
from ..attacks.sanity import run_sanity_checks
from ..attacks.starts import project_start, uniform_start
from ..build import load_run_config, model_factory, prepare_data
from ..config import ExperimentConfig, config_hash
from ..federation.data import FederatedData
from ..metrics.alignment import gradient_cosine
from ..metrics.transfer import TransferMatrices, TransferSummary, summarise, transfer_matrices, transfer_row
from ..precision import resolve_precision
from ..progress import Progress, report
from ..runs.atomic import write_json, write_text
from ..runs.store import RunStore
from ..seeding import torch_generator
from .train import did_not_learn, majority_rate

__all__ = [
    "AttackSpec",
    "RunContext",
    "TransferResult",
    "crn_start",
    "evaluate_transfer",
    "load_run",
    "parse_start",
    "sanity_warnings",
    "sweep",
    "tidy",
]

log = logging.getLogger(__name__)

_START = re.compile(r"^(zero|random|crn([1-9][0-9]*))$")


def parse_start(start: str) -> int | None:
    """The CRN window R of a start name (``"crn10"`` -> 10), None for ``"zero"`` / ``"random"``."""
    m = _START.match(start)
    if m is None:
        raise ValueError(f"start must be zero, random or crnR (e.g. crn5, crn10), got {start!r}")
    return int(m.group(2)) if m.group(2) else None


@dataclass(frozen=True)
class AttackSpec:
    """One attack configuration.

    Attributes:
        attack: "fgsm", "bim" or "pgd" (FGSM is one step of size eps: ``alpha`` and ``steps`` are ignored).
        eps: L-inf budget in [0, 1] pixel units.
        alpha: step size (BIM / PGD).
        steps: K, the number of sign-gradient steps (BIM / PGD).
        start: "zero", "random" (uniform in the eps-ball) or "crnR" (the attacker's CRN over the last R rounds).
        seed: root of the random start's generator.
        centre_grad: centre the attack's gradients (the CRN updates are centred or not by the run's config).
        labels: "pred" (the attacker's own clean predictions, default) or "true".
        crn_alpha, crn_steps: override the run's CRN step size / steps per round (None: ``cfg.crn``).
    """

    attack: str = "pgd"
    eps: float = 0.05
    alpha: float | None = 0.001
    steps: int = 20
    start: str = "random"
    seed: int = 0
    centre_grad: bool = False
    labels: Literal["pred", "true"] = "pred"
    crn_alpha: float | None = None
    crn_steps: int | None = None

    def __post_init__(self) -> None:
        get_attack(self.attack)
        parse_start(self.start)
        if not 0 <= self.eps <= 1:
            raise ValueError(f"eps is an L-inf budget in [0, 1] pixel units, got {self.eps}")
        if self.attack == "fgsm":
            object.__setattr__(self, "alpha", None)
            object.__setattr__(self, "steps", 1)
        elif self.alpha is None or not 0 < self.alpha <= 1:
            raise ValueError(f"{self.attack}: alpha (step size) must be in (0, 1] pixel units, got {self.alpha}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.labels not in ("pred", "true"):
            raise ValueError(f'labels must be "pred" or "true", got {self.labels!r}')
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @property
    def window(self) -> int | None:
        """R of a CRN start, else None."""
        return parse_start(self.start)

    @property
    def label(self) -> str:
        """The papers' name: "PGD-20", "PGD-1+CRN10", "FGSM+CRN5", "BIM-10"."""
        name = "FGSM" if self.attack == "fgsm" else f"{self.attack.upper()}-{self.steps}"
        return name + (f"+{self.start.upper()}" if self.window else "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self, **context: Any) -> str:
        """A file name: the attack and start, then a hash of every setting and of ``context``."""
        blob = json.dumps({"spec": self.to_dict(), "context": context}, sort_keys=True, default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        return f"{self.attack}{'' if self.attack == 'fgsm' else self.steps}-{self.start}-{digest}"


def sweep(attack: str = "pgd", *, eps: float | Iterable[float] = 0.05, alpha: float | None | Iterable[float] = 0.001,
          steps: int = 20, start: str | Iterable[str] = "random", seed: int | Iterable[int] = 0,
          **kw: Any) -> list[AttackSpec]:
    """Every combination of the given eps, alpha, start and seed values (FGSM ignores alpha)."""

    def values(v: Any) -> list[Any]:
        return [v] if v is None or isinstance(v, (str, int, float)) else list(v)

    alphas = [None] if attack == "fgsm" else values(alpha)
    specs = [AttackSpec(attack=attack, eps=float(e), alpha=a, steps=steps, start=s, seed=int(sd), **kw)
             for s in values(start) for e in values(eps) for a in alphas for sd in values(seed)]
    if not specs:
        raise ValueError("the sweep is empty: give at least one eps, alpha, start and seed")
    return specs


# -- the run --------------------------------------------------------------------------------------------------


@dataclass
class RunContext:
    """What the evaluation reads from a run directory (:func:`load_run`)."""

    store: RunStore
    cfg: ExperimentConfig
    data: FederatedData
    models: list[nn.Module]
    model_factory: Callable[[], nn.Module]
    total_rounds: int
    client_states: list[dict[str, torch.Tensor]] | None
    crn_cache: dict[tuple, tuple[torch.Tensor, float]] = field(default_factory=dict)
    learned: bool = True

    @property
    def num_clients(self) -> int:
        return self.data.num_clients

    @property
    def run_dir(self) -> RunStore:
        return self.store


def load_run(run_dir: str | Path, *, data: FederatedData | None = None,
             model_factory: Callable[[], nn.Module] | None = None, progress: Progress | None = None) -> RunContext:
    """Read a complete run: its config, its data (rebuilt from the config unless given; the client test ids
    must equal ``splits.json``), every client's final model (verified: config and content hashes) and the online
    client states (if checkpointed). Refuses a model with non-finite weights; warns when the run did not learn."""
    cfg = load_run_config(run_dir)
    store = RunStore(run_dir, config_hash=config_hash(cfg))
    data = data if data is not None else prepare_data(cfg, progress=progress)
    _check_splits(store, data)
    factory = model_factory or _factory(cfg, data)
    models = []
    for i in range(data.num_clients):
        state = store.load_final(i)
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ValueError(f"{store.dir.final_model(i)}: client {i}'s final model has non-finite weights (in "
                             f"{bad[0]}): the federation was poisoned or diverged; attacking it would report a "
                             "broken model as robust")
        model = factory()
        model.load_state_dict(state)
        models.append(model.eval())
    states, total = None, cfg.train.rounds
    ck = store.load_checkpoint()
    if ck is not None:
        total = ck.rounds
        if ck.round == total:
            states = [{k: v.to(data.device) for k, v in s.items()} for s in ck.client_states]
    learned = True
    if store.is_complete():
        summary = store.read_json(store.dir.summary)
        acc = summary.get("global_acc")
        learned = bool(summary.get("learned", not did_not_learn(acc, majority_rate(data.global_test.y))))
        if not learned:
            log.warning("%s: the global model did not learn (accuracy %s vs majority-class rate %.1f%%): attack "
                        "results on it say nothing about robustness", store.root, acc,
                        100 * majority_rate(data.global_test.y))
    return RunContext(store=store, cfg=cfg, data=data, models=models, model_factory=factory, total_rounds=total,
                      client_states=states, learned=learned)


def _factory(cfg, data: FederatedData) -> Callable[[], nn.Module]:
    return model_factory(cfg, data, device=data.device)


def _check_splits(store: RunStore, data: FederatedData) -> None:
    rd = store.dir
    saved = store.read_json(rd.splits).get("client_test")
    ours = [list(s.ids) for s in data.client_test]
    if saved is None or len(saved) != len(ours):
        raise ValueError(f"{rd.splits}: holds {len(saved or [])} client test sets, the data {len(ours)}")
    for i, (a, b) in enumerate(zip(saved, ours, strict=True)):
        if list(a) != b:
            raise ValueError(f"client {i}'s test set differs from {rd.splits} (the data changed since the run "
                             f"was trained: different files, size or seed?)")


# -- start points ---------------------------------------------------------------------------------------------


def _crn_settings(ctx: RunContext, spec: AttackSpec) -> dict[str, Any]:
    c = ctx.cfg.crn
    steps = spec.crn_steps or c.steps or ctx.cfg.train.local_epochs
    alpha = spec.crn_alpha if spec.crn_alpha is not None else c.alpha
    return {"eps": spec.eps, "steps": int(steps), "alpha": crn_alpha(eps=spec.eps, steps=int(steps), alpha=alpha),
            "centre_grad": c.centre_grad}


def crn_start(ctx: RunContext, spec: AttackSpec, attacker: int, *, precision: str = "fp32",
              batch_size: int | None = None) -> tuple[torch.Tensor, str, dict[str, Any]]:
    """(delta, source, settings) of attacker ``attacker``'s CRN-R start: the online buffer if its settings
    match, else replayed (``source`` is "crn-online" or "crn-replayed"; seconds spent are in settings)."""
    window = spec.window
    if window is None:
        raise ValueError(f"start {spec.start!r} is not a CRN start")
    if window > ctx.total_rounds:
        raise ValueError(f"{spec.start}: the run has only {ctx.total_rounds} rounds")
    s = _crn_settings(ctx, spec)
    info = {"crn_window": window, "crn_steps": s["steps"], "crn_alpha": s["alpha"], "crn_centre_grad": s["centre_grad"],
            "crn_passes_per_image": window * s["steps"], "crn_seconds": 0.0}
    online = crn_state_from(ctx.client_states[attacker], window) if ctx.client_states else None
    if online is not None and online.rounds == window and _same(online, s):
        return online.delta, "crn-online", info
    key = (attacker, window, s["eps"], s["alpha"], s["steps"], s["centre_grad"], precision, batch_size)
    if key not in ctx.crn_cache:
        t0 = time.perf_counter()
        rounds = range(ctx.total_rounds - window + 1, ctx.total_rounds + 1)
        received = ctx.store.received_window(attacker, rounds)
        delta = replay_crn(received, ctx.data.client_test[attacker].x, model_factory=ctx.model_factory,
                           precision=precision, batch_size=batch_size, **s)
        ctx.crn_cache[key] = (delta, time.perf_counter() - t0)
    delta, seconds = ctx.crn_cache[key]
    info["crn_seconds"] = seconds
    return delta, "crn-replayed", info


def _same(state, s: dict[str, Any]) -> bool:
    return (math.isclose(state.eps, s["eps"], rel_tol=1e-9) and math.isclose(state.alpha, s["alpha"], rel_tol=1e-9)
            and state.steps == s["steps"] and state.centre_grad == s["centre_grad"])


def _start(ctx: RunContext, spec: AttackSpec, attacker: int, x: torch.Tensor, crn_precision: str
           ) -> tuple[torch.Tensor, str, dict[str, Any]]:
    if spec.start == "zero":
        return torch.zeros_like(x), "zero", {}
    if spec.start == "random":
        return uniform_start(x, spec.eps, torch_generator(spec.seed, "attack-start", attacker)), "random", {}
    if spec.eps == 0:  # CRN needs a positive budget; the ball is a point
        return torch.zeros_like(x), "zero (eps=0)", {}
    delta, source, info = crn_start(ctx, spec, attacker, precision=crn_precision)
    return project_start(x, delta, spec.eps), source, info


# -- sanity checks --------------------------------------------------------------------------------------------

SANITY_EPS = (0.0, 0.03, 0.5)
SANITY_STEPS = 5
"""The once-per-run eps curve: BIM-5 with step eps/2.5 (it can cross the ball) at eps 0 (must give 0%), a small
eps and a large one (must give ~100%): 3 x 100 images x 12 passes a client (~1/4 of a PGD-40 evaluation)."""


def _sanity_attack(model: nn.Module, x: torch.Tensor, precision: str) -> Callable[[float], torch.Tensor]:
    def attack(eps: float) -> torch.Tensor:  # eps = 0: one step, the clamp keeps x
        steps, alpha = (1, 1e-3) if eps == 0 else (SANITY_STEPS, eps / 2.5)
        return iterative_attack(model, x, "pred", eps=eps, alpha=alpha, steps=steps, precision=precision).x_adv

    return attack


def sanity_warnings(ctx: RunContext, *, precision: str = "fp32", cache: bool = True) -> list[str]:
    """Carlini et al.'s checks (:mod:`fedsafe.attacks.sanity`) on every client's final model and attack set:
    run once per run (cached in ``RUN/attacks/sanity.json`` per precision). Warnings are prefixed by client."""
    path = ctx.store.root / "attacks" / "sanity.json"
    stored = json.loads(path.read_text()) if cache and path.is_file() else {}
    if precision in stored:
        return list(stored[precision]["warnings"])
    warnings = []
    for i, model in enumerate(ctx.models):
        x = ctx.data.client_test[i].x
        for w in run_sanity_checks(model, x, attack_at_eps=_sanity_attack(model, x, precision),
                                   eps_values=SANITY_EPS):
            warnings.append(f"client {i}: {w}")
    if cache:
        stored[precision] = {"warnings": warnings, "eps_values": list(SANITY_EPS),
                           "attack": f"BIM-{SANITY_STEPS}, alpha eps/2.5"}
        write_json(path, stored)
    return warnings


# -- the evaluation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferResult:
    """One attack configuration evaluated on a run."""

    spec: AttackSpec
    key: str
    frame: pd.DataFrame
    matrices: TransferMatrices
    summary: TransferSummary
    alignment: np.ndarray  # (M, C) mean input-gradient cosine
    record: dict[str, Any]  # the JSON summary
    csv_path: Path | None = None
    json_path: Path | None = None


def _attack_kwargs(spec: AttackSpec, precision: str) -> dict[str, Any]:
    kw: dict[str, Any] = {"eps": spec.eps, "centre_grad": spec.centre_grad, "precision": precision}
    if spec.attack != "fgsm":
        kw.update(alpha=spec.alpha, steps=spec.steps)
    return kw


def _predictions(models: Sequence[nn.Module], x: torch.Tensor, precision: str) -> np.ndarray:
    return np.stack([predict(m, x, precision=precision).numpy() for m in models])


def _evaluate_attacker(ctx: RunContext, spec: AttackSpec, m: int, *, precision: str, batch_size: int,
                       crn_precision: str, cosines: dict) -> tuple[list[dict[str, Any]], Any, np.ndarray]:
    split = ctx.data.client_test[m]
    x, y, model = split.x, split.y, ctx.models[m]
    labels = predict(model, x, precision=precision) if spec.labels == "pred" else y.clone()
    start, source, crn_info = _start(ctx, spec, m, x, crn_precision)
    res: AttackResult = attack_in_batches(get_attack(spec.attack), model, x, labels, batch_size=batch_size,
                                          start=start, **_attack_kwargs(spec, precision))
    batches = math.ceil(len(x) / batch_size)
    clean, adv = _predictions(ctx.models, x, precision), _predictions(ctx.models, res.x_adv, precision)
    row = transfer_row(clean, adv, y.numpy(), attacker=m)
    ckey = (m, spec.labels)
    if ckey not in cosines:  # independent of the attack: once per attacker and label kind
        cosines[ckey] = np.array([_nanmean(gradient_cosine(model, target, x, labels).numpy())
                                  for target in ctx.models])
    align = cosines[ckey]
    base = {"attacker": m, "attack": spec.attack, "label": spec.label, "eps": spec.eps, "alpha": spec.alpha,
            "steps": spec.steps, "start": spec.start, "start_source": source, "seed": spec.seed,
            "labels": spec.labels, "centre_grad": spec.centre_grad, "precision": precision, "n": row.n,
            "attack_seconds_per_batch": res.seconds / batches, "batch_size": min(batch_size, len(x)),
            "batches": batches,
            "fb_passes_per_image": res.forward_backward, "forward_passes_per_image": int(spec.labels == "pred"),
            "crn_window": None, "crn_steps": None, "crn_alpha": None, "crn_passes_per_image": 0,
            "crn_seconds": 0.0}
    base.update(crn_info)
    rows = []
    for c in range(ctx.num_clients):
        rows.append({**base, "target": c, "self": c == m, "clean_acc": row.clean_acc[c],
                     "attack_acc": row.attack_acc[c], "asr": row.asr[c], "asr_literal": row.asr_literal[c],
                     "aetr": row.aetr[c], "n_correct": int(row.n_correct[c]), "n_aetr": int(row.n_aetr[c]),
                     "grad_cosine": align[c]})
    return rows, row, align


def _nanmean(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


_COLUMNS = ["attacker", "target", "self", "label", "attack", "eps", "alpha", "steps", "start", "start_source", "seed",
            "labels", "centre_grad", "precision", "n", "clean_acc", "attack_acc", "asr", "asr_literal", "aetr",
            "n_correct", "n_aetr", "grad_cosine", "attack_seconds_per_batch", "batch_size", "batches",
            "fb_passes_per_image", "forward_passes_per_image", "crn_window", "crn_steps", "crn_alpha",
            "crn_centre_grad", "crn_passes_per_image", "crn_seconds"]


def _warm_up(ctx: RunContext, precision: str, batch_size: int) -> None:
    """One step on a batch of the timed shape first, so that lazy initialisation (kernel selection for a new
    shape) is not billed to the first timed attack."""
    x = ctx.data.client_test[0].x[:batch_size]
    iterative_attack(ctx.models[0], x, "pred", eps=0.01, alpha=0.01, steps=1, precision=precision)


def evaluate_transfer(
    run: str | Path | RunContext,
    specs: AttackSpec | Sequence[AttackSpec],
    *,
    precision: str = "fp32",
    batch_size: int = 100,
    crn_precision: str = "fp32",
    sanity: bool = True,
    write: bool = True,
    progress: Progress | None = None,
) -> list[TransferResult]:
    """Evaluate each attack configuration of ``specs`` on the run (a directory or a :func:`load_run` context).

    ``batch_size`` images are attacked at a time (the papers' "one batch": 100, one client's attack set).
    Returns one :class:`TransferResult` per spec; with ``write`` their CSV and JSON go to ``RUN/attacks/``.
    """
    specs = [specs] if isinstance(specs, AttackSpec) else list(specs)
    if not specs:
        raise ValueError("no attack configuration to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    precision, crn_precision = resolve_precision(precision), resolve_precision(crn_precision)
    ctx = run if isinstance(run, RunContext) else load_run(run, progress=progress)
    warnings = sanity_warnings(ctx, precision=precision, cache=write) if sanity else []
    for w in warnings:
        log.info("sanity check: %s", w)
    _warm_up(ctx, precision, batch_size)
    cosines: dict = {}
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
        results.append(_result(ctx, spec, rows, trows, np.stack(aligns), warnings, precision=precision,
                               batch_size=batch_size, crn_precision=crn_precision, write=write))
    return results


def _result(ctx: RunContext, spec: AttackSpec, rows: list[dict[str, Any]], trows: list, align: np.ndarray,
            warnings: list[str], *, precision: str, batch_size: int, crn_precision: str, write: bool
            ) -> TransferResult:
    key = spec.key(precision=precision, batch_size=batch_size, crn_precision=crn_precision)
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    frame.insert(0, "key", key)
    mats = transfer_matrices(trows)
    summ = summarise(mats)
    per_attacker = frame.drop_duplicates("attacker")
    record = {
        "key": key,
        "label": spec.label,
        "attack": spec.to_dict(),
        "precision": precision,
        "crn_precision": crn_precision if spec.window else None,
        "batch_size": int(frame["batch_size"].max()),  # images a batch (at most the attack set)
        "run_dir": str(ctx.store.root),
        "task": ctx.data.task,
        "synthetic": ctx.data.synthetic,
        "num_clients": ctx.num_clients,
        "n": mats.n,
        "summary": dataclasses.asdict(summ),
        "grad_cosine_self": _nanmean(align[mats.self_mask()]),
        "grad_cosine_benign": _nanmean(align[~mats.self_mask()]),
        "attack_seconds_per_batch": float(per_attacker["attack_seconds_per_batch"].mean()),
        "fb_passes_per_image": spec.steps,
        "crn_passes_per_image": int(per_attacker["crn_passes_per_image"].iloc[0]),
        "start_source": dict(zip(per_attacker["attacker"].astype(str), per_attacker["start_source"], strict=True)),
        "matrices": {"attackers": list(mats.attackers), "asr": mats.asr, "asr_literal": mats.asr_literal,
                     "aetr": mats.aetr, "clean_acc": mats.clean_acc, "attack_acc": mats.attack_acc,
                     "grad_cosine": align, "n_correct": mats.n_correct, "n_aetr": mats.n_aetr},
        "sanity_warnings": warnings,
    }
    csv_path = json_path = None
    if write:
        base = ctx.store.root / "attacks"
        csv_path, json_path = base / f"{key}.csv", base / f"{key}.json"
        write_text(csv_path, frame.to_csv(index=False))
        record["csv"] = str(csv_path)
        write_json(json_path, record)
    return TransferResult(spec=spec, key=key, frame=frame, matrices=mats, summary=summ, alignment=align,
                          record=record, csv_path=csv_path, json_path=json_path)


def tidy(results: Iterable[TransferResult]) -> pd.DataFrame:
    """All results' rows in one tidy table."""
    frames = [r.frame for r in results]
    if not frames:
        raise ValueError("no results")
    return pd.concat(frames, ignore_index=True)
