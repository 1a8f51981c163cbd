"""A plain verdict per claim of the papers, with the numbers behind it, decided by one rule (design §11).

The rule (:data:`RULES`, printed under every reproduction's verdicts):

* A claim is checked at every point the reproduction measured (every step, eps, attack, ...). A point compares two
  arms on its **matched seeds**: the seeds where every run of both arms learned (and both numbers are defined). The
  seeds left out are named, with the arm, the run and the reason. Both numbers of a seed come from runs of that seed,
  which share its data split and initial weights, so the test is **paired**: over the n matched seeds, the mean
  paired difference ours - other, its 95% confidence interval (Student t, n - 1 degrees of freedom) and the
  two-sided paired t-test p-value (:mod:`fedsafe.verdicts.paired_tests`, equal to ``scipy.stats.ttest_rel``).
* The p-values of a claim's points (those with at least :data:`MIN_SEEDS` matched seeds) are corrected together
  by Holm's step-down method; a point **resolves** when its Holm-adjusted p < 0.05, and then agrees with the claim or
  contradicts it by the sign of its mean difference; otherwise it is unresolved.
* The claim **holds** if every defined point agrees, **does not hold** if every defined point contradicts it,
  is **inconclusive** if no defined point is resolved, **partly holds** when the resolved points all agree and the
  others are unresolved, **partly does not hold** when they all contradict it and the others are unresolved,
  **mixed** when the resolved points go both ways, and **undetermined** when no point is defined.
* With fewer than 3 matched seeds behind some point no test means much: such a point is taken on its mean
  difference alone, and the claim's status is prefixed **"indicative: "** (e.g. "indicative: holds").
* **Smallest resolvable difference** (quoted for every unresolved point and claim): with the point's n matched seeds
  and the standard deviation sd of their paired differences, t_{1 - 0.05/(2m), n-1} x sd / sqrt(n), m = the number
  of tested points of the claim (beyond it, that point resolves at the strictest Holm level 0.05 / m whatever the
  others gave). The claim's figure: the smallest over its unresolved points whose differences vary, if any.
* A *trend* claim ("ASR rises with eps") is checked per curve over the seeds matched across the whole curve (every
  run of every x learned): the end points are compared by the same paired t-test (the value at the largest x
  against the one at the smallest, per seed), Holm-corrected over the curves. A resolved curve agrees when its end
  points go the claimed way and the rank correlation of its means does too (Spearman's rho, ties averaged,
  |rho| >= 0.5 with the claimed sign), contradicts when both go the other way, and is mixed when only one does.
  The evidence also counts the seeds on which a curve moves the claimed way at every step (descriptive only).
* A run did not learn when its global model, or a client model that is attacked, is within 2 points of the majority
  class rate (its summary's ``learned`` is false, with the reason). It never enters a verdict on attacks: its seed
  leaves every comparison with its arm. A clean-accuracy verdict counts it (named), as not learning is the very cost
  such a claim asks about, and still pairs the seeds.

>>> one_seed = compare("DP lowers ASR", [Comparison("eps 0.01", [0.02], [0.05])], expect="lower", names=("DP", "no"))
>>> one_seed.status
'indicative: holds'
>>> close = Comparison("eps 0.01", [0.10, 0.14, 0.05], [0.12, 0.11, 0.13])
>>> compare("DP lowers ASR", [close], expect="lower", names=("DP", "no DP")).status
'inconclusive'
>>> far = Comparison("eps 0.01", [0.10, 0.11, 0.12], [0.30, 0.32, 0.31])
>>> compare("DP lowers ASR", [far], expect="lower", names=("DP", "no DP")).status
'holds'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from .evidence import MIN_SEEDS, Point, fmt_pct, left_out_text, seed_note, seeds_text, smallest_text, stats_text
from .paired_tests import ALPHA, PairedTest, holm, paired_test

__all__ = ["Comparison", "Curve", "MIN_SEEDS", "RULES", "STATUSES", "Verdict", "accuracy_verdict", "compare",
           "decide", "fmt_pct", "seeds_text", "spearman", "trend"]

_DECIDED = ("holds", "does not hold", "partly holds", "partly does not hold", "mixed")
STATUSES: tuple[str, ...] = (*_DECIDED, "inconclusive", "undetermined", *(f"indicative: {s}" for s in _DECIDED))
RULES = (
    "Verdict rules (design §11): each point compares two arms on their matched seeds (every run of both arms learned; "
    "the seeds left out are named with the reason) by a paired t-test: mean paired difference, its 95% confidence "
    "interval (Student t, n-1 degrees of freedom), two-sided p-value, n. The points of a claim are Holm-corrected "
    f"together; a point resolves at Holm-adjusted p < {ALPHA:g}. A claim holds if every defined point agrees, does "
    "not hold if every one contradicts it, is inconclusive if none resolves, partly holds (or partly does not hold) "
    "when the resolved points all agree (or all contradict) and the others do not resolve, mixed when they go both "
    f"ways. With fewer than {MIN_SEEDS} matched seeds a point is taken on its mean difference alone and the claim is "
    "marked 'indicative'. Smallest resolvable difference (for an unresolved point): t(1 - 0.05/(2m), n-1) x sd / "
    "sqrt(n), sd of the paired differences, m the claim's tested points (the strictest Holm level). A trend (e.g. "
    "'ASR rises with eps') is tested per curve on the seeds matched along it: the end points by the paired t-test "
    "(Holm over the curves), the direction also by the Spearman rank correlation of the means (|rho| >= 0.5). A run "
    "did not learn when its global model or an attacked client model is within 2 points of the majority-class rate: "
    "it enters no verdict on attacks; a clean-accuracy verdict counts it (named) and still pairs seeds.")

Outcome = Literal["agrees", "contradicts", "unresolved", "mixed", "undefined"]


@dataclass(frozen=True)
class Verdict:
    """One claim, its status (one of :data:`STATUSES`), the numbers in words (``evidence``), what the paper
    reports, and the same numbers per point (``points``: :class:`~.evidence.Point`; ``n``: the fewest matched seeds
    behind a defined point, 0 when none is defined)."""

    claim: str
    status: str
    evidence: str
    paper: str = ""
    n: int = 0
    points: tuple[Point, ...] = ()

    def to_dict(self) -> dict:
        """What ``verdicts.json`` holds: the fields, each point a dict (NaN as null)."""
        return {"claim": self.claim, "status": self.status, "evidence": self.evidence, "paper": self.paper,
                "n": self.n, "points": [p.to_dict() for p in self.points]}

    def markdown(self) -> str:
        paper = f" Paper: {self.paper}" if self.paper else ""
        return f"- {self.claim}: **{self.status}**. {self.evidence}{paper}"


@dataclass(frozen=True)
class Comparison:
    """At one point (``where``): the number the claim is about (``ours``) and the one it is compared with
    (``other``), one pair per matched seed (``seeds``, default 0, 1, ...), and the seeds ``left_out`` with why."""

    where: str
    ours: Sequence[float]
    other: Sequence[float]
    seeds: Sequence[int] = ()
    left_out: Sequence[str] = ()
    test: PairedTest = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ours, other = tuple(float(v) for v in self.ours), tuple(float(v) for v in self.other)
        if len(ours) != len(other):
            raise ValueError(f"comparison at {self.where}: {len(ours)} seeds of ours against {len(other)}")
        seeds = tuple(int(s) for s in self.seeds) or tuple(range(len(ours)))
        if len(seeds) != len(ours):
            raise ValueError(f"comparison at {self.where}: {len(seeds)} seeds for {len(ours)} pairs")
        if any(math.isnan(v) for v in (*ours, *other)):
            raise ValueError(f"comparison at {self.where}: a matched seed has an undefined (NaN) number")
        for name, value in (("ours", ours), ("other", other), ("seeds", seeds), ("left_out", tuple(self.left_out))):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "test", paired_test(ours, other))

    @classmethod
    def matched(cls, where: str, ours: Mapping[int, float], other: Mapping[int, float],
                left_out: Sequence[str] = ()) -> Comparison:
        """The pairs of the seeds both ``ours`` and ``other`` define (seed -> number). A seed of both whose number is
        NaN is left out and named here; ``left_out`` names the others left out (the caller knows why: a run that did
        not learn, a seed one arm did not run)."""
        both = sorted(s for s in set(ours) & set(other) if not (math.isnan(ours[s]) or math.isnan(other[s])))
        extra = [f"seed {s}: a number is undefined" for s in sorted(set(ours) & set(other)) if s not in both]
        return cls(where, [ours[s] for s in both], [other[s] for s in both], both, (*left_out, *extra))

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def defined(self) -> bool:
        return self.n > 0

    @property
    def difference(self) -> float:
        return self.test.mean

    @property
    def mean_ours(self) -> float:
        return math.fsum(self.ours) / self.n if self.n else math.nan

    @property
    def mean_other(self) -> float:
        return math.fsum(self.other) / self.n if self.n else math.nan


def decide(outcomes: Sequence[Outcome], seeds: int) -> str:
    """The status of a claim from its points' outcomes and the fewest matched seeds behind a defined point (module
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


@dataclass(frozen=True)
class _Tested:
    """The points of a claim, tested together: Holm-adjusted p-values and the strictest Holm level."""

    adjusted: list[float]
    tested: int

    @property
    def level(self) -> float:
        return ALPHA / max(self.tested, 1)


def _holm(tests: Sequence[PairedTest]) -> _Tested:
    ps = [t.p if t.n >= MIN_SEEDS else math.nan for t in tests]
    return _Tested(holm(ps), sum(not math.isnan(p) for p in ps))


def _outcome(t: PairedTest, adjusted: float, ok: bool, *, tie_agrees: bool = False) -> Outcome:
    """agrees / contradicts / unresolved / undefined for one tested point (``ok``: its mean goes the claimed way)."""
    if t.n == 0:
        return "undefined"
    if t.n >= MIN_SEEDS and not adjusted < ALPHA:
        return "unresolved"
    return "agrees" if ok or (tie_agrees and t.mean == 0) else "contradicts"


def compare(claim: str, points: Sequence[Comparison], *, expect: Literal["lower", "higher"],
            names: tuple[str, str], paper: str = "", fmt: Callable[[float, float], str] = fmt_pct) -> Verdict:
    """Is ``ours`` ``expect`` than ``other`` at every point, on matched seeds? (module docstring)."""
    if expect not in ("lower", "higher"):
        raise ValueError(f'expect must be "lower" or "higher", got {expect!r}')
    tested = _holm([p.test for p in points])
    outcomes = [_outcome(p.test, adj, p.difference < 0 if expect == "lower" else p.difference > 0)
                for p, adj in zip(points, tested.adjusted, strict=True)]
    defined = [p for p in points if p.defined]
    seeds = min((p.n for p in defined), default=0)
    parts = []
    for p, adj in zip(points, tested.adjusted, strict=True):
        if not p.defined:
            parts.append(f"{p.where}: no matched seed")
            continue
        parts.append(f"{p.where}: {names[0]} {fmt(p.mean_ours, math.nan)} vs {names[1]} "
                     f"{fmt(p.mean_other, math.nan)}, {stats_text(p.test, adj, p.seeds, fmt, tested.level)}")
    ok = sum(o == "agrees" for o in outcomes)
    head = f"{expect} at {ok} of {len(defined)} points" + (
        f" ({len(points) - len(defined)} undefined)" if len(defined) < len(points) else "")
    unresolved = sum(o == "unresolved" for o in outcomes)
    if unresolved:
        head += f", {unresolved} unresolved"
    head += f" ({seed_note(seeds)})" if defined else " (no point has a matched seed)"
    evidence = (f"{head}: " + "; ".join(parts) + "."
                + smallest_text([(p.where, p.test) for p in points], outcomes, tested.level, fmt)
                + left_out_text([line for p in points for line in p.left_out]))
    nums = tuple(Point.of(p.where, p.test, adj, p.seeds, o, tested.level, ours=p.mean_ours, other=p.mean_other)
                 for p, adj, o in zip(points, tested.adjusted, outcomes, strict=True))
    return Verdict(claim=claim, status=decide(outcomes, seeds), evidence=evidence, paper=paper, n=seeds, points=nums)


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


@dataclass(frozen=True)
class Curve:
    """A curve of a trend claim: its x values and, at each, the number of every seed whose run learned
    (seed -> value), and the seeds ``left_out`` (with why) that the caller already knows of."""

    xs: Sequence[float]
    values: Sequence[Mapping[int, float]]
    left_out: Sequence[str] = ()

    def __post_init__(self) -> None:
        if len(self.xs) != len(self.values):
            raise ValueError(f"curve: {len(self.xs)} x values against {len(self.values)} sets of numbers")

    def matched(self) -> tuple[list[int], np.ndarray, np.ndarray, list[str]]:
        """(matched seeds, xs sorted, values [x, seed] over them, the seeds left out and why)."""
        order = np.argsort(np.asarray(self.xs, dtype=float), kind="stable")
        xs = np.asarray(self.xs, dtype=float)[order]
        vals = [self.values[i] for i in order]
        every = set().union(*vals) if vals else set()
        seeds = sorted(s for s in every if all(s in v and not math.isnan(v[s]) for v in vals))
        gone = [f"seed {s}: no number (did not learn, or undefined) at x = "
                + ", ".join(f"{x:g}" for x, v in zip(xs, vals, strict=True) if s not in v or math.isnan(v[s]))
                for s in sorted(every - set(seeds))]
        y = np.array([[v[s] for s in seeds] for v in vals], dtype=float).reshape(len(vals), len(seeds))
        return seeds, xs, y, [*self.left_out, *gone]


def trend(claim: str, curves: Mapping[str, Curve], *, expect: Literal["increasing", "decreasing"], paper: str = "",
          xname: str = "x", fmt: Callable[[float, float], str] = fmt_pct) -> Verdict:
    """Does every curve go the ``expect`` way, on the seeds matched along it? (module docstring)."""
    if expect not in ("increasing", "decreasing"):
        raise ValueError(f'expect must be "increasing" or "decreasing", got {expect!r}')
    sign = 1.0 if expect == "increasing" else -1.0
    data = {name: c.matched() for name, c in curves.items()}
    tests = {name: (paired_test(list(y[-1]), list(y[0])) if len(xs) >= 2 else paired_test([], []))
             for name, (_, xs, y, _) in data.items()}
    tested = _holm(list(tests.values()))
    outcomes: list[Outcome] = []
    parts, lefts, ns, pts, nums = [], [], [], [], []
    for (name, (seeds, xs, y, gone)), adj in zip(data.items(), tested.adjusted, strict=True):
        t = tests[name]
        lefts += gone
        if t.n == 0:
            outcomes.append("undefined")
            pts.append((name, t))
            nums.append(Point.of(name, t, adj, seeds, "undefined", tested.level, ours=math.nan, other=math.nan))
            parts.append(f"{name}: no matched seed")
            continue
        means = y.mean(axis=1)
        rho = spearman(xs, means)
        ends = sign * t.mean > 0
        ranked = not math.isnan(rho) and sign * rho >= 0.5
        if t.n >= MIN_SEEDS and not adj < ALPHA:
            outcome: Outcome = "unresolved"
        else:
            outcome = "agrees" if ends and ranked else "contradicts" if not ends and not ranked else "mixed"
        outcomes.append(outcome)
        pts.append((name, t))
        ns.append(t.n)
        nums.append(Point.of(name, t, adj, seeds, outcome, tested.level, ours=means[-1], other=means[0], rho=rho))
        rho_s = "n/a" if math.isnan(rho) else f"{rho:+.2f}"
        steady = int(np.all(sign * np.diff(y, axis=0) > 0, axis=0).sum()) if len(xs) >= 2 else 0
        parts.append(f"{name}: {fmt(means[0], math.nan)} at {xname} {xs[0]:g} -> {fmt(means[-1], math.nan)} at "
                     f"{xs[-1]:g}, Spearman rho {rho_s}, {expect} at every step on {steady} of {t.n} seeds, "
                     f"end points: {stats_text(t, adj, seeds, fmt, tested.level)}")
    seeds_min = min(ns, default=0)
    agree = sum(o == "agrees" for o in outcomes)
    note = seed_note(seeds_min, "curves")
    evidence = (f"{expect} in {agree} of {len(ns)} curves ({note}): " + "; ".join(parts) + "."
                + smallest_text(pts, outcomes, tested.level, fmt) + left_out_text(lefts))
    return Verdict(claim=claim, status=decide(outcomes, seeds_min), evidence=evidence, paper=paper, n=seeds_min,
                   points=tuple(nums))


def accuracy_verdict(claim: str, point: Comparison, names: tuple[str, str], *, counted: Sequence[str] = (),
                     ref: str = "") -> Verdict:
    """Does ``names[0]`` keep at least ``names[1]``'s clean accuracy? ``point``: the clean accuracy of both on
    their paired seeds, runs that did not learn included (named by ``counted``): failing to learn is exactly the
    cost a clean-accuracy claim asks about, so such runs count here while they enter no verdict on attacks.
    ``ref``: a sentence quoting a reference arm (e.g. no defense). Decided by the rule of the module docstring on
    the one point (a tie on the means counts as agreeing)."""
    if not point.defined:
        return Verdict(claim, "undetermined", f"no seed with runs of both {names[0]} and {names[1]}."
                       + left_out_text(point.left_out))
    t = point.test
    tested = _holm([t])
    outcome = _outcome(t, tested.adjusted[0], t.mean > 0, tie_agrees=True)
    counted_txt = (" Counted although they did not learn (a clean-accuracy claim measures that cost): "
                   + "; ".join(dict.fromkeys(counted)) + ".") if counted else ""
    stats = stats_text(t, tested.adjusted[0], point.seeds, fmt_pct, tested.level)
    num = Point.of("clean accuracy", t, tested.adjusted[0], point.seeds, outcome, tested.level,
                   ours=point.mean_ours, other=point.mean_other)
    return Verdict(claim, decide([outcome], t.n),
                   f"clean accuracy {names[0]} {fmt_pct(point.mean_ours)} vs {names[1]} {fmt_pct(point.mean_other)}, "
                   f"{stats} ({seed_note(t.n, 'one point')}){ref}."
                   + smallest_text([("clean accuracy", t)], [outcome], tested.level, fmt_pct)
                   + counted_txt + left_out_text(point.left_out), n=t.n, points=(num,))
