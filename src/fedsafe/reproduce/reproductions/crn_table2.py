"""CRN paper, Table II (Section IV.E): the average error transfer rate (AETR) of FGSM and PGD (40 steps), each
vanilla (FGSM from zero, PGD from a uniform random start) and started from CRN5 / CRN10, on the CRN run.

The paper's numbers are shown beside FGSM and 40-step PGD only (its setting). PGD-40 is also run at Madry et al.'s
step 2.5 eps / K (``"PGD, alpha 2.5eps/K"``; the papers' alpha 0.001 moves it at most 0.04 inside eps 0.05), so that
"CRN raises the transfer" is checked against a vanilla PGD that can reach the budget too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ...attacks.spec import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_WINDOWS, AttackSpec, Start
from ...report import figures as figs
from ...training.delta import ConfigDelta
from ...verdicts.claims import compare
from ..paper_numbers import crn_table_2
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .crn_table1 import MADRY, madry_alpha
from .format import (
    arms,
    attack_means,
    cell,
    comparison,
    no_paper_note,
    not_learned_note,
    paper_dataset,
    paper_text,
    run_label,
)
from .setups import CRN_RUN

__all__ = ["CRN_TABLE2", "PAPER_PGD_STEPS", "numbers", "paper_numbers", "specs"]

PAPER_PGD_STEPS = 40
"""The paper's PGD in Table II: 40 iterations (eps and alpha not stated: the Table I ones here)."""


def specs(*, windows: Sequence[int] = DEFAULT_WINDOWS, eps: float = DEFAULT_EPS, alpha: float = DEFAULT_ALPHA,
          steps: int = PAPER_PGD_STEPS, seed: int = 0, madry: bool = True) -> dict[tuple[str, str], AttackSpec]:
    """(attack "FGSM" / "PGD" / "PGD, alpha 2.5eps/K" (with ``madry``), start "vanilla" / "crnR") -> spec; CRN
    starts at the attack's eps."""
    out: dict[tuple[str, str], AttackSpec] = {}
    attacks = [("FGSM", "zero", alpha), ("PGD", "random", alpha)]
    attacks += [(f"PGD, {MADRY}", "random", madry_alpha(eps, steps))] if madry else []
    for name, vanilla, a in attacks:
        kind = "fgsm" if name == "FGSM" else "pgd"
        out[(name, "vanilla")] = AttackSpec(attack=kind, eps=eps, alpha=a, steps=steps, start=vanilla, seed=seed)
        for w in windows:
            out[(name, f"crn{w}")] = AttackSpec(attack=kind, eps=eps, alpha=a, steps=steps,
                                                start=Start.crn(w, eps=eps), seed=seed)
    return out


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement("crn", spec, tags(attack_name=name, start_name=start))
            for (name, start), spec in specs(seed=seed).items()]


def _trainings(base) -> dict[str, ConfigDelta]:
    return {"crn": CRN_RUN}


def _paper_cell(paper: dict, name: str, start: str, steps: int):
    """The paper's AETR of (attack, start), or None where our setting is not its (PGD of another length)."""
    if name != "FGSM" and steps != PAPER_PGD_STEPS:
        return None
    return paper.get((name, "Vanilla" if start == "vanilla" else start.upper()))


def _attack(name: str, steps: int) -> str:
    """"FGSM", "PGD-40", "PGD-40, alpha 2.5eps/K"."""
    return name if name == "FGSM" else f"PGD-{steps}" + (f", {MADRY}" if name.endswith(MADRY) else "")


def paper_numbers(ds: str | None) -> dict:
    """The paper's numbers for its dataset ``ds`` (empty for None: a task the paper did not use)."""
    return crn_table_2(ds) if ds else {}


def numbers(summary: pd.DataFrame, paper: dict) -> pd.DataFrame:
    """One row per (attack, start) (means over the summary's seeds) beside the paper's AETR (NaN: not its setting)."""
    rows = []
    for (name, start), g in summary.groupby(["attack_name", "start_name"], sort=False):
        steps = int(g.steps.iloc[0])
        p = _paper_cell(paper, name, start, steps)
        rows.append({"attack": _attack(name, steps), "start": start, "aetr": g.aetr.mean(),
                     "aetr_paper": p.value if p is not None else math.nan, "asr_avg_benign": g.asr_avg_benign.mean(),
                     "asr_self": g.asr_self.mean(), "aasr": g.aasr.mean()})
    return pd.DataFrame(rows)


def _build(inp: BuildInput) -> Built:
    agg = attack_means(inp.summary, ["attack_name", "start_name"])
    ds = paper_dataset(inp, "crn")
    paper = paper_numbers(ds)
    steps = {r.attack_name: int(r.steps) for r in inp.summary.itertuples()}
    rows = []
    for r in agg.itertuples():
        d = r._asdict()
        rows.append({"attack": _attack(r.attack_name, steps[r.attack_name]), "start": r.start_name,
                     "AETR": cell(d, "aetr"),
                     "AETR (paper)": paper_text(_paper_cell(paper, r.attack_name, r.start_name, steps[r.attack_name])),
                     "ASR benign": cell(d, "asr_avg_benign"), "ASR self": cell(d, "asr_self"),
                     "AASR": cell(d, "aasr")})
    pgd = inp.summary[inp.summary.attack_name == "PGD"]
    madry = inp.summary[inp.summary.attack_name.str.endswith(MADRY)]
    eps = float(inp.summary.eps.iloc[0])
    pgd_text = (f"PGD: {int(pgd.steps.iloc[0])} steps of {float(pgd.alpha.iloc[0]):g}" if len(pgd) else "PGD: none")
    if len(madry):
        pgd_text += (f", and {int(madry.steps.iloc[0])} steps of {float(madry.alpha.iloc[0]):g} = 2.5 eps / K (Madry "
                     "et al.: they can cross the eps-ball; no paper number beside them)")
    table = Table(f"CRN Table II: AETR (average error transfer rate), eps {eps:g}", pd.DataFrame(rows),
                  ("AETR: among the samples that fooled the attacker's own model and that a benign client classified "
                   "correctly, the share that also fool it. Vanilla: FGSM from zero, PGD from a uniform random start; "
                   f"{pgd_text} (the paper: {PAPER_PGD_STEPS} iterations, eps and alpha not stated).",
                   *not_learned_note(inp.summary), *no_paper_note(inp, "crn", "CRN Table II")))
    idx = arms(inp.summary, ["attack_name", "start_name"])
    aetr, benign = [], []
    for name in dict.fromkeys(inp.summary.attack_name):
        if (name, "vanilla") not in idx:
            continue
        for start in [s for s in dict.fromkeys(inp.summary.start_name) if s != "vanilla" and (name, s) in idx]:
            where = f"{name} {start.upper()}"
            aetr.append(comparison(where, idx, (name, start), (name, "vanilla"), "aetr"))
            benign.append(comparison(where, idx, (name, start), (name, "vanilla"), "asr_avg_benign"))
    ptxt = ""
    if ds:
        ptxt = "AETR " + ", ".join(f"{a} {s}: {p.text}" for (a, s), p in paper.items()) + f" ({ds})."
    verdicts = (
        compare("CRN raises the transfer of errors to benign clients (AETR)", aetr, expect="higher",
                names=("CRN", "vanilla"), paper=ptxt),
        compare("CRN raises the ASR on benign clients", benign, expect="higher", names=("CRN", "vanilla")),
    )
    plot = agg.assign(series=list(agg.attack_name),
                      start_label=[s.upper() if s != "vanilla" else "Vanilla" for s in agg.start_name])
    if ds:
        plot["paper"] = [p.value if (p := _paper_cell(paper, a, s, steps[a])) is not None else math.nan
                         for a, s in zip(plot.series, plot.start_name, strict=True)]
    fig = figs.bars(plot, category="start_label", series="series", metric="aetr", ylabel="AETR",
                    title=f"CRN Table II: AETR — {run_label(inp)}", paper="paper" if ds else None)
    return Built((table,), (("table2", fig, "AETR per attack and start (hatched: the paper's)"),), verdicts, data=agg)


CRN_TABLE2 = Reproduction("crn-table2", "CRN Table II: error transfer rate (AETR)", "crn", _trainings, _measurements,
                          _build)
