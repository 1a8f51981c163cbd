"""Membership inference on a finished run (design §13): the privacy the federation's noise buys, measured.

Candidates, for every client i: members = i's training images; non-members = the global test set (held-out
images of the same distribution, kept near-duplicate-free from client data by the split rules: design §1.6). Two
views of who attacks:

* **server**: the global model after the last round (``RunStore.load_global(T)``);
* **insider**: client m attacking client i's data (every m, every i != m) through the models m holds: its final
  model, and with ``insider_rounds`` = R also the copies it received over the last R rounds (each model's score is
  computed, then averaged over the models: independent downlink noise averages out over copies).

Two attacks (:mod:`fedsafe.metrics.membership`, :mod:`fedsafe.metrics.lira`): the loss threshold (Yeom et al.
2018; score -CE) and offline LiRA (Carlini et al. 2022), whose OUT Gaussians come from S shadow models trained
WITHOUT any candidate, on data the attacker legitimately holds: the server set (server's view), m's own training
data (insider m). Each shadow is the run's architecture, from a fresh initialisation drawn from
``seed_for(seed, "shadow-init", s, view)``, trained centrally with the run's optimiser, learning rate, batch size,
clipping and augmentation (:func:`fedsafe.federation.client.local_train`, streams keyed ``(seed, "shadow", s,
view)``; view 0 the server, m + 1 insider m) for E_s = min(T x E, ``max_shadow_epochs``) epochs: each of its
images seen as often as a client saw its own in the run, capped. With fewer than 16 shadows LiRA uses one
pooled variance (the paper's advice for few shadows).

Reported per client (server) or pair (insider), and averaged: AUC with its 95% DeLong interval over images
(:func:`fedsafe.verdicts.intervals.auc_mean_ci`; the mean's counts a victim's members once and the shared
non-members once) and TPR at 1% and 0.1% FPR, NaN where the number of non-members cannot resolve that FPR (the
result's notes say so). The intervals hold the trained target and shadow models fixed: the randomness of
training the shadows (few shadows estimate LiRA's OUT Gaussians roughly) is not in them, which the result says.
Cached in ``RUN/audit/mia-<hash of the settings>.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..build import augment_fn, federation_spec
from ..evaluation.run_context import RunContext, load_context
from ..federation.client import local_train
from ..federation.federated_data import Split
from ..metrics.lira import lira_offline_scores, model_logit_confidence
from ..metrics.membership import MembershipRoc, loss_scores, membership_roc
from ..progress import Progress, report
from ..runs.atomic import json_safe
from ..runs.layout import RunLayout
from ..runs.run import open_run
from ..runs.store import RunFileError
from ..seeding import seed_for
from ..verdicts.intervals import auc_mean_ci

__all__ = ["GLOBAL_STD_BELOW", "INTERVALS", "MiaSettings", "membership_audit", "run_membership", "shadow_epochs",
           "train_shadows", "view_rocs"]

log = logging.getLogger(__name__)

GLOBAL_STD_BELOW = 16
"""Fewer shadow models than this: LiRA fits one pooled variance instead of one per example."""
INTERVALS = ("AUC intervals: 95% DeLong over the images (members and non-members), the trained target and shadow "
             "models held fixed; they do not cover the randomness of training the shadow models")


@dataclass(frozen=True)
class MiaSettings:
    """How the membership inference runs (module docstring). ``seed`` None: the run's own seed."""

    shadows: int = 4
    max_shadow_epochs: int = 30
    insider_rounds: int = 0
    seed: int | None = None
    batch_size: int = 256
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.shadows < 2:
            raise ValueError(f"LiRA needs at least 2 shadow models, got shadows={self.shadows}")
        if self.max_shadow_epochs < 1:
            raise ValueError(f"max_shadow_epochs must be >= 1, got {self.max_shadow_epochs}")
        if self.insider_rounds < 0:
            raise ValueError(f"insider_rounds must be >= 0, got {self.insider_rounds}")

    def key(self, total_rounds: int) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "round": total_rounds}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def shadow_epochs(ctx: RunContext, settings: MiaSettings) -> int:
    """E_s = min(T x E, ``max_shadow_epochs``): each image seen as often as a client saw its own, capped."""
    return min(ctx.total_rounds * ctx.cfg.train.local_epochs, settings.max_shadow_epochs)


def _fresh_init(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """``model`` re-initialised (each layer's own ``reset_parameters``) on the CPU from ``seed``; torch's global
    generator is left as found."""
    device = next(model.parameters()).device
    model.to("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for mod in model.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
    model.to(device)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_shadows(ctx: RunContext, data: Split, *, settings: MiaSettings, view: int,
                  progress: Progress | None = None, done: list[int] | None = None, total: int = 0
                  ) -> list[nn.Module]:
    """``settings.shadows`` shadow models of the run's architecture trained on ``data`` (module docstring), in eval
    mode. ``done`` / ``total``: a shared counter for the "shadow models" progress bar."""
    seed = ctx.cfg.seed if settings.seed is None else settings.seed
    local = dataclasses.replace(federation_spec(ctx.cfg, ctx.data, device=ctx.data.device).local,
                                epochs=shadow_epochs(ctx, settings))
    out = []
    for s in range(settings.shadows):
        model = ctx.model_factory()
        init = _fresh_init(model, seed_for(seed, "shadow-init", s, view))
        state, _ = local_train(model, init, data.x, data.y, local, seed=seed, round_=s, client=view,
                               augment_fn=augment_fn(ctx.cfg), purpose="shadow")
        model.load_state_dict(state)
        out.append(model.eval())
        if done is not None:
            done[0] += 1
            report(progress, "shadow models", done[0], total)
    return out


def _roc_dict(r: MembershipRoc, pos: np.ndarray, neg: np.ndarray) -> dict[str, Any]:
    _, lo, hi = auc_mean_ci([(pos, neg, "members", "nonmembers")])
    return {"auc": r.auc, "auc_ci": [lo, hi], "tpr_at_1pct_fpr": r.tpr_at_1pct_fpr,
            "tpr_at_0_1pct_fpr": r.tpr_at_0_1pct_fpr, "n_members": r.n_members, "n_nonmembers": r.n_nonmembers,
            "notes": list(r.notes)}


Scores = dict[str, tuple[np.ndarray, np.ndarray]]
"""attack -> (member scores, non-member scores) of one (view, victim)."""


def _view_scores(targets: Sequence[nn.Module], shadows: Sequence[nn.Module], members: Sequence[Split],
                 nonmembers: Split, settings: MiaSettings) -> list[Scores]:
    """Both attacks' scores of one view on each member set against the one non-member set: every model scores
    the non-members once (not once a victim). Each target model's scores are averaged over ``targets``."""
    x = torch.cat([*(m.x for m in members), nonmembers.x])
    y = torch.cat([*(m.y for m in members), nonmembers.y])
    kw = {"batch_size": settings.batch_size, "precision": settings.precision}
    loss = torch.stack([loss_scores(t, x, y, **kw) for t in targets]).mean(0).cpu().numpy()
    phi = torch.stack([model_logit_confidence(t, x, y, **kw) for t in targets]).mean(0).cpu().numpy()
    shadow_phi = np.stack([model_logit_confidence(s, x, y, **kw).cpu().numpy() for s in shadows])
    lira = lira_offline_scores(phi, shadow_phi, global_std=len(shadows) < GLOBAL_STD_BELOW)
    ends = np.cumsum([0, *(len(m) for m in members)])
    return [{"loss": (loss[a:b], loss[ends[-1]:]), "lira": (lira[a:b], lira[ends[-1]:])}
            for a, b in zip(ends[:-1], ends[1:], strict=True)]


def _rocs(scores: Scores) -> dict[str, dict[str, Any]]:
    return {a: _roc_dict(membership_roc(pos, neg), pos, neg) for a, (pos, neg) in scores.items()}


def view_rocs(targets: Sequence[nn.Module], shadows: Sequence[nn.Module], members: Split, nonmembers: Split, *,
              settings: MiaSettings = MiaSettings()) -> dict[str, dict[str, Any]]:
    """Both attacks of one view on one candidate set: ``{"loss": roc, "lira": roc}`` (AUC with its DeLong 95%
    interval over images, TPRs, counts, notes). Each target model's scores are averaged over ``targets`` (loss and
    phi alike); shadows are OUT for every candidate."""
    return _rocs(_view_scores(targets, shadows, [members], nonmembers, settings)[0])


def _mean(rows: Sequence[dict[str, Any]], scores: Sequence[Scores], victims: Sequence[int]
          ) -> dict[str, dict[str, Any]]:
    """The mean over rows of each number, and the mean AUC's DeLong interval: a victim's members are one group of
    images (in every row that attacks it), the non-members one group shared by every row."""
    out = {}
    for attack in ("loss", "lira"):
        out[attack] = {}
        for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"):
            v = np.array([r[attack][k] for r in rows], dtype=float)
            out[attack][k] = float(v.mean()) if v.size and not np.isnan(v).any() else math.nan
        parts = [(*s[attack], f"members-{i}", "nonmembers") for s, i in zip(scores, victims, strict=True)]
        out[attack]["auc_ci"] = list(auc_mean_ci(parts)[1:]) if parts else [math.nan, math.nan]
    return out


def _model(ctx: RunContext, state: dict[str, torch.Tensor]) -> nn.Module:
    model = ctx.model_factory()
    model.load_state_dict(state)
    return model.eval()


def _insider_targets(ctx: RunContext, m: int, rounds: int) -> list[nn.Module]:
    if rounds == 0:
        return [ctx.models[m]]
    r = min(rounds, ctx.total_rounds)
    copies = ctx.store.received_window(m, range(ctx.total_rounds - r + 1, ctx.total_rounds + 1))
    return [ctx.models[m], *(_model(ctx, s) for s in copies)]


def _compute(ctx: RunContext, settings: MiaSettings, members: Callable[[int], Split],
             progress: Progress | None) -> dict[str, Any]:
    n = ctx.num_clients
    epochs = shadow_epochs(ctx, settings)
    insiders = list(range(n)) if n > 1 else []
    total, done = settings.shadows * (1 + len(insiders)), [0]
    report(progress, "shadow models", 0, total)
    t0 = time.perf_counter()
    glob = _model(ctx, ctx.store.load_global(ctx.total_rounds))
    shadows = train_shadows(ctx, ctx.data.server, settings=settings, view=0, progress=progress, done=done, total=total)
    server_scores = _view_scores([glob], shadows, [members(i) for i in range(n)], ctx.data.global_test, settings)
    server = [{"client": i, **_rocs(sc)} for i, sc in enumerate(server_scores)]
    pairs, pair_scores, victims = [], [], []
    for m in insiders:
        shadows = train_shadows(ctx, ctx.data.client_train[m], settings=settings, view=m + 1, progress=progress,
                                done=done, total=total)
        targets = _insider_targets(ctx, m, settings.insider_rounds)
        others = [i for i in range(n) if i != m]
        scores = _view_scores(targets, shadows, [members(i) for i in others], ctx.data.global_test, settings)
        pairs += [{"attacker": m, "victim": i, **_rocs(sc)} for i, sc in zip(others, scores, strict=True)]
        pair_scores += scores
        victims += others
    notes = sorted({note for r in (*server, *pairs) for a in ("loss", "lira") for note in r[a]["notes"]})
    if not insiders:
        notes.append("one client: no insider view")
    global_std = settings.shadows < GLOBAL_STD_BELOW
    return {
        "settings": dataclasses.asdict(settings), "key": settings.key(ctx.total_rounds), "round": ctx.total_rounds,
        "shadow_epochs": epochs, "global_std": global_std,
        "shadow_data": {"server": len(ctx.data.server), "insider": [len(ctx.data.client_train[m]) for m in insiders]},
        "budget": (f"{settings.shadows} shadow models a view, each trained centrally ({ctx.cfg.train.optimizer} lr "
                   f"{ctx.cfg.train.lr:g}, batch {ctx.cfg.train.batch_size}) for {epochs} epochs = min(T x E = "
                   f"{ctx.total_rounds} x {ctx.cfg.train.local_epochs}, cap {settings.max_shadow_epochs}) on the "
                   f"attacker's own data (server set: {len(ctx.data.server)} images; insider m: its training set); "
                   f"LiRA variance {'pooled over examples' if global_std else 'per example'}"),
        "insider_models": ("final model" if settings.insider_rounds == 0 else
                           f"final model and the copies of the last {min(settings.insider_rounds, ctx.total_rounds)} "
                           "rounds (scores averaged)"),
        "nonmembers": len(ctx.data.global_test),
        "server": {"per_client": server, "mean": _mean(server, server_scores, range(n))},
        "insider": {"pairs": pairs, "mean": _mean(pairs, pair_scores, victims)},
        "intervals": INTERVALS, "notes": notes, "seconds": time.perf_counter() - t0, "shadows_trained": total,
    }


def membership_audit(ctx: RunContext, settings: MiaSettings = MiaSettings(), *, progress: Progress | None = None,
                     members: Callable[[int], Split] | None = None, cache: bool = True) -> dict[str, Any]:
    """Both views' membership inference on the run (module docstring), as a JSON-ready dict with ``"cached"``.

    ``members(i)``: client i's member candidates (default: its training images; a held-out set gives the control
    whose AUC must be ~0.5: then nothing is cached). With ``cache`` the result is read from / written to
    ``RUN/audit/mia-<key>.json``."""
    path = ctx.store.layout.mia(settings.key(ctx.total_rounds))
    cache = cache and members is None
    if cache and path.is_file():
        try:
            return {**ctx.store.read_json(path), "cached": True}
        except RunFileError as e:
            log.warning("recomputing the membership inference: %s", e)
    result = json_safe(_compute(ctx, settings, members or (lambda i: ctx.data.client_train[i]), progress))
    if cache:
        ctx.store.write_json(path, result)
    return {**result, "cached": False}


def run_membership(run_dir: str | Path, settings: MiaSettings = MiaSettings(), *,
                   progress: Progress | None = None) -> dict[str, Any] | None:
    """:func:`membership_audit` of the run at ``run_dir``: read from its cache without loading the run when it is
    there; None when ``run_dir`` holds no complete run."""
    if not RunLayout(Path(run_dir)).is_complete():
        return None
    run = open_run(run_dir)
    path = run.layout.mia(settings.key(run.config.train.rounds))  # type: ignore[union-attr]
    if path.is_file():
        try:
            return {**run.store.read_json(path), "cached": True}
        except RunFileError as e:
            log.warning("recomputing the membership inference: %s", e)
    return membership_audit(load_context(run, progress=progress), settings, progress=progress)
