"""Reproductions built on one given run directory instead of the runs a plan trains: their measurements are evaluated
on that run (:func:`fedsafe.evaluation.transfer_evaluation.evaluate_transfer`, written to its ``attacks/`` folder)
and their own builders make the tables and verdicts, from the same summary rows as a planned reproduction
(:func:`fedsafe.reproduce.outputs.summary_row`). ``fedsafe crn-tables RUN`` is built on this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..attacks.spec import AttackSpec
from ..evaluation.results import TransferResult
from ..evaluation.run_context import RunContext
from ..evaluation.transfer_evaluation import evaluate_transfer
from ..progress import Progress
from ..runs.run import open_run
from .outputs import summary_row
from .reproductions.base import BuildInput, Built, Measurement, Options, Reproduction
from .run_cache import Evaluation

__all__ = ["OnRun", "build_on_run"]


@dataclass(frozen=True)
class OnRun:
    """One reproduction built on the run: what its builder received and made."""

    reproduction: Reproduction
    input: BuildInput
    built: Built


def build_on_run(ctx: RunContext, parts: Sequence[tuple[Reproduction, Sequence[Measurement]]], *,
                 options: Options = Options(), paper_dataset: str | None = None, write: bool = True,
                 progress: Progress | None = None) -> tuple[list[OnRun], list[TransferResult]]:
    """Evaluate every measurement of ``parts`` (each spec once) on the run of ``ctx`` and build each reproduction
    (``paper_dataset``: the paper's dataset its numbers are put beside). Returns the built parts and the results,
    one per distinct spec, in order."""
    unique: dict[AttackSpec, None] = dict.fromkeys(m.spec for _, ms in parts for m in ms)
    results = evaluate_transfer(ctx, list(unique), precision=options.precision, batch_size=options.batch_size,
                                sanity=options.sanity, write=write, progress=progress)
    by_spec = {r.spec: r for r in results}
    root = ctx.store.root
    info = open_run(root, missing_ok=True).read_records()
    out = []
    for rep, measurements in parts:
        rows = []
        for m in measurements:
            r = by_spec[m.spec]
            ev = Evaluation(spec=r.spec, key=r.key, record=r.record, frame=r.frame, run_dir=root, cached=False)
            rows.append(summary_row(reproduction=rep.name, task=ctx.data.task, seed=m.spec.seed, measurement=m,
                                    run_dir=root, evaluation=ev, info=info, options=options))
        inp = BuildInput(reproduction=rep, task=ctx.data.task, options=options, summary=pd.DataFrame(rows),
                         runs={m.training: info for m in measurements}, paper_dataset=paper_dataset)
        out.append(OnRun(rep, inp, rep.build(inp)))
    return out, results
