"""The evidence of a verdict (design §11), in words and in numbers: the text each point's statistics read as in the
tables, and :class:`Point`, the same statistics as ``verdicts.json`` holds them (one record a point), so that a
reader can recompute or filter a verdict without parsing its text.

>>> from fedsafe.verdicts.paired_tests import paired_test
>>> t = paired_test([0.30, 0.25, 0.40], [0.20, 0.20, 0.25])
>>> stats_text(t, 0.0742, [0, 1, 2], fmt_pct, 0.05)
'difference +10.0% (95% CI -2.4% to +22.4%), p 0.074, Holm p 0.074, smallest resolvable ±12.4%, n 3 (seeds 0-2)'
>>> p = Point.of("step 0.005", t, 0.0742, [0, 1, 2], "unresolved", 0.05, ours=0.32, other=0.22)
>>> p.n, p.seeds, round(p.smallest_resolvable, 3)
(3, (0, 1, 2), 0.124)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from ..jsonsafe import json_safe
from .paired_tests import ALPHA, PairedTest, resolvable

__all__ = ["MIN_SEEDS", "Point", "fmt_pct", "left_out_text", "seed_note", "seeds_text", "smallest_text",
           "stats_text"]

MIN_SEEDS = 3
"""The fewest matched seeds behind a point for a verdict to be more than indicative (design §11)."""

Fmt = Callable[[float, float], str]


@dataclass(frozen=True)
class Point:
    """One point of a claim in numbers (a curve's end points for a trend claim). ``ours`` and ``other``: the two
    arms' means over the matched ``seeds`` (for a trend: the mean at the largest x and at the smallest);
    ``difference``, ``ci_low``, ``ci_high``, ``p``: the paired t-test (:mod:`.paired_tests`); ``p_holm``: adjusted
    over the claim's points (NaN below :data:`MIN_SEEDS` seeds, where the point is taken on its mean alone);
    ``outcome``: agrees / contradicts / unresolved / mixed / undefined; ``smallest_resolvable``: the smallest
    |difference| these seeds resolve at the claim's strictest Holm level (NaN below 2 seeds); ``rho``: a trend curve's
    Spearman correlation of its means (NaN elsewhere). NaN is written as null."""

    where: str
    outcome: str
    n: int
    seeds: tuple[int, ...]
    ours: float
    other: float
    difference: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float
    smallest_resolvable: float
    rho: float = math.nan

    @classmethod
    def of(cls, where: str, t: PairedTest, adjusted: float, seeds: Sequence[int], outcome: str, level: float, *,
           ours: float, other: float, rho: float = math.nan) -> Point:
        return cls(where, outcome, t.n, tuple(int(s) for s in seeds), float(ours), float(other), t.mean, t.low,
                   t.high, t.p, adjusted, resolvable(t.sd, t.n, level), rho)

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


def seeds_text(seeds: Sequence[int]) -> str:
    """[0, 1, 2, 4] -> "0-2, 4" (runs of three or more consecutive seeds as a range)."""
    runs: list[list[int]] = []
    for s in sorted(seeds):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) >= 3 else ", ".join(map(str, r)) for r in runs)


def fmt_pct(x: float, std: float = math.nan) -> str:
    """0.1234 -> "12.3%"; with a positive std: "12.3% ± 1.2"."""
    if x is None or math.isnan(x):
        return "n/a"
    return f"{100 * x:.1f}%" + (f" ± {100 * std:.1f}" if std is not None and not math.isnan(std) and std > 0 else "")


def _signed(fmt: Fmt, x: float) -> str:
    return ("+" if x > 0 else "") + fmt(x, math.nan)


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def left_out_text(lines: Sequence[str]) -> str:
    lines = list(dict.fromkeys(lines))
    return (" Seeds left out (design §11): " + "; ".join(lines) + ".") if lines else ""


def stats_text(t: PairedTest, adjusted: float, seeds: Sequence[int], fmt: Fmt, level: float) -> str:
    """"difference -2.1% (95% CI -5.0% to +0.8%), p 0.12, Holm p 0.24, n 3 (seeds 0-2)"."""
    text = f"difference {_signed(fmt, t.mean)}"
    if t.n >= 2:
        text += f" (95% CI {_signed(fmt, t.low)} to {_signed(fmt, t.high)}), p {_p(t.p)}"
    if t.n >= MIN_SEEDS:
        text += f", Holm p {_p(adjusted)}"
        if not adjusted < ALPHA:
            text += f", smallest resolvable {_res(fmt, resolvable(t.sd, t.n, level))}"
    return text + f", n {t.n} (seed{'s' if t.n > 1 else ''} {seeds_text(seeds)})"


def seed_note(seeds: int, over: str = "points") -> str:
    return (f"fewer than {MIN_SEEDS} matched seeds at some point: indicative, on the mean differences" if
            seeds < MIN_SEEDS else f"at least {seeds} matched seeds a point, paired t-test, Holm over the {over}")


def smallest_text(points: Sequence[tuple[str, PairedTest]], outcomes: Sequence[str], level: float, fmt: Fmt) -> str:
    cands = [(resolvable(t.sd, t.n, level), w) for (w, t), o in zip(points, outcomes, strict=True)
             if o == "unresolved"]
    cands = [(r, w) for r, w in cands if r > 0] or [(r, w) for r, w in cands if r == 0]  # sd 0 says nothing
    if not cands:
        return ""
    r, w = min(cands)
    return (f" Smallest difference these seeds could resolve: {_res(fmt, r)} ({w}; t at the strictest Holm "
            f"level {level:.3g} x sd / sqrt(n)).")


def _res(fmt: Fmt, r: float) -> str:  # two shares differ by at most 100 points
    return f"±{fmt(r, math.nan)}" + (" (over 100 points: out of reach)" if fmt is fmt_pct and r > 1 else "")
