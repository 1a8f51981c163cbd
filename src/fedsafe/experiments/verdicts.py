"""A plain verdict per claim of the papers, with the numbers behind it, decided by one rule (SPEC section 11).

The rule (:data:`RULES`, printed under every reproduction's verdicts):

* A claim is checked at every point the reproduction measured (every step, eps, attack, ...). At a point,
  ``difference`` = mean over seeds of ours - mean over seeds of the other number. Both numbers of a seed come from
  runs of that seed, which share its data split and initial weights, so the ``spread`` is that of the paired
  per-seed differences (their standard deviation over seeds, ddof 1); where the two numbers do not come from the
  same seeds, it is the larger of the two standard deviations over seeds. The point is **resolved** when it rests
  on at least :data:`MIN_SEEDS` (3) seeds and ``|difference| > spread``; a resolved point agrees with the claim or
  contradicts it, an unresolved one is inconclusive.
* The claim **holds** if every defined point agrees, **does not hold** if every defined point contradicts it,
  is **inconclusive** if no defined point is resolved, **partly holds** when the resolved points all agree and the
  others are unresolved, **partly does not hold** when they all contradict it and the others are unresolved,
  **mixed** when the resolved points go both ways, and **undetermined** when no point is defined.
* With fewer than 3 seeds behind some point the spread means nothing: the same statuses are taken on the means
  alone and prefixed **"indicative: "** (e.g. "indicative: holds").
* A *trend* claim ("ASR rises with eps") is checked per curve: a curve agrees when its end points go the claimed way
  and its rank correlation does too (Spearman's rho, ties averaged, |rho| >= 0.5 with the claimed sign), and is
  resolved when the end points differ by more than the larger of their two stds (>= 3 seeds); it contradicts when
  both go the other way, and is mixed when only one does.
* A run that did not learn (its summary's ``learned`` is false: global accuracy within 2 points of the majority-class
  rate) never enters a verdict on attacks: its rows are left out before the numbers are averaged, and the verdict
  names them. A clean-accuracy verdict counts it (named): not learning is the very cost such a claim asks about.

>>> one_seed = compare("DP lowers ASR", [Comparison("eps 0.01", 0.02, 0.05)], expect="lower", names=("DP", "no DP"))
>>> one_seed.status
'indicative: holds'
>>> covered = Comparison("eps 0.01", 0.10, 0.12, ours_std=0.03, other_std=0.01, seeds=3)
>>> compare("DP lowers ASR", [covered], expect="lower", names=("DP", "no DP")).status
'inconclusive'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["Comparison", "MIN_SEEDS", "RULES", "STATUSES", "Verdict", "accuracy_verdict", "compare", "decide",
           "fmt_pct", "spearman", "trend"]

MIN_SEEDS = 3
"""The fewest seeds behind a number for a verdict to be more than indicative (SPEC 11)."""
_DECIDED = ("holds", "does not hold", "partly holds", "partly does not hold", "mixed")
STATUSES: tuple[str, ...] = (*_DECIDED, "inconclusive", "undetermined", *(f"indicative: {s}" for s in _DECIDED))
RULES = (
    "Verdict rules (SPEC 11): at each point, difference = our mean - the other mean over seeds; spread = the "
    "standard deviation over seeds (ddof 1) of the paired per-seed differences (the two numbers of a seed come from "
    "runs that share its split and initial weights; unpaired: the larger of the two standard deviations). A point "
    f"is resolved when it rests on at least {MIN_SEEDS} seeds and |difference| > spread. A claim holds if every "
    "defined point agrees, does not hold if every defined point contradicts it, is inconclusive if no point is "
    "resolved, partly holds (or partly does not hold) when the resolved points all agree (or all contradict) and the "
    "others are unresolved, mixed when they go both ways; with fewer than "
    f"{MIN_SEEDS} seeds the status is taken on the means alone and "
    "marked 'indicative'. A trend (e.g. 'ASR rises with eps') agrees on a curve when its end points and its "
    "Spearman rank correlation (|rho| >= 0.5) go the claimed way, resolved when the end points differ by more than "
    "their spread. Runs that did not learn (global accuracy within 2 points of the majority-class rate) are left "
    "out of every verdict on attacks, which names them; a clean-accuracy verdict counts them (named), as not "
    "learning is the cost it asks about.")

Outcome = Literal["agrees", "contradicts", "unresolved", "mixed", "undefined"]


@dataclass(frozen=True)
class Verdict:
    """One claim, its status (one of :data:`STATUSES`), the numbers (``evidence``) and what the paper reports."""

    claim: str
    status: str
    evidence: str
    paper: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def markdown(self) -> str:
        paper = f" Paper: {self.paper}" if self.paper else ""
        return f"- {self.claim}: **{self.status}**. {self.evidence}{paper}"


def _zero_nan(x: float | None) -> float:
    return 0.0 if x is None or math.isnan(x) else float(x)


@dataclass(frozen=True)
class Comparison:
    """At one point (``where``): the mean over seeds of the number the claim is about (``ours``), the one it is
    compared with (``other``), their standard deviations over seeds and the fewest seeds behind either."""

    where: str
    ours: float
    other: float
    ours_std: float = math.nan
    other_std: float = math.nan
    seeds: int = 1
    diff_std: float = math.nan  # std over seeds of the paired differences ours_s - other_s (NaN: not paired)

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.ours) or math.isnan(self.other))

    @property
    def paired(self) -> bool:
        return not math.isnan(self.diff_std)

    @property
    def spread(self) -> float:
        """The standard deviation of the paired per-seed differences, else the larger of the two standard
        deviations over seeds (0 where undefined)."""
        if self.paired:
            return float(self.diff_std)
        return max(_zero_nan(self.ours_std), _zero_nan(self.other_std))

    @property
    def resolved(self) -> bool:
        """At least :data:`MIN_SEEDS` seeds and a difference larger than the spread."""
        return self.defined and self.seeds >= MIN_SEEDS and abs(self.ours - self.other) > self.spread

    def outcome(self, expect: Literal["lower", "higher"]) -> Outcome:
        """agrees / contradicts (on the means alone with fewer than 3 seeds), unresolved, or undefined."""
        if not self.defined:
            return "undefined"
        if self.seeds >= MIN_SEEDS and not self.resolved:
            return "unresolved"
        ok = self.ours < self.other if expect == "lower" else self.ours > self.other
        return "agrees" if ok else "contradicts"


def decide(outcomes: Sequence[Outcome], seeds: int) -> str:
    """The status of a claim from its points' outcomes and the fewest seeds behind a defined point (module
    docstring)."""
    defined = [o for o in outcomes if o != "undefined"]
    if not defined:
        return "undetermined"
    if all(o == "agrees" for o in defined):
        status = "holds"
    elif all(o == "contradicts" for o in defined):
        status = "does not hold"
    elif all(o == "unresolved" for o in defined):
        status = "inconclusive"
    elif "mixed" in defined or ("agrees" in defined and "contradicts" in defined):
        status = "mixed"
    else:  # some resolved points, all one way; the others unresolved
        status = "partly holds" if "agrees" in defined else "partly does not hold"
    return f"indicative: {status}" if seeds < MIN_SEEDS else status


def fmt_pct(x: float, std: float = math.nan) -> str:
    """0.1234 -> "12.3%"; with a positive std: "12.3% ± 1.2"."""
    if x is None or math.isnan(x):
        return "n/a"
    return f"{100 * x:.1f}%" + (f" ± {100 * std:.1f}" if std is not None and not math.isnan(std) and std > 0 else "")


def _left_out(excluded: Sequence[str]) -> str:
    return (" Left out (did not learn, SPEC 11): " + "; ".join(excluded) + ".") if excluded else ""


def _seed_text(seeds: int) -> str:
    return (f"means of {seeds} seed(s), fewer than {MIN_SEEDS}: indicative only" if seeds < MIN_SEEDS else
            f"{seeds} seeds, resolved where |difference| > spread")


def compare(claim: str, points: Sequence[Comparison], *, expect: Literal["lower", "higher"],
            names: tuple[str, str], paper: str = "", fmt: Callable[[float, float], str] = fmt_pct,
            excluded: Sequence[str] = ()) -> Verdict:
    """Is ``ours`` ``expect`` than ``other`` at every point? (module docstring). ``excluded``: the runs left out
    because they did not learn, named in the evidence."""
    if expect not in ("lower", "higher"):
        raise ValueError(f'expect must be "lower" or "higher", got {expect!r}')
    outcomes = [p.outcome(expect) for p in points]
    defined = [p for p in points if p.defined]
    seeds = min((p.seeds for p in defined), default=0)
    parts = []
    for p, o in zip(points, outcomes, strict=True):
        tail = ""
        kind = "paired spread" if p.paired else "spread"
        if o == "unresolved":
            tail = f" (difference {fmt(p.ours - p.other, math.nan)} within the {kind} {fmt(p.spread, math.nan)})"
        elif p.resolved:
            tail = f" (difference {fmt(p.ours - p.other, math.nan)} beyond the {kind} {fmt(p.spread, math.nan)})"
        parts.append(f"{p.where}: {names[0]} {fmt(p.ours, p.ours_std)} vs {names[1]} {fmt(p.other, p.other_std)}"
                     f"{tail}")
    ok = sum(o == "agrees" for o in outcomes)
    head = f"{expect} at {ok} of {len(defined)} points" + (
        f" ({len(points) - len(defined)} undefined)" if len(defined) < len(points) else "")
    unresolved = sum(o == "unresolved" for o in outcomes)
    if unresolved:
        head += f", {unresolved} within the spread"
    head += f" ({_seed_text(seeds)})" if defined else " (no point has both numbers)"
    evidence = f"{head}: " + "; ".join(parts) + "." + _left_out(excluded)
    return Verdict(claim=claim, status=decide(outcomes, seeds), evidence=evidence, paper=paper)


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


Curve = tuple[Sequence[float], Sequence[float]] | tuple[Sequence[float], Sequence[float], Sequence[float], int]
"""(xs, ys) of means, or (xs, ys, stds over seeds, fewest seeds behind a point)."""


def _curve_outcome(xs: Sequence[float], ys: Sequence[float], stds: Sequence[float] | None, seeds: int,
                   sign: float) -> tuple[Outcome, str, np.ndarray, np.ndarray, float]:
    order = np.argsort(np.asarray(xs, dtype=float))
    xv, yv = np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order]
    sv = np.zeros_like(yv) if stds is None else np.nan_to_num(np.asarray(stds, dtype=float)[order])
    keep = ~np.isnan(yv)
    xv, yv, sv = xv[keep], yv[keep], sv[keep]
    if yv.size < 2:
        return "undefined", "", xv, yv, math.nan
    rho = spearman(xv, yv)
    ends = sign * (yv[-1] - yv[0]) > 0
    ranked = not math.isnan(rho) and sign * rho >= 0.5
    spread = max(sv[0], sv[-1])
    note = ""
    if seeds >= MIN_SEEDS and abs(yv[-1] - yv[0]) <= spread:
        return "unresolved", f" (end points within the spread {100 * spread:.1f} points)", xv, yv, rho
    outcome: Outcome = "agrees" if ends and ranked else "contradicts" if not ends and not ranked else "mixed"
    return outcome, note, xv, yv, rho


def trend(claim: str, curves: Mapping[str, Curve], *, expect: Literal["increasing", "decreasing"], paper: str = "",
          xname: str = "x", fmt: Callable[[float, float], str] = fmt_pct, excluded: Sequence[str] = ()) -> Verdict:
    """Does every curve (name -> (xs, ys[, stds, seeds])) go the ``expect`` way? (module docstring)."""
    if expect not in ("increasing", "decreasing"):
        raise ValueError(f'expect must be "increasing" or "decreasing", got {expect!r}')
    sign = 1.0 if expect == "increasing" else -1.0
    outcomes: list[Outcome] = []
    parts, seeds_all = [], []
    for name, curve in curves.items():
        xs, ys = curve[0], curve[1]
        stds, seeds = (curve[2], int(curve[3])) if len(curve) == 4 else (None, 1)  # type: ignore[misc]
        outcome, note, xv, yv, rho = _curve_outcome(xs, ys, stds, seeds, sign)
        outcomes.append(outcome)
        if outcome == "undefined":
            parts.append(f"{name}: undefined")
            continue
        seeds_all.append(seeds)
        rho_s = "n/a" if math.isnan(rho) else f"{rho:+.2f}"
        parts.append(f"{name}: {fmt(yv[0], math.nan)} at {xname} {xv[0]:g} -> {fmt(yv[-1], math.nan)} at "
                     f"{xv[-1]:g}, Spearman rho {rho_s}{note}")
    seeds = min(seeds_all, default=0)
    agree = sum(o == "agrees" for o in outcomes)
    evidence = (f"{expect} in {agree} of {len(seeds_all)} curves ({_seed_text(seeds)}): " + "; ".join(parts) + "."
                + _left_out(excluded))
    return Verdict(claim=claim, status=decide(outcomes, seeds), evidence=evidence, paper=paper)


def _std(s: pd.Series) -> float:
    return float(s.std(ddof=1)) if len(s) > 1 else math.nan


def accuracy_verdict(claim: str, accs: Mapping[str, pd.DataFrame], a: str, b: str, ref: str | None,
                     not_learned: Sequence[str] = ()) -> Verdict:
    """Does ``a`` keep at least ``b``'s clean accuracy? ``accs``: name -> per-seed frame with ``clean_acc`` of
    *every* run, those that did not learn included (named by ``not_learned``): failing to learn is exactly the cost
    a clean-accuracy claim asks about, so such runs count here while they enter no verdict on attacks. ``ref``
    (e.g. no defense) is quoted beside them when present. Decided by the rule of the module docstring on the one
    point "clean accuracy" (a tie counts as agreeing)."""
    counted = (" Counted although they did not learn (a clean-accuracy claim measures that cost): "
               + "; ".join(not_learned) + ".") if not_learned else ""
    if a not in accs or b not in accs or accs[a].empty or accs[b].empty:
        missing = [n for n in (a, b) if n not in accs or accs[n].empty]
        return Verdict(claim, "undetermined", f"no run of {' and '.join(missing)} to compare.")
    x, y = accs[a].clean_acc, accs[b].clean_acc
    point = Comparison("clean accuracy", float(x.mean()), float(y.mean()), _std(x), _std(y), min(len(x), len(y)))
    outcome = point.outcome("higher")
    if outcome == "contradicts" and point.ours == point.other:
        outcome = "agrees"
    ref_txt = ""
    if ref and ref in accs and not accs[ref].empty:
        r = accs[ref].clean_acc.mean()
        ref_txt = (f"; against no defense ({fmt_pct(r)}): {a} {100 * (x.mean() - r):+.1f} points, "
                   f"{b} {100 * (y.mean() - r):+.1f} points")
    within = f", within the spread {100 * point.spread:.1f}" if outcome == "unresolved" else ""
    return Verdict(claim, decide([outcome], point.seeds),
                   f"clean accuracy {a} {fmt_pct(x.mean(), _std(x))} vs {b} {fmt_pct(y.mean(), _std(y))} "
                   f"({100 * (x.mean() - y.mean()):+.1f} points{within}; {_seed_text(point.seeds)}){ref_txt}."
                   + counted)
