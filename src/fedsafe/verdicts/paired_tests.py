"""The statistics behind every verdict (design §11): the paired t-test over matched seeds, its 95% confidence interval,
Student's t distribution (written here: scipy is not a runtime dependency) and Holm's step-down correction.

* Student's t distribution with ``df`` degrees of freedom: the two-sided tail P(|T| > t) = I_x(df/2, 1/2) with
  x = df / (df + t^2), I the regularized incomplete beta function, evaluated by its continued fraction (modified
  Lentz, Numerical Recipes 6.4) on the side where it converges fast; the quantile by bisection on that tail (to the
  last bit of a double).
* :func:`paired_test`: the per-seed differences d_s = ours_s - other_s, their mean, the sample standard deviation
  (ddof 1), t = mean / (sd / sqrt(n)), the two-sided p-value with n - 1 degrees of freedom (``scipy.stats.ttest_rel``)
  and the 95% CI mean ± t_{0.975, n-1} sd / sqrt(n). Zero spread: p = 0 for a non-zero mean (t infinite), 1 for a zero
  mean (nothing to tell apart); fewer than 2 seeds: p and CI undefined (NaN).
* :func:`holm`: Holm (1979) adjusted p-values, p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)) over the m defined
  p-values in increasing order; a point is rejected at level alpha when p~ < alpha.

>>> round(t_two_sided(2.0, 4), 6), round(t_quantile(0.975, 2), 6)
(0.116117, 4.302653)
>>> [round(p, 3) for p in holm([0.01, 0.04, 0.03, 0.005])]
[0.03, 0.06, 0.06, 0.02]
>>> r = paired_test([0.30, 0.25, 0.40], [0.20, 0.20, 0.25])
>>> r.n, round(r.mean, 3), round(r.p, 4)
(3, 0.1, 0.0742)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ALPHA", "PairedTest", "holm", "paired_test", "resolvable", "t_quantile", "t_two_sided"]

ALPHA = 0.05
"""The level a point resolves at, after Holm's correction over the points of its claim (design §11)."""

_EPS = 1e-16
_TINY = 1e-300


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence at a={a}, b={b}, x={x}")


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta function I_x(a, b), 0 <= x <= 1, with y = 1 - x given exactly."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"incomplete beta: x must lie in [0, 1], got {x}")
    if x == 0.0 or y == 0.0:
        return 0.0 if x == 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, y) / b


def t_two_sided(t: float, df: float) -> float:
    """P(|T| > |t|) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    t2 = t * t
    # x = df / (df + t^2) and 1 - x = t^2 / (df + t^2), each computed directly (no cancellation)
    return _betainc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with ``df`` degrees of freedom (0 < q < 1)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must lie in (0, 1), got {q}")
    if q == 0.5:
        return 0.0
    tail = 2.0 * min(q, 1.0 - q)  # two-sided tail of the positive quantile
    lo, hi = 0.0, 1.0
    while t_two_sided(hi, df) > tail:
        lo, hi = hi, 2.0 * hi
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if t_two_sided(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    t = 0.5 * (lo + hi)
    return t if q > 0.5 else -t


@dataclass(frozen=True)
class PairedTest:
    """The paired t-test of ``n`` per-seed differences: their ``mean``, standard deviation ``sd`` (ddof 1), the
    two-sided ``p`` (n - 1 degrees of freedom) and the 95% confidence interval (``low``, ``high``)."""

    n: int
    mean: float
    sd: float
    p: float
    low: float
    high: float


def paired_test(ours: Sequence[float], other: Sequence[float], *, level: float = 0.95) -> PairedTest:
    """The paired t-test of ``ours`` against ``other`` (module docstring); equal lengths, one value per seed."""
    if len(ours) != len(other):
        raise ValueError(f"paired test: {len(ours)} values against {len(other)}; one pair per seed is needed")
    d = [float(a) - float(b) for a, b in zip(ours, other, strict=True)]
    n = len(d)
    if n == 0:
        return PairedTest(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(d) / n
    if n == 1:
        return PairedTest(1, mean, math.nan, math.nan, math.nan, math.nan)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    p = (0.0 if mean != 0 else 1.0) if se == 0 else t_two_sided(mean / se, n - 1)
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    return PairedTest(n, mean, sd, p, mean - half, mean + half)


def resolvable(sd: float, n: int, level: float) -> float:
    """The smallest |mean paired difference| that ``n`` seeds with spread ``sd`` resolve at the two-sided
    ``level``: t_{1 - level/2, n-1} sd / sqrt(n) (NaN for fewer than 2 seeds)."""
    if n < 2 or math.isnan(sd):
        return math.nan
    return t_quantile(1.0 - level / 2.0, n - 1) * sd / math.sqrt(n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the input's order (NaN stays NaN and does not count in m)."""
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
