"""The CRN paper's Table I and Table II from one run directory, with the paper's numbers beside ours.

Table I (CRN paper, Section IV.C): clean accuracy, AASR and attack time per batch of PGD-1 + CRN10, PGD-20 and
PGD-40 at eps 0.05, alpha 0.001. Table II (Section IV.E): AETR of FGSM and PGD (40 steps), each vanilla (FGSM
from zero, PGD from a uniform random start) and started from CRN5 / CRN10.

The run is expected to be the paper's setting as far as a CPU allows (``meningioma``, 3 clients, ``cpu`` profile,
downlink noise 0.01, ``crn.enabled``); whatever it is, the Markdown states it. CRN starts come from the online
buffers when their settings match, else are replayed (:mod:`fedsafe.experiments.transfer`).

>>> # tables = crn_tables("runs/meningioma-cpu-...")
>>> # print(tables.markdown)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..progress import Progress
from ..runs.atomic import write_text
from .paper_numbers import crn_table_1, crn_table_2
from .transfer import AttackSpec, RunContext, TransferResult, evaluate_transfer, load_run

__all__ = ["CrnTables", "crn_tables", "table_specs"]


@dataclass(frozen=True)
class CrnTables:
    table_1: pd.DataFrame  # one row per attack: ours and the paper's
    table_2: pd.DataFrame  # one row per (attack, start): ours and the paper's AETR
    claims: dict[str, bool | None]
    markdown: str
    results: tuple[TransferResult, ...]
    path: Path | None = None


def table_specs(*, windows: Sequence[int] = (5, 10), eps: float = 0.05, alpha: float = 0.001,
                pgd_steps: Sequence[int] = (20, 40), table_2_steps: int = 40, seed: int = 0
                ) -> tuple[dict[str, AttackSpec], dict[tuple[str, str], AttackSpec]]:
    """The attack configurations of Table I (label -> spec) and Table II ((attack, start) -> spec)."""
    long = max(windows)
    t1 = {f"PGD-1+CRN{long}": AttackSpec(attack="pgd", eps=eps, alpha=alpha, steps=1, start=f"crn{long}", seed=seed)}
    for k in pgd_steps:
        t1[f"PGD-{k}"] = AttackSpec(attack="pgd", eps=eps, alpha=alpha, steps=k, start="random", seed=seed)
    t2: dict[tuple[str, str], AttackSpec] = {}
    for name, vanilla in (("FGSM", "zero"), ("PGD", "random")):
        for start in ("vanilla", *(f"crn{w}" for w in windows)):
            t2[(name, start)] = AttackSpec(attack=name.lower(), eps=eps, alpha=alpha, steps=table_2_steps,
                                           start=vanilla if start == "vanilla" else start, seed=seed)
    return t1, t2


def _missing(x: float | None) -> bool:
    return x is None or math.isnan(x)


def _pct(x: float | None) -> str:
    return "n/a" if _missing(x) else f"{100 * x:.2f}%"


def crn_tables(
    run: str | Path | RunContext,
    *,
    windows: Sequence[int] = (5, 10),
    eps: float = 0.05,
    alpha: float = 0.001,
    pgd_steps: Sequence[int] = (20, 40),
    table_2_steps: int = 40,
    seed: int = 0,
    dataset: str = "Meningioma",
    precision: str = "fp32",
    batch_size: int = 100,
    write: bool = True,
    progress: Progress | None = None,
) -> CrnTables:
    """Evaluate the attacks of both tables on the run; Markdown with the paper's ``dataset`` numbers beside ours
    (written to ``RUN/attacks/crn_tables.md`` with ``write``)."""
    ctx = run if isinstance(run, RunContext) else load_run(run, progress=progress)
    t1_specs, t2_specs = table_specs(windows=windows, eps=eps, alpha=alpha, pgd_steps=pgd_steps,
                                     table_2_steps=table_2_steps, seed=seed)
    unique: dict[AttackSpec, None] = dict.fromkeys([*t1_specs.values(), *t2_specs.values()])
    results = evaluate_transfer(ctx, list(unique), precision=precision, batch_size=batch_size, write=write,
                                progress=progress)
    by_spec = dict(zip(unique, results, strict=True))
    paper_1, paper_2 = crn_table_1(dataset), crn_table_2(dataset)

    rows_1 = []
    for label, spec in t1_specs.items():
        r, p = by_spec[spec], paper_1.get(label, {})  # only the paper's own settings get its numbers
        rows_1.append({"attack": label, "acc": r.summary.clean_acc, "acc_paper": _value(p, "ACC"),
                       "aasr": r.summary.aasr, "aasr_paper": _value(p, "AASR"),
                       "asr_avg_benign": r.summary.asr_avg_benign, "asr_self": r.summary.asr_self,
                       "seconds_per_batch": r.record["attack_seconds_per_batch"], "seconds_paper": _value(p, "time"),
                       "attack_passes_per_image": spec.steps,
                       "crn_passes_per_image": r.record["crn_passes_per_image"],
                       "start_source": ", ".join(sorted(set(r.record["start_source"].values())))})
    table_1 = pd.DataFrame(rows_1)
    rows_2 = []
    for (name, start), spec in t2_specs.items():
        r = by_spec[spec]
        same = name == "FGSM" or spec.steps == 40  # the paper's PGD in Table II has 40 steps
        paper = paper_2.get((name, "Vanilla" if start == "vanilla" else start.upper())) if same else None
        rows_2.append({"attack": name if name == "FGSM" else f"PGD-{spec.steps}", "start": start,
                       "aetr": r.summary.aetr, "aetr_paper": paper.value if paper else None,
                       "asr_avg_benign": r.summary.asr_avg_benign, "asr_self": r.summary.asr_self,
                       "aasr": r.summary.aasr})
    table_2 = pd.DataFrame(rows_2)
    claims = _claims(table_1, table_2, windows)
    md = _markdown(ctx, table_1, table_2, claims, windows=windows, eps=eps, alpha=alpha, precision=precision,
                   batch_size=batch_size, dataset=dataset, results=results)
    path = None
    if write:
        path = ctx.run_dir.root / "attacks" / "crn_tables.md"
        write_text(path, md)
    return CrnTables(table_1=table_1, table_2=table_2, claims=claims, markdown=md, results=tuple(results), path=path)


def _value(cells: dict, column: str) -> float | None:
    return cells[column].value if column in cells else None


def _claims(t1: pd.DataFrame, t2: pd.DataFrame, windows: Sequence[int]) -> dict[str, bool | None]:
    crn_row, pgd40 = t1.iloc[0], t1[t1.attack == "PGD-40"]
    out: dict[str, bool | None] = {}
    if len(pgd40):
        p = pgd40.iloc[0]
        out["crn1_aasr_above_pgd40"] = bool(crn_row.aasr > p.aasr)
        out["crn1_cheaper_than_pgd40"] = bool(crn_row.seconds_per_batch < p.seconds_per_batch)
    for name in t2.attack.unique():
        rows = t2[t2.attack == name].set_index("start")
        vanilla = rows.loc["vanilla"]
        for w in windows:
            crn = rows.loc[f"crn{w}"]
            out[f"{name}_crn{w}_raises_benign_asr"] = _gt(crn.asr_avg_benign, vanilla.asr_avg_benign)
            out[f"{name}_crn{w}_raises_aetr"] = _gt(crn.aetr, vanilla.aetr)
    return out


def _gt(a: float, b: float) -> bool | None:
    return None if math.isnan(a) or math.isnan(b) else bool(a > b)


def _markdown(ctx: RunContext, t1: pd.DataFrame, t2: pd.DataFrame, claims: dict[str, bool | None], *,
              windows, eps, alpha, precision, batch_size, dataset, results) -> str:
    cfg, data = ctx.cfg, ctx.data
    crn = results[0].record  # any result: the setup is shared
    s_d = cfg.federation.downlink_noise
    lines = [
        f"# CRN paper, Tables I and II: ours ({data.task}{' [synthetic]' if data.synthetic else ''}) beside the "
        f"paper's ({dataset})",
        "",
        f"Run `{ctx.run_dir.root}`: {data.num_clients} clients, profile {cfg.profile} ({cfg.model.name} width "
        f"{cfg.model.width}, {cfg.task.image_size}x{cfg.task.image_size}x{data.in_channels}), {cfg.train.rounds} "
        f"rounds x {cfg.train.local_epochs} local epochs ({cfg.train.optimizer}), downlink noise {s_d:g}, seed "
        f"{cfg.seed}. Attack sets: each client's own test set ({', '.join(str(n) for n in crn['n'])} images); "
        f"labels: the attacker's own clean predictions; eps {eps:g}, alpha {alpha:g}; precision {precision}; "
        f"{crn['batch_size']} images a batch. CRN: j = {cfg.crn.steps or cfg.train.local_epochs} centred steps a "
        f"round, step {'eps/j' if cfg.crn.alpha is None else cfg.crn.alpha}, on the received (noisy) copies.",
        "",
        "## Table I: accuracy, AASR and attack time",
        "",
        "| attack | ACC | ACC (paper) | AASR | AASR (paper) | ASR benign | ASR self | s/batch | s/batch (paper, GPU) "
        "| passes/image at attack | CRN passes/image in training | CRN source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t1.itertuples():
        paper_t = "n/a" if _missing(r.seconds_paper) else f"{r.seconds_paper:.3f}"
        lines.append(f"| {r.attack} | {_pct(r.acc)} | {_pct(r.acc_paper)} | {_pct(r.aasr)} | {_pct(r.aasr_paper)} | "
                     f"{_pct(r.asr_avg_benign)} | {_pct(r.asr_self)} | {r.seconds_per_batch:.3f} | {paper_t} | "
                     f"{r.attack_passes_per_image} | {r.crn_passes_per_image} | {r.start_source} |")
    lines += ["", "## Table II: AETR", "", "| attack | start | AETR | AETR (paper) | ASR benign | ASR self |",
              "|---|---|---|---|---|---|"]
    for r in t2.itertuples():
        lines.append(f"| {r.attack} | {r.start} | {_pct(r.aetr)} | {_pct(r.aetr_paper)} | {_pct(r.asr_avg_benign)} "
                     f"| {_pct(r.asr_self)} |")
    lines += ["", "## Do the claims hold here?", "", *_sentences(t1, t2, claims, windows)]
    warnings = results[0].record["sanity_warnings"]
    if warnings:
        lines += ["", "Sanity-check warnings:", *[f"- {w}" for w in warnings]]
    lines += ["", "Paper numbers: CRN paper Table I (Section IV.C) and Table II (Section IV.E), "
              "`fedsafe.experiments.paper_numbers` (with the garbled cells of the extracted text marked)."]
    return "\n".join(lines) + "\n"


def _yes(v: bool | None) -> str:
    return "undefined" if v is None else ("yes" if v else "no")


def _sentences(t1: pd.DataFrame, t2: pd.DataFrame, claims: dict[str, bool | None], windows) -> list[str]:
    out = []
    crn_row = t1.iloc[0]
    if "crn1_aasr_above_pgd40" in claims:
        p = t1[t1.attack == "PGD-40"].iloc[0]
        speed = p.seconds_per_batch / crn_row.seconds_per_batch if crn_row.seconds_per_batch > 0 else float("nan")
        holds = "holds" if claims["crn1_aasr_above_pgd40"] and claims["crn1_cheaper_than_pgd40"] else "does not hold"
        out.append(f"- {crn_row.attack} beats PGD-40 at a fraction of its cost: **{holds}** here (AASR "
                   f"{_pct(crn_row.aasr)} vs {_pct(p.aasr)}; attack time {speed:.1f}x shorter; paper: "
                   f"63.92% vs 32.99%, 31x). The CRN cost ({crn_row.crn_passes_per_image} passes an image) was paid "
                   f"during training, spread over the last rounds.")
    for name in t2.attack.unique():
        for w in windows:
            benign, aetr = claims.get(f"{name}_crn{w}_raises_benign_asr"), claims.get(f"{name}_crn{w}_raises_aetr")
            out.append(f"- CRN{w} raises the transfer of {name} to benign clients: ASR on benign clients "
                       f"{_yes(benign)}, AETR {_yes(aetr)}.")
    return out
