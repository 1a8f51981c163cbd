"""A verdict's numbers per point (``Verdict.points``, what ``verdicts.json`` holds beside the evidence text): they
equal an independent computation (scipy's paired t-test and Holm written here), agree with the text, carry the
matched seeds and the outcome, and survive JSON with NaN as null."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from fedsafe.verdicts.claims import Comparison, Curve, accuracy_verdict, compare, trend


def _holm_ref(ps):
    order = np.argsort(ps)
    m, out, running = len(ps), [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def test_compare_records_each_point_as_scipy_computes_it():
    rng = np.random.default_rng(3)
    comps, raw = [], []
    for k, shift in enumerate((0.0, -0.1, -0.4)):
        other = rng.uniform(0.3, 0.9, 5)
        ours = other + shift + rng.normal(0, 0.05, 5)
        raw.append((ours, other))
        comps.append(Comparison(f"step {k}", ours, other, seeds=[0, 1, 2, 3, 5], left_out=["seed 4: did not learn"]))
    v = compare("DN lowers ASR", comps, expect="lower", names=("DN", "AT"))
    ps = [sps.ttest_rel(a, b).pvalue for a, b in raw]
    holm = _holm_ref(ps)
    assert v.n == 5 and len(v.points) == 3
    for pt, (a, b), p, ph in zip(v.points, raw, ps, holm, strict=True):
        d = a - b
        half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
        assert pt.seeds == (0, 1, 2, 3, 5) and pt.n == 5
        assert abs(pt.p - p) <= 1e-12 and pt.p_holm == pytest.approx(ph, abs=1e-12)
        assert pt.difference == pytest.approx(d.mean(), abs=1e-15)
        assert pt.ci_low == pytest.approx(d.mean() - half, abs=1e-12)
        assert pt.ci_high == pytest.approx(d.mean() + half, abs=1e-12)
        assert pt.ours == pytest.approx(a.mean()) and pt.other == pytest.approx(b.mean())
        resolved = ph < 0.05
        assert pt.outcome == ("unresolved" if not resolved else "agrees" if d.mean() < 0 else "contradicts")
        # the text states the same p-value, to its two significant digits
        assert f"{pt.where}: DN" in v.evidence and f"p {pt.p:.2g}" in v.evidence
    assert [pt.outcome for pt in v.points][-1] == "agrees"  # a shift of 8 spreads resolves


def test_points_survive_json_with_nan_as_null_and_an_undefined_point_says_so():
    one = Comparison("eps 0.01", [0.02], [0.05], seeds=[2])
    none = Comparison("eps 0.05", [], [])
    v = compare("DP lowers ASR", [one, none], expect="lower", names=("DP", "no"))
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert d["status"] == "indicative: holds" and d["n"] == 1
    first, second = d["points"]
    assert first["n"] == 1 and first["seeds"] == [2] and first["difference"] == pytest.approx(-0.03)
    assert first["p"] is None and first["ci_low"] is None and first["p_holm"] is None  # one seed: no test
    assert first["outcome"] == "agrees"
    assert second["n"] == 0 and second["outcome"] == "undefined" and second["seeds"] == []


def test_a_trend_records_each_curve_by_its_end_points_and_rank_correlation():
    values = [{0: 0.1, 1: 0.2, 2: 0.15, 3: 0.1}, {0: 0.3, 1: 0.4, 2: 0.35, 3: 0.5}, {0: 0.6, 1: 0.7, 2: 0.9}]
    v = trend("ASR rises with eps", {"PGD": Curve([0.01, 0.03, 0.05], values)}, expect="increasing")
    (pt,) = v.points
    lo, hi = np.array([0.1, 0.2, 0.15]), np.array([0.6, 0.7, 0.9])  # seed 3 has no value at 0.05
    assert pt.seeds == (0, 1, 2) and v.n == 3
    assert abs(pt.p - sps.ttest_rel(hi, lo).pvalue) <= 1e-12
    assert pt.ours == pytest.approx(hi.mean()) and pt.other == pytest.approx(lo.mean())
    assert pt.rho == pytest.approx(1.0)
    assert pt.outcome in ("agrees", "unresolved") and (pt.outcome == "agrees") == (pt.p_holm < 0.05)


def test_an_accuracy_verdict_records_its_one_point():
    v = accuracy_verdict("DN costs no clean accuracy", Comparison("clean", [0.8, 0.7, 0.75], [0.82, 0.8, 0.79]),
                         ("DN", "AT"))
    (pt,) = v.points
    assert pt.where == "clean accuracy" and pt.n == 3 == v.n
    assert abs(pt.p - sps.ttest_rel([0.8, 0.7, 0.75], [0.82, 0.8, 0.79]).pvalue) <= 1e-12
    assert pt.p_holm == pytest.approx(pt.p)  # one point: Holm changes nothing
