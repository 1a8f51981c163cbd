"""Planning the reproductions: which federations to train (unique by run directory, so tables that share a
training train it once), which attack evaluations and membership inferences to run on them, what is already
cached, and what the rest costs
(:mod:`fedsafe.reproduce.costs`). Nothing is trained here.

Each training's config is the profile, then the task and ``--quick`` (``QUICK``), then the user's overrides, then
the reproduction's own delta for that training, then the seed. The seeds are the list in :class:`Options`, fixed
before anything runs (design §11): the plan trains and attacks every one of them, and :meth:`Plan.describe` states the
list (and any reproduction that asks for more seeds than it gets) before execution starts.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..attacks.spec import AttackSpec
from ..config import ExperimentConfig, load_config
from ..data.tasks import TASKS
from ..progress import Progress, duration
from ..runs.layout import RunLayout
from ..training.delta import ConfigDelta
from ..verdicts.claims import seeds_text
from .costs import (
    DEFAULT_MACS_PER_SECOND,
    attack_speeds_by_precision,
    audit_passes,
    eval_passes,
    macs_per_image,
    speeds_in,
    train_passes,
    training_speeds_by_precision,
)
from .reproductions import resolve
from .reproductions.base import Measurement, Options, Reproduction
from .run_cache import RunCache, task_data_root

__all__ = ["PAPER_TASKS", "QUICK", "QUICK_OVERRIDES", "TASK_NAMES", "Audit", "Job", "Plan", "PlannedRun", "base_config",
           "expand_tasks", "plan"]

TASK_NAMES = ("meningioma", "glioma", "brain-tumor-4class", "breastmnist", "pcam", "synthetic")
PAPER_TASKS = ("meningioma", "glioma", "brain-tumor-4class", "breastmnist", "pcam")
QUICK = ConfigDelta.of(train={"rounds": 10, "local_epochs": 1})
"""--quick: 10 rounds (CRN10 needs 10) of one local epoch."""
QUICK_OVERRIDES = QUICK.overrides()
Audit = tuple[Path, str]
"""A planned membership inference: (run directory, its settings' key)."""


@dataclass(frozen=True)
class PlannedRun:
    task: str
    seed: int
    names: tuple[str, ...]  # "<reproduction>/<training>" that use it
    cfg: ExperimentConfig
    run_dir: Path
    trained: bool
    estimate_seconds: float


@dataclass(frozen=True)
class Job:
    """One measurement of one reproduction on one task and seed, and the run it attacks."""

    reproduction: str
    task: str
    seed: int
    measurement: Measurement
    run_dir: Path


@dataclass
class Plan:
    """Every training run (unique by run directory) and attack evaluation of the reproductions, what is already
    cached, and what the rest is estimated to cost. ``trainings``: (reproduction, task, seed) -> its deltas."""

    reproductions: tuple[Reproduction, ...]
    tasks: tuple[str, ...]
    options: Options
    cache: RunCache
    runs: dict[Path, PlannedRun]
    jobs: tuple[Job, ...]
    cached_evals: frozenset[tuple[Path, AttackSpec]]
    eval_estimates: dict[tuple[Path, AttackSpec], float]
    speed_source: str
    trainings: dict[tuple[str, str, int], dict[str, ConfigDelta]] = field(default_factory=dict)
    audits: dict[Audit, Any] = field(default_factory=dict)
    """(run directory, settings key) -> the ``MiaSettings`` of a membership inference a reproduction asks for."""
    cached_audits: frozenset[Audit] = frozenset()
    audit_estimates: dict[Audit, float] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def evaluations(self, seed: int | None = None) -> list[tuple[Path, AttackSpec]]:
        return list(dict.fromkeys((j.run_dir, j.measurement.spec) for j in self.jobs
                                  if seed is None or j.seed == seed))

    def audits_of(self, seed: int | None = None) -> list[Audit]:
        """The membership inferences planned on the runs of ``seed`` (all with None)."""
        return [a for a in self.audits if seed is None or self.runs[a[0]].seed == seed]

    def pending(self, seed: int | None = None) -> tuple[list[PlannedRun], list[tuple[Path, AttackSpec]], list[Audit]]:
        """The runs (of ``seed``, or all with None) not trained yet, the attack evaluations and the membership
        inferences not cached yet."""
        runs = [r for r in self.runs.values() if (seed is None or r.seed == seed) and not r.trained]
        return (runs, [e for e in self.evaluations(seed) if e not in self.cached_evals],
                [a for a in self.audits_of(seed) if a not in self.cached_audits])

    def cost(self, seed: int | None = 0) -> dict[str, Any]:
        """Runs, evaluations and membership inferences (of ``seed``, or all with None) still to do, and their
        estimated seconds."""
        runs = [r for r in self.runs.values() if seed is None or r.seed == seed]
        evals = self.evaluations(seed)
        todo, etodo, atodo = self.pending(seed)
        per_run = statistics.mean(r.estimate_seconds for r in todo) if todo else 0.0
        return {"runs": len(runs), "runs_to_train": len(todo), "seconds_per_run": per_run,
                "train_seconds": sum(r.estimate_seconds for r in todo), "evaluations": len(evals),
                "evaluations_to_run": len(etodo), "attack_seconds": sum(self.eval_estimates[e] for e in etodo),
                "audits": len(self.audits_of(seed)), "audits_to_run": len(atodo),
                "audit_seconds": sum(self.audit_estimates[a] for a in atodo)}

    def missing(self) -> list[str]:
        """What the cache lacks, one phrase each: the runs still to train, then the attack evaluations and the
        membership inferences to run."""
        runs, evals, audits = self.pending()
        return ([f"training {r.run_dir.name} ({', '.join(r.names)}, seed {r.seed})" for r in runs]
                + [f"evaluation {spec.label} on {d.name}" for d, spec in evals]
                + [f"membership inference on {d.name}" for d, _ in audits])

    def seed_lines(self) -> list[str]:
        """The seed list, fixed before running, and each reproduction that asks for more seeds than it gets."""
        seeds = self.options.seeds
        lines = [f"Seeds (fixed before running, never chosen by outcome): {seeds_text(seeds)} ({len(seeds)})."]
        short = [r for r in self.reproductions if len(seeds) < r.min_seeds]
        if short:
            lines.append("Fewer seeds than asked for: " + "; ".join(
                f"{r.name} asks for at least {r.min_seeds}" for r in short) + f"; with {len(seeds)} its verdicts can "
                "resolve less (below 3 matched seeds they are indicative only).")
        return lines

    def describe(self, jobs: int = 1) -> list[str]:
        """What one seed (and all seeds) costs, in sentences for the console, after the seed list. The estimates
        are the work, run after run, at the speed the finished runs were measured at (attacks: the cached
        evaluations'); with ``jobs`` > 1 workers the wall time is also given, the work shared out (on a CPU, each
        worker then has fewer threads: the measured speed is the better guide when it was measured with the same
        ``--jobs``)."""

        def wall(seconds: float) -> str:
            return f"~{duration(seconds)}" + (f", ~{duration(seconds / jobs)} with --jobs {jobs}" if jobs > 1 else "")

        first = self.options.seeds[0]
        one, every = self.cost(first), self.cost(None)
        q = " (QUICK: fewer rounds)" if self.options.quick else ""
        lines = [
            f"{', '.join(r.name for r in self.reproductions)} on {', '.join(self.tasks)}; profile "
            f"{self.options.profile}{q}.", *self.seed_lines(),
            f"One seed: {one['runs']} training run(s), {one['runs_to_train']} not yet cached x ~"
            f"{duration(one['seconds_per_run'])} each = ~{duration(one['train_seconds'])}; "
            f"{one['evaluations']} attack evaluation(s), {one['evaluations_to_run']} not yet cached "
            f"(~{duration(one['attack_seconds'])})" + (
                f"; {one['audits']} membership inference(s), {one['audits_to_run']} not yet cached "
                f"(~{duration(one['audit_seconds'])})." if one["audits"] else "."),
        ]
        per_rep = [f"{r.name} {len(self.trainings.get((r.name, self.tasks[0], first), {}))}"
                   for r in self.reproductions]
        lines.append(f"Trainings a seed (per task): {', '.join(per_rep)}; {one['runs'] // max(len(self.tasks), 1)} "
                     "distinct (a training two tables share is trained once).")
        if len(self.options.seeds) > 1:
            lines.append(f"All {len(self.options.seeds)} seeds: {every['runs_to_train']} run(s) to train "
                         f"({wall(every['train_seconds'])}), {every['evaluations_to_run']} evaluation(s) "
                         f"({wall(every['attack_seconds'])})" + (
                             f", {every['audits_to_run']} membership inference(s) ({wall(every['audit_seconds'])})."
                             if every["audits"] else "."))
        lines.append(f"Estimates: {self.speed_source}.")
        return lines


def base_config(task: str, seed: int, options: Options, delta: ConfigDelta = ConfigDelta()) -> ExperimentConfig:
    """The config of one training: profile, task, quick, the user's overrides, ``delta``, seed (later wins)."""
    overrides = [*ConfigDelta.of(task={"name": task}).overrides(), *(QUICK_OVERRIDES if options.quick else ()),
                 *options.overrides, *delta.overrides(), *ConfigDelta.of(seed=seed).overrides()]
    return load_config(profile=options.profile, overrides=overrides)


def _check_task(task: str, cfg: ExperimentConfig) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    root = task_data_root(cfg)
    if cfg.task.snapshot and not root.is_file():  # type: ignore[union-attr]
        raise ValueError(f"task {task}: task.snapshot {root}: no such file (make one with `fedsafe data snapshot`)")
    if root is not None and not root.exists():
        raise ValueError(f"task {task}: its data is not at {root} (needs {TASKS[task].data_root}); set "
                         f"--set task.data_root=PATH or $FEDSAFE_DATA, or see `fedsafe data download`")


def expand_tasks(tasks: Sequence[str], options: Options = Options()) -> tuple[tuple[str, ...], dict[str, str]]:
    """``all`` -> every task of ``PAPER_TASKS`` whose data is present; returns (tasks, {skipped task: why})."""
    out: dict[str, None] = {}
    skipped: dict[str, str] = {}
    for t in tasks:
        if t != "all":
            out[t] = None
            continue
        for name in PAPER_TASKS:
            root = task_data_root(base_config(name, 0, options))
            if root is not None and not root.exists():
                skipped[name] = f"no data at {root}"
            else:
                out[name] = None
    return tuple(out), skipped


def plan(reproductions: Iterable[str | Reproduction], *, tasks: Sequence[str], results: str | Path,
         options: Options = Options(), progress: Progress | None = None) -> Plan:
    """Resolve configurations, keys and caches; nothing is trained. Raises ValueError naming a missing data path
    or a bad setting."""
    reps = resolve(reproductions)
    tasks = tuple(dict.fromkeys(tasks))
    if not tasks:
        raise ValueError("no task given")
    cache = RunCache(results)
    runs: dict[Path, PlannedRun] = {}
    jobs: list[Job] = []
    audits: dict[Audit, Any] = {}
    trainings: dict[tuple[str, str, int], dict[str, ConfigDelta]] = {}
    for task in tasks:
        _check_task(task, base_config(task, 0, options))
        for seed in options.seeds:
            base = base_config(task, seed, options)
            for rep in reps:
                deltas = trainings[(rep.name, task, seed)] = rep.trainings(base)
                rdirs: dict[str, Path] = {}
                for name, delta in deltas.items():
                    cfg = base_config(task, seed, options, delta)
                    rd = rdirs[name] = cache.run_dir(cfg, progress=progress)
                    if rd in runs:
                        runs[rd] = replace(runs[rd], names=(*runs[rd].names, f"{rep.name}/{name}"))
                        continue
                    runs[rd] = PlannedRun(task=task, seed=seed, names=(f"{rep.name}/{name}",), cfg=cfg, run_dir=rd,
                                          trained=RunLayout(rd).is_complete(), estimate_seconds=math.nan)
                for m in rep.measurements(seed):
                    if m.training not in rdirs:
                        raise ValueError(f"{rep.name}: measurement on unknown training {m.training!r}")
                    jobs.append(Job(rep.name, task, seed, m, rdirs[m.training]))
                for name, settings in (rep.audits(options.quick) if rep.audits else {}).items():
                    if name not in rdirs:
                        raise ValueError(f"{rep.name}: membership inference on unknown training {name!r}")
                    rd = rdirs[name]
                    audits[(rd, settings.key(runs[rd].cfg.train.rounds))] = settings
    # estimates: MACs of every run at a speed measured on the finished runs (or a rough default)
    macs: dict = {}
    work = {rd: 3 * train_passes(r.cfg, cache.task_size(r.cfg)) * macs_per_image(r.cfg, macs)
            for rd, r in runs.items()}
    trained = training_speeds_by_precision(cache.runs, macs)  # every summary read once, for the audits' speed too
    measured = speeds_in(trained)
    speed = statistics.median(measured) if measured else DEFAULT_MACS_PER_SECOND
    source = (f"{speed / 1e9:.1f} GMAC/s measured on {len(measured)} finished run(s)" if measured else
              f"a rough {speed / 1e9:.0f} GMAC/s (no finished run to measure yet)")
    runs = {rd: replace(r, estimate_seconds=work[rd] / speed) for rd, r in runs.items()}
    evals = list(dict.fromkeys((j.run_dir, j.measurement.spec) for j in jobs))
    cached = frozenset(e for e in evals if cache.cached_evaluation(
        e[0], e[1], precision=options.precision, batch_size=options.batch_size) is not None)
    audited = frozenset(a for a in audits if RunLayout(a[0]).mia(a[1]).is_file())
    audit_precisions = {audits[a].precision for a in audits if a not in audited}
    # attacks run in their own precision: their own speed, read from every cached record (about 1 ms a record),
    # so only when an evaluation is left to estimate, or a membership inference with no training in its precision
    by_attack = (attack_speeds_by_precision(cache.runs, macs) if len(cached) < len(evals)
                 or any(not trained.get(p) for p in audit_precisions) else {})
    attacked = speeds_in(by_attack) if len(cached) < len(evals) else []
    attack_speed = statistics.median(attacked) if attacked else speed
    if len(cached) < len(evals):
        source += (f"; attacks {attack_speed / 1e9:.1f} GMAC/s measured on {len(attacked)} cached evaluation(s)"
                   if attacked else "; attacks at the same speed (no cached evaluation to measure yet)")
    est = {(rd, spec): 3 * eval_passes(runs[rd].cfg, spec) * macs_per_image(runs[rd].cfg, macs) / attack_speed
           for rd, spec in evals}
    audit_speeds = {p: _audit_speed(p, trained, by_attack, speed) for p in audit_precisions}
    for p, (_, how) in sorted(audit_speeds.items()):
        source += f"; membership inference ({p}) {how}"
    audit_est = {(rd, key): 3 * audit_passes(runs[rd].cfg, cache.task_size(runs[rd].cfg), settings)
                 * macs_per_image(runs[rd].cfg, macs) / audit_speeds.get(settings.precision, (speed,))[0]
                 for (rd, key), settings in audits.items()}
    return Plan(reproductions=reps, tasks=tasks, options=options, cache=cache, runs=runs, jobs=tuple(jobs),
                cached_evals=cached, eval_estimates=est, speed_source=source, trainings=trainings, audits=audits,
                cached_audits=audited, audit_estimates=audit_est)


def _audit_speed(precision: str, trained: dict, attacked: dict, training: float) -> tuple[float, str]:
    """The speed a membership inference's shadow models train at (in their own precision, fp32 by default, while
    the federations may train in bf16): trainings measured in that precision; else cached attack evaluations in it
    (gradient passes through the same model); else the trainings' speed, as named. ``trained``, ``attacked``: the
    measured speeds by precision (:func:`~.costs.training_speeds_by_precision`, ``attack_speeds_by_precision``)."""
    for kind, by_precision in (("finished run", trained), ("cached evaluation", attacked)):
        measured = speeds_in(by_precision, precision)
        if measured:
            speed = statistics.median(measured)
            return speed, f"{speed / 1e9:.1f} GMAC/s measured on {len(measured)} {kind}(s) in {precision}"
    return training, f"at the trainings' speed (nothing measured in {precision} yet)"
