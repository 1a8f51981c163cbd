"""The Fed-Safe tables' rules (design §4): a "DP" label only on an arm whose accounted epsilon is at most 10, the
epsilon <= 10 arm's noise really accounts to at most 10, f maps to the real image counts of the run, and the
reproduce command lists its reproductions."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsafe.attacks.spec import AttackSpec, Start
from fedsafe.build import prepare_data
from fedsafe.cli import app
from fedsafe.config import load_config
from fedsafe.privacy import account_run
from fedsafe.reproduce.costs import eval_passes
from fedsafe.reproduce.reproductions import GROUPS, REPRODUCTIONS
from fedsafe.reproduce.reproductions.base import BuildInput, Options
from fedsafe.reproduce.reproductions.fedsafe_fig3 import FRACTIONS
from fedsafe.reproduce.reproductions.fedsafe_table2 import (
    ARMS,
    DP_TARGET,
    NO_NOISE,
    PAPERS,
    SENSITIVITY,
    arm_label,
    dp_noise,
)
from fedsafe.reproduce.reproductions.format import METRICS, fraction_text
from fedsafe.reproduce.reproductions.setups import FS_SPLIT, at_fraction, with_delta
from fedsafe.runs import Run

TINY = ("task.synthetic_size=150", "task.image_size=16", "model.width=0.05", "splits.client_test_size=10")


def _input(name: str, *, seeds: int = 1, extra=lambda m, seed: {}, runs=None) -> BuildInput:
    rep = REPRODUCTIONS[name]
    rows = []
    for seed in range(seeds):
        for m in rep.measurements(seed):
            s = m.spec
            row = {"training": m.training, **m.tag(), "label": s.label, "attack": s.attack, "eps": s.eps,
                   "alpha": s.alpha, "steps": s.steps, "start": s.start, "seed": seed, "fb_passes_per_image": s.steps,
                   "crn_passes_per_image": 0, "start_source": "x", "learned": True, "majority_class_rate": 0.7,
                   **{k: 0.5 for k in METRICS}}
            row.update(extra(m, seed))
            rows.append(row)
    return BuildInput(reproduction=rep, task="meningioma", options=Options(seeds=seeds), summary=pd.DataFrame(rows),
                      runs=runs or {})


# -- DP only where epsilon <= 10 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("eps, dp", [(9.3, True), (10.0, True), (10.01, False), (4.6e6, False), (math.inf, False)])
def test_an_arm_is_labelled_dp_only_at_epsilon_at_most_10(eps, dp):
    label = arm_label({"nbafl": eps, "unconditional": eps * 1e4}, 1e-5)
    assert label.startswith("DP (") == dp
    if dp:
        assert "NbAFL sensitivity 2C/m" in label  # the assumption is named beside it
    else:
        assert label.startswith("not DP (epsilon")


def test_table2_labels_dp_only_the_arm_whose_accounted_epsilon_is_at_most_10():
    eps = {NO_NOISE: (math.inf, math.inf), PAPERS: (4.56e6, 1.5e11), DP_TARGET: (9.3, 5.6e4)}

    def extra(m, seed):
        arm = m.tag()["arm"].removesuffix(" [Dirichlet 0.5]")  # the sensitivity arms: the same numbers
        e = eps[arm]
        asr = {NO_NOISE: 0.6, PAPERS: 0.55, DP_TARGET: 0.3}[arm]
        return {"epsilon": e[0], "epsilon_unconditional": e[1], "asr_avg_benign": asr,
                "learned": arm != DP_TARGET}  # the epsilon <= 10 arm did not learn

    built = REPRODUCTIONS["fedsafe-table2"].build(_input("fedsafe-table2", seeds=3, extra=extra))
    asr, privacy = built.tables[0].frame, built.tables[1].frame
    labels = dict(zip(privacy.arm, privacy.label, strict=True))
    assert [a for a, lab in labels.items() if lab.startswith("DP (")] == [DP_TARGET]
    assert labels[PAPERS].startswith("not DP (epsilon 4.56e+06")
    ours = [c for c in asr.columns if c.startswith("avg ASR")]
    assert [c for c in ours if "[DP (" in c] == [next(c for c in ours if "epsilon <= 10" in c)]
    assert privacy.set_index("arm").loc[DP_TARGET, "epsilon, unconditional 2C (PLD)"] == "5.6e+04"
    # the arm that did not learn is flagged and enters no verdict: the claim about it is undetermined
    assert asr[next(c for c in ours if "epsilon <= 10" in c)].iloc[0].endswith("†")
    dp_verdict = next(v for v in built.verdicts if v.claim.startswith("Noise for epsilon <= 10") and "ASR" in v.claim)
    assert dp_verdict.status == "undetermined" and "noise for epsilon <= 10 seed 0" in dp_verdict.evidence
    papers = next(v for v in built.verdicts if v.claim.startswith("The papers' noise setting") and "ASR" in v.claim)
    assert papers.status == "holds" and "(not DP (epsilon 4.56e+06" in papers.claim  # 3 seeds 0.05 apart, spread 0
    # the sensitivity arms: their own table and claims, labelled, never in the main table's rows or notes
    sens = built.tables[2]
    assert sens.title.startswith("SENSITIVITY, not the papers' split") and len(sens.frame) == 5  # 4 eps + clean acc
    assert not any("Dirichlet" in c for c in asr.columns) and "Dirichlet" not in " ".join(built.tables[0].notes)
    sens_claims = [v for v in built.verdicts if v.claim.startswith("SENSITIVITY")]
    assert len(sens_claims) == 3 and sens_claims[0].status == "holds"


def test_the_epsilon_10_arm_noise_accounts_to_at_most_10_on_its_split():
    base = load_config(overrides=[*TINY, "task.name=synthetic", "train.rounds=3"])
    cfg = with_delta(base, at_fraction(FS_SPLIT))
    s_u = dp_noise(cfg, clip=20.0)
    sizes = [len(s) for s in prepare_data(cfg, device="cpu").client_train]
    common = dict(sigma_downlink=0.0, clip=20.0, min_local_size=min(sizes), rounds=3, num_clients=3,
                  delta=cfg.privacy.delta, weights=sizes)
    eps = account_run(sigma_uplink=s_u, **common, accountant="rdp", sensitivity="nbafl").epsilon
    assert 9.0 < eps <= 10.0  # calibrated, not merely small
    assert account_run(sigma_uplink=s_u * 0.9, **common, accountant="rdp", sensitivity="nbafl").epsilon > 10.0
    assert account_run(sigma_uplink=s_u, **common, accountant="rdp", sensitivity="unconditional").epsilon > 10.0


def test_table2_arms_are_the_papers_setting_and_the_calibrated_one():
    rep = REPRODUCTIONS["fedsafe-table2"]
    base = load_config(overrides=[*TINY, "task.name=synthetic", "train.rounds=2"])
    deltas = rep.trainings(base)
    assert tuple(deltas) == (*ARMS, *SENSITIVITY)
    for main, sens in zip(ARMS, SENSITIVITY, strict=True):  # the same arm on the Dirichlet partition
        assert deltas[sens].get("splits.partition") == "dirichlet" and deltas[main].get("splits.partition") is None
        assert deltas[sens].get("federation.uplink_clip") == deltas[main].get("federation.uplink_clip")
    assert deltas[SENSITIVITY[1]].get("federation.uplink_noise") == 0.001
    assert deltas[SENSITIVITY[2]].get("federation.uplink_noise") > 0.001  # calibrated on its own split
    assert deltas[PAPERS].get("federation.uplink_noise") == 0.001
    assert deltas[DP_TARGET].get("federation.uplink_noise") > 0.001
    assert deltas[PAPERS].get("federation.uplink_clip") == deltas[DP_TARGET].get("federation.uplink_clip")
    assert deltas[NO_NOISE].get("federation.uplink_clip") is None


# -- f as real counts ------------------------------------------------------------------------------------------


def _run(sizes, server, leaky=False) -> Run:
    cfg = load_config(overrides=["defense.adaptation_data=attack-sets"] if leaky else [])
    splits = {"server": {"a": server // 2, "b": server - server // 2},
              **{f"client{i}_test": {"a": 50, "b": 50} for i in range(3)}}
    run = Run(Path("nowhere"), cfg)
    run.privacy, run.data_report = {"client_sizes": sizes}, {"splits": splits}  # the records, as if read
    return run


def test_f_maps_to_the_image_counts_of_the_run():
    run = _run([175, 178, 178], 256)
    assert fraction_text(run, 0.2) == "f 0.2: 35-36 images (20% of |D_i|)"
    assert fraction_text(run, 1.0) == "f 1: 175-178 images (100% of |D_i|)"
    assert fraction_text(_run([175, 178, 178], 100), 1.0) == "f 1: 100 images (56-57% of |D_i|)"  # the set is short
    assert fraction_text(_run([175, 178, 178], 256, leaky=True), 0.2).startswith("LEAKY: all 300 attack-set images")
    assert fraction_text(None, 0.3) == "f 0.3 (counts n/a)"


def test_fig3_table_gives_the_counts_of_each_fraction():
    runs = {f"adversarial training f={f:g}": _run([175, 178, 178], 256) for f in FRACTIONS}
    built = REPRODUCTIONS["fedsafe-fig3"].build(_input("fedsafe-fig3", runs=runs))
    counts = built.tables[0].frame["adaptation samples (seed 0)"].tolist()
    assert counts[0] == "18 images (10% of |D_i|)" and counts[-1] == "175-178 images (100% of |D_i|)"


# -- the reproduce command --------------------------------------------------------------------------------------


def test_reproduce_help_lists_every_reproduction_by_name_with_one_line():
    res = CliRunner().invoke(app, ["reproduce", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for name, rep in REPRODUCTIONS.items():
        assert any(name in line and rep.title in line for line in lines), name
    assert all(any(line.strip().startswith(g) for line in lines) for g in GROUPS)


def test_the_cost_of_a_crn_start_counts_its_steps_unless_they_are_the_online_buffers():
    cfg = load_config(overrides=["crn.enabled=true", "train.local_epochs=5"])
    online = eval_passes(cfg, AttackSpec(steps=1, start=Start.crn(10, eps=0.05)))
    assert eval_passes(cfg, AttackSpec(steps=1, start=Start.crn(10, eps=0.05, alpha=0.001))) == pytest.approx(
        online + 3 * 100 * 50)  # replayed: 10 rounds x 5 steps for each of the 3 attackers' 100 images
    assert eval_passes(cfg, AttackSpec(steps=1, start=Start.crn(10, eps=0.05, final=True))) == pytest.approx(
        online + 3 * 100 * 50)
