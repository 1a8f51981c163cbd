"""The CRN paper's Tables I and II on one run directory (``fedsafe crn-tables RUN``): the measurements of
:mod:`.crn_table1` and :mod:`.crn_table2` (their settings as arguments: windows, eps, alpha, PGD steps) evaluated on
the given run and built by the same builders, with the paper's ``dataset`` numbers beside ours.

The run is expected to be the paper's setting as far as a CPU allows (``meningioma``, 3 clients, ``cpu`` profile,
downlink noise 0.01, ``crn.enabled``); whatever it is, the Markdown states it. CRN starts come from the online
buffers when their settings match, else are replayed (:mod:`fedsafe.evaluation.start_resolution`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...attacks.spec import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_WINDOWS
from ...defaults import ATTACK_BATCH_SIZE, ATTACK_PRECISION, crn_steps
from ...evaluation.results import TransferResult
from ...evaluation.run_context import RunContext, load_context
from ...progress import Progress
from ...runs.atomic import write_text
from ...runs.run import open_run
from ..on_run import OnRun, build_on_run
from ..outputs import built_markdown
from . import crn_table1, crn_table2
from .base import Measurement, Options, tags

__all__ = ["CrnTables", "crn_tables"]


@dataclass(frozen=True)
class CrnTables:
    table_1: pd.DataFrame  # one row per attack: ours and the paper's (numbers)
    table_2: pd.DataFrame  # one row per (attack, start): ours and the paper's AETR
    claims: dict[str, bool | None]
    markdown: str
    results: tuple[TransferResult, ...]
    path: Path | None = None


def crn_tables(
    run: str | Path | RunContext,
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    eps: float = DEFAULT_EPS,
    alpha: float = DEFAULT_ALPHA,
    pgd_steps: Sequence[int] = crn_table1.PGD_STEPS,
    table_2_steps: int = crn_table2.PAPER_PGD_STEPS,
    seed: int = 0,
    dataset: str = "Meningioma",
    precision: str = ATTACK_PRECISION,
    batch_size: int = ATTACK_BATCH_SIZE,
    write: bool = True,
    progress: Progress | None = None,
) -> CrnTables:
    """Evaluate the attacks of both tables on the run; Markdown with the paper's ``dataset`` numbers beside ours
    (written to ``RUN/attacks/crn_tables.md`` with ``write``)."""
    ctx = run if isinstance(run, RunContext) else load_context(open_run(run), progress=progress)
    t1 = [dataclasses.replace(m, training="run") for m in crn_table1.measurements(
        seed, windows=windows, eps=eps, alpha=alpha, pgd_steps=pgd_steps)]
    t2 = [Measurement("run", s, tags(attack_name=name, start_name=start)) for (name, start), s in crn_table2.specs(
        windows=windows, eps=eps, alpha=alpha, steps=table_2_steps, seed=seed).items()]
    options = Options(profile=ctx.cfg.profile, seeds=(seed,), precision=precision, batch_size=batch_size)
    (one, two), results = build_on_run(ctx, [(crn_table1.CRN_TABLE1, t1), (crn_table2.CRN_TABLE2, t2)],
                                       options=options, paper_dataset=dataset, write=write, progress=progress)
    table_1 = crn_table1.numbers(one.input.summary, crn_table1.paper_numbers(dataset))
    table_2 = crn_table2.numbers(two.input.summary, crn_table2.paper_numbers(dataset))
    claims = _claims(table_1, table_2, windows)
    md = _markdown(ctx, one, two, dataset=dataset, results=results)
    path = None
    if write:
        path = ctx.store.layout.crn_tables
        write_text(path, md)
    return CrnTables(table_1=table_1, table_2=table_2, claims=claims, markdown=md, results=tuple(results), path=path)


def _gt(a: float, b: float) -> bool | None:
    return None if math.isnan(a) or math.isnan(b) else bool(a > b)


def _claims(t1: pd.DataFrame, t2: pd.DataFrame, windows: Sequence[int]) -> dict[str, bool | None]:
    """Each claim as a boolean on the means (None: undefined): the PGD-1+CRN rows (CRN step eps/j, then the
    attack's alpha: "crn1_...", "crn1_alpha_...") against PGD-40 and against their final-model controls, CRN-R
    against vanilla per attack."""
    by = t1.set_index("attack")
    crn_rows = [a for a in t1.attack if a.startswith("PGD-1+CRN")]
    out: dict[str, bool | None] = {}
    for name, row in zip(("crn1", "crn1_alpha"), crn_rows, strict=False):
        c = by.loc[row]
        if "PGD-40" in by.index:
            p = by.loc["PGD-40"]
            out[f"{name}_aasr_above_pgd40"] = _gt(c.aasr, p.aasr)
            out[f"{name}_cheaper_than_pgd40"] = _gt(p.seconds_per_batch, c.seconds_per_batch)
        control = crn_table1.control_label(max(windows), row.rpartition("step ")[2])
        if control in by.index:
            out[f"{name}_rounds_beat_final_model"] = _gt(c.aasr, by.loc[control].aasr)
    for name in t2.attack.unique():
        rows = t2[t2.attack == name].set_index("start")
        vanilla = rows.loc["vanilla"]
        for w in windows:
            crn = rows.loc[f"crn{w}"]
            out[f"{name}_crn{w}_raises_benign_asr"] = _gt(crn.asr_avg_benign, vanilla.asr_avg_benign)
            out[f"{name}_crn{w}_raises_aetr"] = _gt(crn.aetr, vanilla.aetr)
    return out


def _markdown(ctx: RunContext, one: OnRun, two: OnRun, *, dataset: str, results: Sequence[TransferResult]) -> str:
    cfg, data, info = ctx.cfg, ctx.data, open_run(ctx.store.root, missing_ok=True).read_records()
    rec, o = results[0].record, one.input.options  # any result: the setup is shared
    spec = next(iter(one.input.summary.itertuples()))
    j = crn_steps(cfg)
    lines = [
        f"# CRN paper, Tables I and II: ours ({data.task}{' [synthetic]' if data.synthetic else ''}) beside the "
        f"paper's ({dataset})",
        "",
        f"Run `{ctx.store.root}`: {data.num_clients} clients, profile {cfg.profile} ({cfg.model.name} width "
        f"{cfg.model.width}, {cfg.task.image_size}x{cfg.task.image_size}x{data.in_channels}), {cfg.train.rounds} "
        f"rounds x {cfg.train.local_epochs} local epochs ({cfg.train.optimizer}), downlink noise "
        f"{info.noise().downlink:g} ({info.noise().how}), seed {cfg.seed}. Attack sets: each client's own test set "
        f"({', '.join(str(n) for n in rec['n'])} images); labels: the attacker's own clean predictions; eps "
        f"{spec.eps:g}, alpha {spec.alpha:g}; precision {o.precision}; {rec['batch_size']} images a batch. CRN: the "
        f"run's online buffers (eps {cfg.crn.eps:g}, j = {j} {'centred ' if cfg.crn.centre_grad else ''}steps a "
        f"round, step {'eps/j' if cfg.crn.alpha is None else cfg.crn.alpha}, on the received noisy copies) where "
        "the start's settings are theirs, else replayed from the kept copies.",
        "",
        *built_markdown(one.built),
        *built_markdown(two.built),
    ]
    warnings = rec["sanity_warnings"]
    if warnings:
        lines += ["Sanity-check warnings:", *[f"- {w}" for w in warnings], ""]
    lines += ["Paper numbers: CRN paper Table I (Section IV.C) and Table II (Section IV.E), "
              "`fedsafe.reproduce.paper_numbers` (with the garbled cells of the extracted text marked)."]
    return "\n".join(lines) + "\n"
