"""The audit's confidence intervals against independent computations: Wilson's interval against scipy's binomial
test, DeLong's AUC interval against its components counted pair by pair (O(m n) loops) and against a bootstrap of
the images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from fedsafe.audit.text import asr_intervals, verdicts
from fedsafe.verdicts.intervals import auc_mean_ci, placement_values, wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (81, 100), (100, 100), (1, 300), (245, 300)])
def test_wilson_interval_equals_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_interval_of_a_fractional_count_by_hand():
    k, n, z = 40.5, 150.0, norm.ppf(0.975)  # a mean rate 0.27 over 150 images
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(11, 10)


def _components_by_pairs(pos, neg):
    def h(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0
    v10 = np.array([np.mean([h(p, q) for q in neg]) for p in pos])
    v01 = np.array([np.mean([h(p, q) for p in pos]) for q in neg])
    return v10, v01


def test_placement_values_equal_pairwise_counts_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 6, 23).astype(float), rng.integers(0, 5, 17).astype(float)  # many ties
    v10, v01 = placement_values(pos, neg)
    ref10, ref01 = _components_by_pairs(pos, neg)
    np.testing.assert_allclose(v10, ref10, atol=1e-12)
    np.testing.assert_allclose(v01, ref01, atol=1e-12)


def test_delong_interval_of_one_auc_by_hand():
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(0.4, 1, 60), rng.normal(0, 1, 45)
    v10, v01 = _components_by_pairs(pos, neg)
    auc = v10.mean()
    se = math.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)
    z = norm.ppf(0.975)
    got = auc_mean_ci([(pos, neg, "members", "nonmembers")])
    assert got == pytest.approx((auc, auc - z * se, auc + z * se), abs=1e-12)


def test_delong_interval_of_a_mean_with_shared_nonmembers_by_hand():
    rng = np.random.default_rng(2)
    neg = rng.normal(0, 1, 40)
    members = [rng.normal(0.5, 1, 30), rng.normal(0.2, 1, 25), rng.normal(0.8, 1, 35)]
    parts = [(m, neg + 0.1 * i, f"client-{i}", "global-test") for i, m in enumerate(members)]
    comps = [_components_by_pairs(m, n) for m, n, _, _ in parts]
    shared = sum(v01 for _, v01 in comps) / 3  # each non-member's mean component over the three AUCs
    var = sum((v10 / 3).var(ddof=1) / v10.size for v10, _ in comps) + shared.var(ddof=1) / neg.size
    mean = np.mean([v10.mean() for v10, _ in comps])
    z = norm.ppf(0.975)
    assert auc_mean_ci(parts) == pytest.approx((mean, mean - z * math.sqrt(var), mean + z * math.sqrt(var)),
                                               abs=1e-12)


def test_delong_variance_matches_a_bootstrap_over_images():
    rng = np.random.default_rng(3)
    neg = rng.normal(0, 1, 150)
    members = [rng.normal(0.6, 1, 120), rng.normal(0.3, 1, 100)]
    shifts = [0.0, 0.2]
    mean, lo, hi = auc_mean_ci([(m, neg + s, i, "n") for i, (m, s) in enumerate(zip(members, shifts, strict=True))])
    boot = np.random.default_rng(4)
    draws = []
    for _ in range(2000):
        j = boot.integers(0, neg.size, neg.size)
        aucs = []
        for m, s in zip(members, shifts, strict=True):
            i = boot.integers(0, m.size, m.size)
            v10, _ = placement_values(m[i], (neg + s)[j])
            aucs.append(v10.mean())
        draws.append(np.mean(aucs))
    se_boot, se_delong = np.std(draws, ddof=1), (hi - lo) / (2 * norm.ppf(0.975))
    assert se_delong == pytest.approx(se_boot, rel=0.1)
    assert lo < mean < hi


def test_auc_mean_ci_refuses_mismatched_groups():
    with pytest.raises(ValueError, match="group 'n'"):
        auc_mean_ci([([1.0, 2.0], [0.0, 1.0], "a", "n"), ([1.0], [0.0, 1.0, 2.0], "b", "n")])


def test_asr_intervals_count_each_attack_image_once():
    asr = [[0.9, 0.5, 0.7], [0.6, 0.8, np.nan], [0.2, 0.4, 1.0]]
    n_correct = [[90, 80, 70], [60, 50, 0], [40, 30, 20]]  # client 1 got none of attacker 1's images right
    # by hand: self n = 90 + 50 + 20; others n = mean(80, 70) + mean(60) + mean(40, 30)
    got = asr_intervals(asr, n_correct, asr_self=0.9, asr_avg_benign=0.5)
    assert (got["images_self"], got["images_benign"]) == (160, 75 + 60 + 35)
    ci = binomtest(144, 160).proportion_ci(confidence_level=0.95, method="wilson")
    assert got["asr_self_ci"] == pytest.approx([ci.low, ci.high], abs=1e-12)
    ci = binomtest(85, 170).proportion_ci(confidence_level=0.95, method="wilson")
    assert got["asr_avg_benign_ci"] == pytest.approx([ci.low, ci.high], abs=1e-12)


def test_verdicts_are_decided_on_the_intervals():
    def summary(asr_ci, auc_ci):
        roc = {"auc": 0.6, "auc_ci": auc_ci}
        return {"clients": 3, "learned": True, "masking": [],
                "attacks": [{"label": "PGD-20", "asr_avg_benign": 0.6, "asr_avg_benign_ci": asr_ci}],
                "membership": {"server": {"mean": {"lira": roc, "loss": roc}}, "insider": {"pairs": []}},
                "privacy": {"epsilon": {"nbafl": float("inf"), "unconditional": float("inf")}, "dp": {}}}

    v = verdicts(summary([0.55, 0.65], [0.52, 0.68]))
    assert v["insider attack"].startswith("fools most") and v["membership (server)"].startswith("inferred above")
    v = verdicts(summary([0.45, 0.75], [0.49, 0.71]))
    assert v["insider attack"].startswith("undecided") and v["membership (server)"].startswith("not told apart")
    assert v["differential privacy"] == "not DP under either sensitivity" and "membership (insider)" not in v
