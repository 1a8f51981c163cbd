"""Executing a plan: train what is not cached (each run resumes from its checkpoint), evaluate its attacks (cached
evaluations are read back), then build and write every reproduction's outputs (:mod:`fedsafe.experiments.outputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..attacks.spec import AttackSpec
from ..progress import Progress
from .cache import Evaluation
from .outputs import Written, write_outputs
from .planning import Plan, PlannedRun

__all__ = ["execute"]


def execute(p: Plan, *, progress: Progress | None = None,
            on_trained: Callable[[PlannedRun, bool], None] | None = None) -> list[Written]:
    """Run the plan; ``on_trained(run, skipped)`` is called after each training run (a hook for progress, or for
    tests to interrupt). Returns one :class:`~fedsafe.experiments.outputs.Written` per reproduction and task."""
    evaluations: dict[tuple[Path, AttackSpec], Evaluation] = {}
    o = p.options
    for rd, run in p.runs.items():
        outcome = p.cache.train(run.cfg, progress=progress)
        if on_trained is not None:
            on_trained(run, outcome.skipped)
        specs = list(dict.fromkeys(j.measurement.spec for j in p.jobs if j.run_dir == rd))
        if specs:
            for ev in p.cache.evaluate(run.cfg, specs, precision=o.precision, batch_size=o.batch_size,
                                       sanity=o.sanity, progress=progress):
                evaluations[(rd, ev.spec)] = ev
    written = []
    for rep in p.reproductions:
        for task in p.tasks:
            jobs = [j for j in p.jobs if j.reproduction == rep.name and j.task == task]
            written.append(write_outputs(p.cache.results, rep, task, o, jobs, evaluations,
                                         p.trainings.get((rep.name, task, o.seeds[0]), {})))
    return written
