"""Feasible and fully costed baselines (design §7): CRN Table I and Figure 2 put PGD-K at Madry et al.'s step
2.5 eps / K beside the papers' alpha, and Table I counts the gradient passes an image at attack time and in total
(CRN's R x j passes during training included), checked against counts made here from the specs."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fedsafe.attacks.spec import DEFAULT_EPS
from fedsafe.reproduce.costs import gradient_passes
from fedsafe.reproduce.reproductions import REPRODUCTIONS
from fedsafe.reproduce.reproductions.base import BuildInput, Options
from fedsafe.reproduce.reproductions.crn_table1 import specs

J = 5  # CRN steps a round (the local epochs of the cpu profile): R x j = 50 passes an image for CRN10


def _summary(name: str, seeds: int, aasr) -> pd.DataFrame:
    """Rows as the evaluation records them: the attack's passes = its steps, a CRN start's = R x j."""
    rows = []
    for seed in range(seeds):
        for m in REPRODUCTIONS[name].measurements(seed):
            s = m.spec
            rows.append({"training": m.training, **m.tag(), "label": s.label, "attack": s.attack, "eps": s.eps,
                         "alpha": s.alpha, "steps": s.steps, "start": str(s.start), "seed": seed,
                         "fb_passes_per_image": s.steps, "crn_passes_per_image": s.window * J if s.window else 0,
                         "start_source": "x", "learned": True, "majority_class_rate": 0.7, "clean_acc": 0.9,
                         "aasr": aasr(m, seed), "asr_avg_benign": aasr(m, seed), "asr_self": 0.9, "aetr": 0.5,
                         "seconds_per_batch": 0.02 * s.steps + 0.001 * seed, "crn_seconds": 0.5})
    return pd.DataFrame(rows)


def _build(name: str, seeds: int = 3, aasr=lambda m, seed: 0.5 + 0.01 * seed):
    rep = REPRODUCTIONS[name]
    return rep.build(BuildInput(reproduction=rep, task="meningioma", options=Options(seeds=seeds),
                                summary=_summary(name, seeds, aasr), runs={}))


def test_table1_has_pgd_k_at_madry_step_beside_the_papers_alpha():
    got = specs()
    for k in (20, 40):
        paper, madry = got[f"PGD-{k}"], got[f"PGD-{k}, alpha 2.5eps/K"]
        assert (paper.steps, paper.alpha) == (k, 0.001)  # the papers' step: K x 0.001 < eps, cannot cross the ball
        assert madry.steps == k and madry.alpha == pytest.approx(2.5 * 0.05 / k)  # 0.00625, 0.003125
        assert madry.steps * madry.alpha >= 2 * DEFAULT_EPS > paper.steps * paper.alpha
        assert madry.start.kind == paper.start.kind == "uniform" and madry.eps == paper.eps == DEFAULT_EPS
    assert specs(pgd_steps=(2,))["PGD-2, alpha 2.5eps/K"].alpha == DEFAULT_EPS  # a step never leaves the ball
    assert "PGD-20, alpha 2.5eps/K" not in specs(madry=False)


def test_table1_costs_passes_at_attack_time_and_in_total():
    built = _build("crn-table1")
    table = built.tables[0].frame.set_index("attack")
    data = built.data.set_index("row")
    for label, spec in specs().items():
        crn = spec.window * J if spec.window else 0
        final = bool(spec.window) and spec.start.final
        at_attack = spec.steps + (crn if final else 0)  # the control runs its CRN steps when it attacks
        total = spec.steps + crn  # CRN on the received copies: paid during training, counted in total
        assert (data.loc[label, "attack_passes_per_image"], data.loc[label, "total_passes_per_image"]) == (
            at_attack, total), label
        assert table.loc[label, "passes/image at attack"].split(" ")[0] == str(at_attack)
        assert table.loc[label, "passes/image in total"].split(" ")[0] == str(total)
    assert table.loc["PGD-1+CRN10, step eps/j", "passes/image in total"] == "51 (1 + 50 CRN in training)"
    assert table.loc["PGD-40, alpha 2.5eps/K", "AASR (paper)"] == "—"  # not the paper's setting
    assert table.loc["PGD-40", "AASR (paper)"] == "32.99%"
    assert "s/batch" in table.columns


def test_speedup_is_stated_on_time_and_on_total_passes():
    verdicts = {v.claim: v for v in _build("crn-table1").verdicts}
    time = verdicts["PGD-1+CRN crafts a batch faster than PGD-40 (attack time; the CRN steps are paid during "
                    "training)"]
    assert time.status == "holds"  # 0.02 s vs 0.80 s a batch
    passes = verdicts["PGD-1+CRN10 costs fewer gradient passes an image than PGD-40, counting CRN's R x j passes "
                      "during training"]
    assert passes.status == "does not hold"  # 1 + 50 > 40
    assert "51 vs PGD-40 40" in passes.evidence and "0.78x in passes in total" in passes.paper
    assert "40x at attack time" in passes.paper and "31x faster, attack time only" in passes.paper


def test_crn_is_judged_against_both_baselines():
    def aasr(m, seed):  # CRN 0.6; PGD-K at the paper's alpha 0.3, at Madry's step 0.8
        if m.spec.window:
            return 0.6 + 0.01 * seed
        return (0.3 if m.spec.alpha == 0.001 else 0.8) + 0.02 * seed * seed

    verdicts = {v.claim: v.status for v in _build("crn-table1", aasr=aasr).verdicts}
    for k in (20, 40):
        for step in ("eps/j", "0.001"):
            assert verdicts[f"PGD-1+CRN10 beats PGD-{k} in AASR with the CRN step at {step}"] == "holds"
            assert verdicts[f"PGD-1+CRN10 beats PGD-{k}, alpha 2.5eps/K in AASR with the CRN step at {step}"] == \
                "does not hold"


def test_fig2_sweeps_madry_step_too():
    measured = REPRODUCTIONS["crn-fig2"].measurements(0)
    madry = [m.spec for m in measured if math.isclose(m.spec.alpha, 2.5 * 0.05 / 20)]
    assert len(madry) == 3 and {s.label for s in madry} == {"PGD-20", "PGD-20+CRN5", "PGD-20+CRN10"}
    built = _build("crn-fig2")
    assert (built.tables[0].frame.alpha == "0.00625 (= 2.5eps/K)").sum() == 3
    crn_claim = built.verdicts[0]
    assert "at alpha 0.00625" in crn_claim.evidence


def test_table2_judges_crn_against_pgd_at_madry_step_too():
    from fedsafe.reproduce.reproductions.crn_table2 import specs as table2_specs

    got = table2_specs()
    for start in ("vanilla", "crn5", "crn10"):
        paper, madry = got[("PGD", start)], got[("PGD, alpha 2.5eps/K", start)]
        assert (paper.steps, paper.alpha) == (40, 0.001) and madry.steps == 40
        assert madry.alpha == pytest.approx(2.5 * 0.05 / 40) and madry.start == paper.start
    built = _build("crn-table2")
    rows = built.tables[0].frame
    assert (rows.attack == "PGD-40, alpha 2.5eps/K").sum() == 3
    assert set(rows[rows.attack == "PGD-40, alpha 2.5eps/K"]["AETR (paper)"]) == {"—"}
    assert "PGD, alpha 2.5eps/K CRN10" in built.verdicts[0].evidence  # a point of "CRN raises the AETR"


def test_gradient_passes():
    assert gradient_passes(40, 0, crn_at_attack_time=False) == (40, 40)
    assert gradient_passes(1, 50, crn_at_attack_time=False) == (1, 51)
    assert gradient_passes(1, 50, crn_at_attack_time=True) == (51, 51)
    with pytest.raises(ValueError, match="negative"):
        gradient_passes(-1, 0, crn_at_attack_time=False)
