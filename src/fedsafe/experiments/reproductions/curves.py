"""What the CRN paper's two figures share: a table of every curve point, and the comparison of each CRN-started
curve with its vanilla curve (same attack) at every x."""

from __future__ import annotations

import pandas as pd

from ..verdicts import Comparison
from .format import cell, compare_rows

__all__ = ["crn_comparisons", "curve_table", "curves_of"]


def curve_table(agg: pd.DataFrame, x: str, xname: str) -> pd.DataFrame:
    """One row per (x, curve): the ASR on benign clients and on the adversary, AASR and AETR."""
    rows = []
    for r in agg.itertuples():
        d = r._asdict()
        rows.append({xname: f"{getattr(r, x):g}", "attack": r.curve, "ASR benign": cell(d, "asr_avg_benign"),
                     "ASR adversary (self)": cell(d, "asr_self"), "AASR": cell(d, "aasr"), "AETR": cell(d, "aetr")})
    return pd.DataFrame(rows)


def curves_of(agg: pd.DataFrame, x: str, metric: str) -> dict:
    """curve -> (xs, means, stds, fewest seeds) of ``metric``, for :func:`~fedsafe.experiments.verdicts.trend`."""
    return {c: (list(g[x]), list(g[f"{metric}_mean"]), list(g[f"{metric}_std"]), int(g.seeds.min()))
            for c, g in agg.groupby("curve", sort=False)}


def crn_comparisons(agg: pd.DataFrame, x: str, xname: str) -> list[Comparison]:
    """CRN-started curve vs its vanilla curve at each x, ASR on benign clients."""
    out = []
    vanilla = {c for c in agg.curve if "+CRN" not in c}
    idx = agg.set_index(["curve", x])
    for c in dict.fromkeys(agg.curve):
        if c in vanilla:
            continue
        base = c.split("+")[0]
        if base not in vanilla:
            continue
        for xv in sorted(agg[agg.curve == c][x]):
            a, b = idx.loc[(c, xv)], idx.loc[(base, xv)]
            out.append(compare_rows(f"{c} at {xname} {xv:g}", a, b, "asr_avg_benign"))
    return out
