"""A plain verdict per claim of the papers: holds / does not hold / partly, with the numbers behind it.

Rules (the same for every claim, so that a verdict is reproducible from its numbers):

* a *comparison* claim ("CRN raises the ASR on benign clients", "DP lowers ASR") is checked at every point the
  reproduction measured (every step, eps, attack, ...), on the mean over seeds: it **holds** if it is true at
  every point where both numbers are defined, **does not hold** if at none, **partly** otherwise, and is
  **undetermined** when no point is defined. With several seeds, the evidence says at which points the difference
  is within one standard deviation (a difference the seeds cannot resolve);
* a *trend* claim ("ASR rises with eps", "more adaptation samples lower ASR") holds when both the end points and
  the rank correlation (Spearman's rho, ties averaged) go the claimed way (|rho| >= 0.5), partly when only one of
  the two does, and does not hold otherwise.

>>> v = compare("DP lowers ASR", [Comparison("eps 0.01", 0.02, 0.05), Comparison("eps 0.03", 0.06, 0.04)],
...             expect="lower", names=("with DP", "without"))
>>> v.status
'partly'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["Comparison", "STATUSES", "Verdict", "accuracy_verdict", "compare", "fmt_pct", "spearman", "trend"]

Status = Literal["holds", "does not hold", "partly", "undetermined"]
STATUSES: tuple[str, ...] = ("holds", "does not hold", "partly", "undetermined")


@dataclass(frozen=True)
class Verdict:
    """One claim, its status, the numbers (``evidence``) and what the paper reports (``paper``)."""

    claim: str
    status: Status
    evidence: str
    paper: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def markdown(self) -> str:
        paper = f" Paper: {self.paper}" if self.paper else ""
        return f"- {self.claim}: **{self.status}**. {self.evidence}{paper}"


@dataclass(frozen=True)
class Comparison:
    """At one point (``where``): the value the claim is about (``ours``) and the one it is compared with."""

    where: str
    ours: float
    other: float
    ours_std: float = math.nan
    other_std: float = math.nan

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.ours) or math.isnan(self.other))

    def within_noise(self) -> bool:
        spread = max(_zero_nan(self.ours_std), _zero_nan(self.other_std))
        return spread > 0 and abs(self.ours - self.other) <= spread


def _zero_nan(x: float) -> float:
    return 0.0 if x is None or math.isnan(x) else float(x)


def fmt_pct(x: float, std: float = math.nan) -> str:
    """0.1234 -> "12.3%"; with a positive std: "12.3% ± 1.2"."""
    if x is None or math.isnan(x):
        return "n/a"
    return f"{100 * x:.1f}%" + (f" ± {100 * std:.1f}" if std is not None and not math.isnan(std) and std > 0 else "")


def _status(ok: int, defined: int) -> Status:
    if defined == 0:
        return "undetermined"
    return "holds" if ok == defined else "does not hold" if ok == 0 else "partly"


def compare(claim: str, points: Sequence[Comparison], *, expect: Literal["lower", "higher"],
            names: tuple[str, str], paper: str = "", fmt: Callable[[float, float], str] = fmt_pct) -> Verdict:
    """Is ``ours`` ``expect`` than ``other`` at every point? (module docstring)."""
    if expect not in ("lower", "higher"):
        raise ValueError(f'expect must be "lower" or "higher", got {expect!r}')
    defined = [p for p in points if p.defined]
    ok = [p for p in defined if (p.ours < p.other if expect == "lower" else p.ours > p.other)]
    parts = []
    for p in points:
        noise = " (within one std over seeds)" if p.defined and p.within_noise() else ""
        parts.append(f"{p.where}: {names[0]} {fmt(p.ours, p.ours_std)} vs {names[1]} {fmt(p.other, p.other_std)}"
                     f"{noise}")
    head = f"{expect} at {len(ok)} of {len(defined)} points" + (
        f" ({len(points) - len(defined)} undefined)" if len(defined) < len(points) else "")
    return Verdict(claim=claim, status=_status(len(ok), len(defined)), evidence=f"{head}: " + "; ".join(parts) + ".",
                   paper=paper)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 3 points or a constant input."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys = xs[keep], ys[keep]
    if xs.size < 3:
        return math.nan
    rx, ry = pd.Series(xs).rank().to_numpy(), pd.Series(ys).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def trend(claim: str, curves: dict[str, tuple[Sequence[float], Sequence[float]]], *,
          expect: Literal["increasing", "decreasing"], paper: str = "", xname: str = "x",
          fmt: Callable[[float, float], str] = fmt_pct) -> Verdict:
    """Does every curve (name -> (xs, ys)) go the ``expect`` way? (module docstring). A curve counts 1 if both
    its end points and its rank correlation agree, 1/2 if one of them does; the claim holds if every curve counts
    1, does not hold if every curve counts 0, else partly."""
    sign = 1.0 if expect == "increasing" else -1.0
    scores, parts = [], []
    for name, (xs, ys) in curves.items():
        order = np.argsort(np.asarray(xs, dtype=float))
        xv, yv = np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order]
        keep = ~np.isnan(yv)
        xv, yv = xv[keep], yv[keep]
        if yv.size < 2:
            parts.append(f"{name}: undefined")
            continue
        rho = spearman(xv, yv)
        ends = sign * (yv[-1] - yv[0]) > 0
        ranked = not math.isnan(rho) and sign * rho >= 0.5
        scores.append((int(ends) + int(ranked)) / 2)
        rho_s = "n/a" if math.isnan(rho) else f"{rho:+.2f}"
        parts.append(f"{name}: {fmt(yv[0], math.nan)} at {xname} {xv[0]:g} -> {fmt(yv[-1], math.nan)} at {xv[-1]:g}, "
                     f"Spearman rho {rho_s}")
    if not scores:
        status: Status = "undetermined"
    elif all(s == 1 for s in scores):
        status = "holds"
    elif all(s == 0 for s in scores):
        status = "does not hold"
    else:
        status = "partly"
    return Verdict(claim=claim, status=status, evidence=f"{expect} in {sum(s == 1 for s in scores)} of "
                   f"{len(scores)} curves: " + "; ".join(parts) + ".", paper=paper)


def _std(s: pd.Series) -> float:
    return float(s.std(ddof=1)) if len(s) > 1 else math.nan


def accuracy_verdict(claim: str, accs: dict[str, pd.DataFrame], a: str, b: str, ref: str | None) -> Verdict:
    """Does ``a`` keep at least ``b``'s clean accuracy? ``accs``: name -> per-seed frame with ``clean_acc``;
    ``ref`` (e.g. no defense) is quoted beside them when present."""
    x, y = accs[a].clean_acc, accs[b].clean_acc
    ok = x.mean() >= y.mean()
    ref_txt = ""
    if ref and ref in accs:
        r = accs[ref].clean_acc.mean()
        ref_txt = (f"; against no defense ({fmt_pct(r)}): {a} {100 * (x.mean() - r):+.1f} points, "
                   f"{b} {100 * (y.mean() - r):+.1f} points")
    return Verdict(claim, "holds" if ok else "does not hold",
                   f"clean accuracy {a} {fmt_pct(x.mean(), _std(x))} vs {b} {fmt_pct(y.mean(), _std(y))} "
                   f"({100 * (x.mean() - y.mean()):+.1f} points){ref_txt}.")
