"""The verdicts' statistics (design §11) against scipy: the paired t-test's p-value and 95% CI, Student's t quantiles,
and Holm's adjusted p-values on a known example and against a reference written from the definition."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from fedsafe.verdicts.paired_tests import holm, paired_test, resolvable, t_quantile, t_two_sided


def _cases():
    rng = np.random.default_rng(7)
    for n in (2, 3, 4, 5, 8, 30):
        for shift in (0.0, 0.05, 0.3, 2.0):
            a = rng.uniform(0.0, 1.0, size=n)
            yield a, a - shift + rng.normal(0.0, 0.1, size=n)


@pytest.mark.parametrize("ours, other", list(_cases()))
def test_p_values_and_confidence_intervals_equal_scipy(ours, other):
    r = paired_test(list(ours), list(other))
    ref = sps.ttest_rel(ours, other)
    assert r.n == len(ours)
    assert abs(r.p - ref.pvalue) <= 1e-12
    d = ours - other
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert r.mean == pytest.approx(d.mean(), abs=1e-15)
    assert r.low == pytest.approx(d.mean() - half, abs=1e-12) and r.high == pytest.approx(d.mean() + half, abs=1e-12)
    assert r.low <= r.mean <= r.high


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 200])
def test_t_distribution_equals_scipy(df):
    for q in (0.6, 0.9, 0.975, 0.995, 1 - 0.05 / 20, 1 - 1e-6):
        assert t_quantile(q, df) == pytest.approx(sps.t.ppf(q, df), rel=1e-12)
        assert t_quantile(1 - q, df) == pytest.approx(-t_quantile(q, df), rel=1e-15)
    for t in (0.0, 0.01, 0.7, 2.0, 4.3, 12.0, 150.0):
        assert abs(t_two_sided(t, df) - 2 * sps.t.sf(t, df)) <= 1e-14 + 1e-12 * 2 * sps.t.sf(t, df)
    assert t_two_sided(math.inf, df) == 0.0 and math.isnan(t_two_sided(math.nan, df))


def test_degenerate_differences():
    one = paired_test([0.4], [0.3])
    assert one.n == 1 and one.mean == pytest.approx(0.1) and math.isnan(one.p) and math.isnan(one.low)
    assert paired_test([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]).p == 0.0  # the same gain on every seed
    assert paired_test([0.5, 0.6], [0.5, 0.6]).p == 1.0  # no difference at all
    assert paired_test([], []).n == 0
    with pytest.raises(ValueError, match="one pair per seed"):
        paired_test([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        t_quantile(1.0, 3)


def test_resolvable_is_the_half_width_at_the_given_level():
    assert resolvable(0.1, 3, 0.05) == pytest.approx(sps.t.ppf(0.975, 2) * 0.1 / math.sqrt(3), rel=1e-12)
    assert resolvable(0.1, 5, 0.0125) == pytest.approx(sps.t.ppf(1 - 0.00625, 4) * 0.1 / math.sqrt(5), rel=1e-12)
    assert math.isnan(resolvable(0.1, 1, 0.05))
    # a difference just above it resolves at that level, just below it does not
    d = resolvable(0.1, 4, 0.05)
    base = np.array([0.1, -0.1, 0.05, -0.05])
    spread = base / base.std(ddof=1) * 0.1  # sd exactly 0.1
    assert paired_test(list(spread + d * 1.001), [0.0] * 4).p < 0.05 < paired_test(list(spread + d * 0.999),
                                                                                    [0.0] * 4).p


def test_holm_on_a_known_example():
    # m = 4; sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06,
    # 1 x 0.04 = 0.04 -> raised to the running maximum 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    # NaN does not count in m; values cap at 1
    out = holm([0.2, math.nan, 0.6])
    assert out[0] == pytest.approx(0.4) and math.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def _holm_reference(p):
    """Holm's rejection rule, from its definition: reject H_(1..k) for the largest k with p_(j) <= alpha/(m-j+1)
    for every j <= k; the adjusted p-value of H_i is the smallest alpha at which it is rejected."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = min(1.0, max((m - j) * p[order[j]] for j in range(rank + 1)))
    return out


def test_holm_equals_its_definition():
    rng = np.random.default_rng(3)
    for m in (1, 2, 3, 5, 9):
        for _ in range(20):
            p = list(rng.uniform(0, 0.2, size=m))
            assert holm(p) == pytest.approx(_holm_reference(p), abs=1e-15)
            for alpha in (0.01, 0.05):  # rejection at alpha from the step-down rule itself
                order = sorted(range(m), key=lambda i: p[i])
                k = next((j for j in range(m) if p[order[j]] > alpha / (m - j)), m)
                rejected = {order[j] for j in range(k)}
                assert {i for i, q in enumerate(holm(p)) if q <= alpha} == rejected
    assert list(itertools.accumulate(sorted(holm([0.01, 0.02, 0.03])), max)) == sorted(holm([0.01, 0.02, 0.03]))
