"""CRN paper, Table I (Section IV.C): clean accuracy, AASR and attack time per batch of PGD-1 + CRN10, PGD-20 and
PGD-40 at eps 0.05, alpha 0.001, on the CRN run (:data:`~.setups.CRN_RUN`).

The paper's numbers are shown only beside rows of its own settings (same label). SPEC 7: the claim is that
PGD-1 + CRN10 beats PGD-40 (and PGD-20) in AASR at a fraction of its attack time; CRN's own cost (R x j passes an
image) is paid during training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ...attacks.spec import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_WINDOWS, AttackSpec, Start
from .. import figures as figs
from ..delta import ConfigDelta
from ..paper_numbers import crn_table_1
from ..verdicts import Verdict, fmt_pct
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .format import aggregate, cell, dataset, fmt_seconds, no_paper_note, paper_text, run_label
from .setups import CRN_RUN

__all__ = ["CRN_TABLE1", "PGD_STEPS", "numbers", "specs"]

PGD_STEPS = (20, 40)


def specs(*, windows: Sequence[int] = DEFAULT_WINDOWS, eps: float = DEFAULT_EPS, alpha: float = DEFAULT_ALPHA,
          pgd_steps: Sequence[int] = PGD_STEPS, seed: int = 0) -> dict[str, AttackSpec]:
    """label -> spec: PGD-1 from the longest window's CRN (at the attack's eps), then PGD-k from a random start."""
    long = max(windows)
    out = {f"PGD-1+CRN{long}": AttackSpec(attack="pgd", eps=eps, alpha=alpha, steps=1,
                                          start=Start.crn(long, eps=eps), seed=seed)}
    for k in pgd_steps:
        out[f"PGD-{k}"] = AttackSpec(attack="pgd", eps=eps, alpha=alpha, steps=k, start="random", seed=seed)
    return out


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement("crn", spec, tags(row=label)) for label, spec in specs(seed=seed).items()]


def _trainings(base) -> dict[str, ConfigDelta]:
    return {"crn": CRN_RUN}


def _paper(task: str) -> dict:
    ds = dataset(task, "crn")
    return crn_table_1(ds) if ds else {}


def numbers(summary: pd.DataFrame, paper: dict) -> pd.DataFrame:
    """One row per attack (means over the summary's seeds) beside the paper's values (NaN: not its setting)."""
    rows = []
    for label, g in summary.groupby("row", sort=False):
        p = paper.get(label, {})
        rows.append({"attack": label, "acc": g.clean_acc.mean(), "acc_paper": _value(p, "ACC"),
                     "aasr": g.aasr.mean(), "aasr_paper": _value(p, "AASR"),
                     "asr_avg_benign": g.asr_avg_benign.mean(), "asr_self": g.asr_self.mean(),
                     "seconds_per_batch": g.seconds_per_batch.mean(), "seconds_paper": _value(p, "time"),
                     "attack_passes_per_image": int(g.fb_passes_per_image.iloc[0]),
                     "crn_passes_per_image": int(g.crn_passes_per_image.iloc[0]),
                     "start_source": g.start_source.iloc[0]})
    return pd.DataFrame(rows)


def _value(cells: dict, column: str) -> float:
    return cells[column].value if column in cells else math.nan


def _verdicts(by: dict, inp: BuildInput, paper: dict, ds: str | None) -> list[Verdict]:
    crn = next((r for label, r in by.items() if label.startswith("PGD-1+CRN")), None)
    out = []
    for other in ("PGD-40", "PGD-20"):
        if crn is None or other not in by:
            continue
        o = by[other]
        faster = o.seconds_per_batch_mean / crn.seconds_per_batch_mean if crn.seconds_per_batch_mean > 0 else math.nan
        higher = crn.aasr_mean > o.aasr_mean
        cheaper = crn.seconds_per_batch_mean < o.seconds_per_batch_mean
        status = "holds" if higher and cheaper else "partly" if higher or cheaper else "does not hold"
        paper_txt = ""
        if ds and other in paper and "PGD-1+CRN10" in paper:
            pc, po = paper["PGD-1+CRN10"], paper[other]
            paper_txt = (f"AASR {pc['AASR'].text} vs {po['AASR'].text}, {po['time'].value / pc['time'].value:.0f}x "
                         f"faster ({ds}).")
        passes = int(inp.summary[inp.summary.row == crn.row].crn_passes_per_image.iloc[0])
        out.append(Verdict(
            f"{crn.row} beats {other} at a fraction of its cost", status,
            f"AASR {fmt_pct(crn.aasr_mean, crn.aasr_std)} vs {fmt_pct(o.aasr_mean, o.aasr_std)} "
            f"({'higher' if higher else 'not higher'}); attack time {fmt_seconds(crn.seconds_per_batch_mean)} vs "
            f"{fmt_seconds(o.seconds_per_batch_mean)} s a batch ({faster:.1f}x faster). The CRN's own cost "
            f"({passes} passes an image) is paid during training, over the last rounds.", paper_txt))
    return out


def _build(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["row"])
    ds = dataset(inp.task, "crn")
    paper = _paper(inp.task)
    by = {r.row: r for r in agg.itertuples()}
    rows = []
    for label, r in by.items():
        p, d, sub = paper.get(label, {}), r._asdict(), inp.summary[inp.summary.row == label]
        rows.append({
            "attack": label, "ACC": cell(d, "clean_acc"), "ACC (paper)": paper_text(p.get("ACC")),
            "AASR": cell(d, "aasr"), "AASR (paper)": paper_text(p.get("AASR")),
            "ASR benign": cell(d, "asr_avg_benign"), "ASR self": cell(d, "asr_self"),
            "s/batch": cell(d, "seconds_per_batch", fmt_seconds), "s/batch (paper, GPU)": paper_text(p.get("time")),
            "passes/image": str(int(sub.fb_passes_per_image.iloc[0])),
            "CRN passes/image (training)": str(int(sub.crn_passes_per_image.iloc[0])),
        })
    eps, alpha = float(inp.summary.eps.iloc[0]), float(inp.summary.alpha.iloc[0])
    table = Table(f"CRN Table I: clean accuracy, AASR and attack time (eps {eps:g}, alpha {alpha:g})",
                  pd.DataFrame(rows),
                  ("ACC: the clients' clean accuracy on the attack sets; AASR: ASR averaged over every (attacker, "
                   "target); s/batch: wall seconds to craft one attacker's batch on this CPU (the paper: a GPU).",
                   *no_paper_note(inp.task, "crn", "CRN Table I")))
    plot = agg.assign(series="ours")
    if ds:
        plot["paper"] = [paper.get(r, {}).get("AASR") for r in plot.row]
        plot["paper"] = [p.value if p is not None else math.nan for p in plot["paper"]]
    fig = figs.bars(plot, category="row", series="series", metric="aasr", ylabel="AASR",
                    title=f"CRN Table I: AASR — {run_label(inp)}", paper="paper" if ds else None)
    return Built((table,), (("table1", fig, "AASR of each attack (hatched: the paper's)"),),
                 tuple(_verdicts(by, inp, paper, ds)), data=agg)


CRN_TABLE1 = Reproduction("crn-table1", "CRN Table I: PGD-1+CRN10 vs PGD-20 vs PGD-40", "crn", _trainings,
                          _measurements, _build)
