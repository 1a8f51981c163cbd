"""What the CRN paper's two figures share: a table of every curve point, and the comparison of each CRN-started
curve with its vanilla curve (same attack) at every x."""

from __future__ import annotations

import pandas as pd

from ...verdicts.claims import Comparison, Curve
from .format import arms, cell, comparison, curve

__all__ = ["crn_comparisons", "curve_table", "curves_of"]


def curve_table(agg: pd.DataFrame, x: str, xname: str) -> pd.DataFrame:
    """One row per (x, curve): the ASR on benign clients and on the adversary, AASR and AETR."""
    rows = []
    for r in agg.itertuples():
        d = r._asdict()
        rows.append({xname: f"{getattr(r, x):g}", "attack": r.curve, "ASR benign": cell(d, "asr_avg_benign"),
                     "ASR adversary (self)": cell(d, "asr_self"), "AASR": cell(d, "aasr"), "AETR": cell(d, "aetr")})
    return pd.DataFrame(rows)


def curves_of(summary: pd.DataFrame, x: str, metric: str) -> dict[str, Curve]:
    """curve -> its :class:`~fedsafe.verdicts.claims.Curve` of ``metric`` (seed by seed, runs that learned),
    for :func:`~fedsafe.verdicts.claims.trend`."""
    idx = arms(summary, ["curve", x])
    out = {}
    for c in dict.fromkeys(summary.curve):
        xs = sorted({k[1] for k in idx if k[0] == c})
        out[c] = curve(idx, [(c, v) for v in xs], xs, metric)
    return out


def crn_comparisons(summary: pd.DataFrame, x: str, xname: str) -> list[Comparison]:
    """CRN-started curve vs its vanilla curve at each x, ASR on benign clients, on matched seeds."""
    out = []
    vanilla = {c for c in summary.curve if "+CRN" not in c}
    idx = arms(summary, ["curve", x])
    for c in dict.fromkeys(summary.curve):
        if c in vanilla:
            continue
        base = c.split("+")[0]
        if base not in vanilla:
            continue
        for xv in sorted({k[1] for k in idx if k[0] == c}):
            out.append(comparison(f"{c} at {xname} {xv:g}", idx, (c, xv), (base, xv), "asr_avg_benign"))
    return out
