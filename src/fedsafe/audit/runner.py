"""``fedsafe audit RUN``: one finished federation audited on three axes at once (design §13).

1. **What an insider's attack does to everyone else**: the transfer matrix (every client attacks in turn, every
   client's final model is evaluated) of PGD, PGD from the attacker's cross-round noise (CRN10, replayed from the
   copies the run kept; a shorter window when it kept fewer rounds, named) and EOT-PGD with the K of
   ``--eot`` against the run's own downlink noise s_D (:mod:`fedsafe.evaluation.adaptive_attacks`), plus the
   gradient-masking checks of every client's final model.
2. **What privacy the noise buys, measured**: membership inference, server's and insider's view
   (:mod:`fedsafe.audit.mia`).
3. **What it buys, accounted, and what it costs**: epsilon under both sensitivities (NbAFL's 2C/m and the
   unconditional 2C, design §4, from ``privacy_report.json``) and the clean accuracy, with the run's learned flag
   (a run that did not learn is reported loudly: its attack numbers say nothing).

Everything expensive is cached by its settings: attack evaluations in ``RUN/attacks/<key>`` (the same files
``fedsafe attack`` and the reproductions read), the masking checks and the membership inference in ``RUN/audit/``;
a second audit with the same settings reads them back. The summary (:func:`run_audit`) goes to
``RUN/audit/audit.json``; its plain sentences are :func:`fedsafe.audit.text.sentences`'.

>>> s = AuditSettings(quick=True)
>>> s.steps, s.eot, s.shadows, round(s.step_size, 4)
(10, (2,), 2, 0.0125)
>>> f = AuditSettings(full=True)
>>> f.level, f.eot, f.shadows, f.max_shadow_epochs, f.masking_images, f.precision
('full', (8,), 4, 30, 100, 'fp32')
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..attacks.budget import check_steps, check_window
from ..attacks.iterative import input_gradient
from ..attacks.sanity import RULES_VERSION as MASKING_RULES
from ..attacks.spec import DEFAULT_EOT_SAMPLES, DEFAULT_EPS, AttackSpec, Start
from ..defaults import ATTACK_BATCH_SIZE
from ..evaluation.adaptive_attacks import (
    MASKING_EPS,
    MASKING_IMAGES,
    MASKING_STEPS,
    MASKING_STEPS_FOR_EPS,
    SQUARE_QUERIES,
    masking_audit,
    run_downlink_noise,
)
from ..evaluation.results import read_evaluation
from ..evaluation.run_context import RunContext
from ..evaluation.sanity_cache import SANITY_STEPS, sanity_cache
from ..evaluation.transfer_evaluation import evaluate_transfer
from ..models.inference import predict
from ..precision import resolve_precision
from ..progress import Progress, duration
from ..runs.atomic import json_safe
from ..runs.run import open_run
from ..runs.store import RunFileError
from .mia import MiaSettings, membership_audit, shadow_epochs
from .text import attack_row, privacy_facts, sentences, verdicts

__all__ = ["FULL", "QUICK", "AuditCost", "AuditSettings", "attack_specs", "budget", "estimate",
           "run_audit"]

log = logging.getLogger(__name__)

FULL = {"eot": (DEFAULT_EOT_SAMPLES,), "shadows": 4, "max_shadow_epochs": 30, "masking_images": MASKING_IMAGES,
        "precision": "fp32"}
"""--full: the audit's earlier, larger budget (EOT K = 8, 4 shadow models of at most 30 epochs a view, the masking
checks on 100 images a client, fp32 attacks), to compare the default budget with."""
QUICK = {"steps": 10, "eot": (2,), "shadows": 2, "max_shadow_epochs": 5}
"""--quick: fewer attack steps, EOT with K = 2, 2 shadow models of at most 5 epochs (a smoke test, labelled)."""


@dataclass(frozen=True)
class AuditSettings:
    """What the audit runs. ``alpha`` None: Madry's 2.5 eps / steps (the attack can cross the ball); ``eot``: the
    K values of EOT-PGD; ``crn_window``: R of the CRN start (shortened to the rounds the run kept); ``precision``
    (of the attacks and of the attacker's CRN replay alike) "auto": bf16 where the CPU or GPU computes it fast,
    else fp32. The defaults are a budget of minutes
    on a laptop (EOT K = 2, 2 shadow models of at most 10 epochs a view, the masking checks on 50 images a client);
    ``full``: :data:`FULL` over the defaults not given; ``quick``: :data:`QUICK` over them (a smoke test)."""

    eps: float = DEFAULT_EPS
    steps: int = 20
    alpha: float | None = None
    eot: tuple[int, ...] = (2,)
    crn_window: int = 10
    shadows: int = 2
    max_shadow_epochs: int = 10
    insider_rounds: int = 0
    seed: int = 0
    precision: str = "auto"
    batch_size: int = ATTACK_BATCH_SIZE
    masking: bool = True
    masking_images: int = 50
    membership: bool = True
    quick: bool = False
    full: bool = False
    given: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.quick and self.full:
            raise ValueError("--quick and --full exclude each other")
        for k, v in (QUICK if self.quick else FULL if self.full else {}).items():
            if k not in self.given:
                object.__setattr__(self, k, v)
        if self.masking_images < 1:
            raise ValueError(f"masking_images must be >= 1, got {self.masking_images}")
        object.__setattr__(self, "eot", tuple(int(k) for k in self.eot))
        if any(k < 1 for k in self.eot):
            raise ValueError(f"--eot: every K must be an integer >= 1, got {list(self.eot)}")
        check_window(self.crn_window)
        check_steps(self.steps)  # before step_size divides by it
        object.__setattr__(self, "precision", resolve_precision(self.precision))
        AttackSpec(attack="pgd", eps=self.eps, alpha=self.step_size, steps=self.steps)  # validates eps, alpha, steps
        self.mia()  # validates the shadow settings

    @classmethod
    def of(cls, **given: Any) -> AuditSettings:
        """Settings from the options given (None = not given: the default, or :data:`QUICK`'s with quick)."""
        kept = {k: v for k, v in given.items() if v is not None}
        return cls(**kept, given=frozenset(kept))

    @property
    def level(self) -> str:
        """"quick", "full" or "standard" (the default budget)."""
        return "quick" if self.quick else "full" if self.full else "standard"

    @property
    def step_size(self) -> float:
        return self.alpha if self.alpha is not None else min(1.0, 2.5 * self.eps / self.steps)

    def mia(self) -> MiaSettings:
        return MiaSettings(shadows=self.shadows, max_shadow_epochs=self.max_shadow_epochs,
                           insider_rounds=self.insider_rounds, precision=self.precision)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("given")
        return {**d, "alpha": self.step_size, "eot": list(self.eot)}


def _crn_rounds(ctx: RunContext, wanted: int) -> int:
    """The longest window R <= ``wanted`` whose received copies the run kept for every client (0: none)."""
    kept = set(ctx.store.received_rounds())
    r = 0
    while r < min(wanted, ctx.total_rounds) and (ctx.total_rounds - r) in kept and all(
            ctx.store.layout.received(ctx.total_rounds - r, i).is_file() for i in range(ctx.num_clients)):
        r += 1
    return r


def attack_specs(ctx: RunContext, settings: AuditSettings) -> tuple[list[AttackSpec], list[str]]:
    """PGD, PGD+CRN(R) and EOT-PGD for every K (the run's s_D), and notes on what had to change."""
    base = AttackSpec(attack="pgd", eps=settings.eps, alpha=settings.step_size, steps=settings.steps,
                      start="random", seed=settings.seed)
    specs, notes = [base], []
    r = _crn_rounds(ctx, settings.crn_window)
    if r == 0:
        notes.append("no PGD+CRN: the run kept no received copies (federation.keep_received_rounds = 0)")
    else:
        if r < settings.crn_window:
            notes.append(f"PGD+CRN{r} instead of CRN{settings.crn_window}: the run kept the copies of its last {r} "
                         "round(s) only")
        specs.append(base.replace(start=Start.crn(r)))
    specs += [base.replace(attack="eot-pgd", samples=k) for k in settings.eot]
    return specs, notes


def _evaluation(settings: AuditSettings) -> dict[str, Any]:
    """How the audit's attacks are evaluated, and so keyed: its precision for the attacks and the CRN replay alike."""
    return {"precision": settings.precision, "batch_size": settings.batch_size, "crn_precision": settings.precision}


def _key(spec: AttackSpec, settings: AuditSettings) -> str:
    return spec.key(**_evaluation(settings))


def _masking_path(ctx: RunContext, settings: AuditSettings) -> Path:
    blob = json.dumps({"seed": settings.seed, "precision": settings.precision, "eps": MASKING_EPS,
                       "steps": MASKING_STEPS, "images": settings.masking_images, "rules": MASKING_RULES},
                      sort_keys=True)
    return ctx.store.layout.masking(hashlib.sha256(blob.encode()).hexdigest()[:10])


@dataclass(frozen=True)
class AuditCost:
    """What the audit will cost: image passes and estimated seconds per part, and what is cached."""

    passes: dict[str, float]
    seconds: dict[str, float]
    cached: dict[str, int]
    speed: str

    def lines(self) -> list[str]:
        parts = ", ".join(f"{k} ~{duration(v)}" for k, v in self.seconds.items())
        c = self.cached
        return [f"Estimated cost: ~{duration(sum(self.seconds.values()))} ({parts}); {self.speed}.",
                f"Cached already: {c['attacks']} of {c['attack_specs']} attack evaluation(s), masking checks "
                f"{'yes' if c['masking'] else 'no'}, membership inference {'yes' if c['membership'] else 'no'}."]


def _seconds_per_pass(ctx: RunContext, settings: AuditSettings) -> float:
    """Seconds of one forward+backward image pass here: one input-gradient pass of client 0's model on a batch of
    its attack set, timed after a warm-up pass (training passes cost about the same)."""
    x = ctx.data.client_test[0].x[: settings.batch_size]
    labels = predict(ctx.models[0], x, precision=settings.precision)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        input_gradient(ctx.models[0], x, labels, precision=settings.precision)
        times.append(time.perf_counter() - t0)
    return times[-1] / len(x)


def estimate(ctx: RunContext, settings: AuditSettings) -> AuditCost:
    """Image passes (forward + backward = 1) of every part not cached, and their seconds at the run's speed."""
    specs, _ = attack_specs(ctx, settings)
    n_test, n = sum(len(s) for s in ctx.data.client_test), ctx.num_clients
    n_mask = sum(min(len(s), settings.masking_images) for s in ctx.data.client_test)
    s_d = run_downlink_noise(ctx)
    cached = [read_evaluation(ctx.store.root, _key(s, settings), s) is not None for s in specs]
    # once per run when an evaluation is to run: the gradient cosines (2 passes a pair) and, unless cached, the
    # sanity checks (BIM-5 at eps 0.03 and 0.5, one step at 0)
    sanity = sanity_cache(ctx).is_file()
    attacks = 0.0 if all(cached) else n_test * (2 * n + (0 if sanity else 2 * SANITY_STEPS + 1 + 3))
    for spec, hit in zip(specs, cached, strict=True):
        if hit:
            continue
        per_step = spec.samples if spec.attack == "eot-pgd" and s_d > 0 else 1
        crn = spec.start.crn_settings(ctx.cfg) if spec.window else None  # type: ignore[union-attr]
        attacks += n_test * (spec.steps * per_step + 1 + 2 * n / 3 + (crn.window * crn.steps if crn else 0))
    mask_cached = _masking_path(ctx, settings).is_file()
    masking = 0.0 if mask_cached or not settings.masking else n_mask * (
        MASKING_STEPS_FOR_EPS * len(MASKING_EPS) + sum(MASKING_STEPS) + (len(MASKING_EPS) + len(MASKING_STEPS)) / 3)
    mia_s = settings.mia()
    mia_cached = ctx.store.layout.mia(mia_s.key(ctx.total_rounds)).is_file()
    shadows = scoring = 0.0
    if settings.membership and not mia_cached:
        e = shadow_epochs(ctx, mia_s)
        data = len(ctx.data.server) + (sum(len(s) for s in ctx.data.client_train) if n > 1 else 0)
        shadows = settings.shadows * e * data
        views = n + n * (n - 1)
        scoring = views * (settings.shadows + 1 + settings.insider_rounds) * (
            sum(len(s) for s in ctx.data.client_train) / n + len(ctx.data.global_test)) / 3
    passes = {"attacks": attacks, "masking checks": masking, "shadow models": shadows, "MIA scoring": scoring}
    per_pass = _seconds_per_pass(ctx, settings)
    seconds = {k: v * per_pass for k, v in passes.items() if v > 0}
    how = f"{1e3 * per_pass:.2f} ms an image pass, timed here on client 0's model"
    return AuditCost(passes=passes, seconds=seconds, speed=how,
                     cached={"attacks": sum(cached), "attack_specs": len(specs), "masking": int(mask_cached),
                             "membership": int(mia_cached)})


def _attacks(ctx: RunContext, settings: AuditSettings, specs: list[AttackSpec], progress: Progress | None
             ) -> tuple[list[dict[str, Any]], int, float]:
    found = {s: read_evaluation(ctx.store.root, _key(s, settings), s) for s in specs}
    missing = [s for s, f in found.items() if f is None]
    t0 = time.perf_counter()
    if missing:
        for s, r in zip(missing, evaluate_transfer(ctx, missing, **_evaluation(settings), progress=progress),
                        strict=True):
            found[s] = read_evaluation(ctx.store.root, r.key, s)  # as it reads back: fresh and cached alike
    rows = [attack_row(s, *found[s], cached=s not in missing) for s in specs]  # type: ignore[misc]
    return rows, len(specs) - len(missing), time.perf_counter() - t0


def _masking(ctx: RunContext, settings: AuditSettings, progress: Progress | None) -> tuple[list, bool, float]:
    path = _masking_path(ctx, settings)
    if path.is_file():
        try:
            return ctx.store.read_json(path)["clients"], True, 0.0
        except (RunFileError, KeyError, TypeError) as e:
            log.warning("recomputing the masking checks: %s", e)
    t0 = time.perf_counter()
    clients = masking_audit(ctx, seed=settings.seed, precision=settings.precision, progress=progress,
                            images=settings.masking_images)
    ctx.store.write_json(path, {"clients": clients})
    return json_safe(clients), False, time.perf_counter() - t0


def budget(ctx: RunContext, settings: AuditSettings) -> dict[str, Any]:
    """What this audit spent and how sure its numbers are, as a sentence (``text``) and its parts."""
    n_images = sum(len(s) for s in ctx.data.client_test)
    eot = ", ".join(str(k) for k in settings.eot)
    name = {"standard": "Budget: the standard audit", "full": "Budget: the full audit (--full)",
            "quick": "Budget: a QUICK audit (a smoke test)"}[settings.level]
    parts = [f"PGD-{settings.steps}, PGD+CRN, EOT K = {eot} at {settings.precision} on all {n_images} attack images"]
    if settings.masking:
        parts.append(f"masking checks on {settings.masking_images} images a client (and a gradient-free Square-"
                     f"{SQUARE_QUERIES} on any client they flag)")
    if settings.membership:
        parts.append(f"{settings.shadows} shadow models a view of at most {settings.max_shadow_epochs} epochs")
    full = ("" if settings.level == "full" else
            f" (--full: EOT K = {FULL['eot'][0]}, {FULL['shadows']} shadows of at most {FULL['max_shadow_epochs']} "
            f"epochs, masking on {FULL['masking_images']} images, {FULL['precision']})")
    text = (f"{name}: {'; '.join(parts)}{full}. Intervals are 95% over images with the trained models held fixed: "
            "Wilson for an ASR (each attack image counted once), DeLong for an AUC; they do not cover the "
            "randomness of training the shadow models (fewer shadows weaken LiRA, not the loss threshold).")
    return {"level": settings.level, "attack_images": n_images, "masking_images": settings.masking_images,
            "shadows": settings.shadows, "max_shadow_epochs": settings.max_shadow_epochs,
            "eot": list(settings.eot), "precision": settings.precision, "text": text}


def run_audit(ctx: RunContext, settings: AuditSettings = AuditSettings(), *, progress: Progress | None = None
              ) -> dict[str, Any]:
    """Audit the loaded run (module docstring) and write ``RUN/audit/audit.json``; returns that summary."""
    t0 = time.perf_counter()
    info = open_run(ctx.store.root, missing_ok=True).read_records()
    specs, notes = attack_specs(ctx, settings)
    attacks, n_cached, attack_s = _attacks(ctx, settings, specs, progress)
    masking, mask_cached, mask_s = _masking(ctx, settings, progress) if settings.masking else ([], False, 0.0)
    mia = membership_audit(ctx, settings.mia(), progress=progress) if settings.membership else None
    summ = info.summary
    summary: dict[str, Any] = {
        "kind": "fedsafe-audit", "fedsafe_version": __version__, "run_dir": str(ctx.store.root),
        "task": ctx.data.task, "synthetic": ctx.data.synthetic, "clients": ctx.num_clients,
        "rounds": ctx.total_rounds, "defense": ctx.cfg.defense.name, "profile": ctx.cfg.profile,
        "model": {"name": ctx.cfg.model.name, "kwargs": dict(ctx.cfg.model.kwargs),
                  **{k: v for k, v in (summ.get("model") or {}).items() if k in ("class", "parameters")}},
        "quick": settings.quick, "level": settings.level, "settings": settings.to_dict(),
        "budget": budget(ctx, settings),
        "learned": ctx.learned, "learned_reason": summ.get("learned_reason"), "global_acc": summ.get("global_acc"),
        "majority_class_rate": summ.get("majority_class_rate"), "client_final_acc": summ.get("client_final_acc"),
        "downlink_noise": run_downlink_noise(ctx), "privacy": privacy_facts(info.privacy),
        "attacks": attacks, "attack_notes": notes, "masking": masking,
        "membership": mia,
        "cached": {"attacks": n_cached, "attack_specs": len(specs), "masking": mask_cached,
                   "membership": bool(mia and mia.get("cached"))},
        "seconds": {"attacks": attack_s, "masking": mask_s,
                    "membership": 0.0 if mia is None or mia.get("cached") else float(mia["seconds"]),
                    "total": 0.0},
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    summary["sentences"] = sentences(summary)
    summary["verdicts"] = verdicts(summary)
    summary["seconds"]["total"] = time.perf_counter() - t0
    summary = json_safe(summary)
    ctx.store.write_json(ctx.store.layout.audit_summary, summary)
    return summary
