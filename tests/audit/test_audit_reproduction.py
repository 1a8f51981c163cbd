"""``fedsafe reproduce fedsafe-adaptive``: it shares Fed-Safe Table 1's trainings (and its PGD evaluations), plans
EOT-PGD at K = 1, 8, 32 with K x the cost, and its builder answers the question from made-up measurements."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from statistics import median

import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsafe.audit import mia
from fedsafe.audit.mia import MiaSettings, run_membership
from fedsafe.cli import app
from fedsafe.reproduce.costs import audit_passes, macs_per_image, speeds_in, split_sizes, training_speeds_by_precision
from fedsafe.reproduce.execution import execute
from fedsafe.reproduce.planning import plan
from fedsafe.reproduce.reproductions import REPRODUCTIONS
from fedsafe.reproduce.reproductions import fedsafe_adaptive as adaptive
from fedsafe.reproduce.reproductions.base import BuildInput, Options
from fedsafe.reproduce.reproductions.fedsafe_adaptive import ADVERSARIES, EOT_SAMPLES, MIA, MIA_METRICS, MIA_QUICK, PGD
from fedsafe.reproduce.reproductions.format import METRICS
from fedsafe.reproduce.reproductions.setups import AT, DN, NONE
from fedsafe.runs.layout import RunLayout

TINY = ("task.synthetic_size=150", "task.image_size=16", "model.width=0.05", "splits.client_test_size=10")
REP = REPRODUCTIONS["fedsafe-adaptive"]


def test_it_trains_nothing_new_beside_table1_and_costs_eot_k_times():
    p = plan(["fedsafe-table1", "fedsafe-adaptive"], tasks=["synthetic"], results="unused-results",
             options=Options(quick=True, overrides=TINY))
    assert len(p.runs) == 8  # Table 1's eight trainings; the adaptive reproduction's three are among them
    shared = [r.names for r in p.runs.values() if any(n.startswith("fedsafe-adaptive/") for n in r.names)]
    assert sorted(shared) == sorted([("fedsafe-table1/" + m, "fedsafe-adaptive/" + m) for m in (NONE, AT, DN)])
    mine = [j for j in p.jobs if j.reproduction == "fedsafe-adaptive"]
    assert len(mine) == 3 * len(ADVERSARIES) and {j.measurement.spec.label for j in mine} == {
        "PGD-20", "PGD-20+CRN10", *(f"EOT{k}-PGD-20" for k in EOT_SAMPLES)}
    assert len(p.evaluations(0)) == 32 + 15 - 3  # Table 1's PGD at step 0.005 is the adaptive PGD: shared
    dn = next(rd for rd, r in p.runs.items() if "fedsafe-adaptive/" + DN in r.names)
    cost = {s.label: p.eval_estimates[(rd, s)] for rd, s in p.evaluations(0) if rd == dn}
    assert cost["EOT32-PGD-20"] > 3 * cost["EOT8-PGD-20"] > 3 * cost["PGD-20"]


def test_dry_run_lists_its_trainings():
    r = CliRunner().invoke(app, ["reproduce", "fedsafe-adaptive", "--task", "synthetic", "--quick", "--dry-run",
                                 *[a for o in TINY for a in ("--set", o)], "--results", "unused-results"])
    assert r.exit_code == 0, r.output
    assert "Trainings a seed (per task): fedsafe-adaptive 3" in " ".join(r.output.split())


def _fake(metric, seeds: int = 1, mia: bool = True) -> BuildInput:
    rows = []
    for seed in range(seeds):
        for m in REP.measurements(seed):
            s, t = m.spec, m.tag()
            row = {"training": m.training, **t, "label": s.label, "attack": s.attack, "eps": s.eps, "alpha": s.alpha,
                   "steps": s.steps, "start": s.start, "seed": seed, "fb_passes_per_image": s.passes_per_image,
                   "crn_passes_per_image": 50 if s.window else 0, "start_source": "x", "learned": True,
                   "majority_class_rate": 0.7, "epsilon": math.inf, "epsilon_unconditional": math.inf}
            row.update({k: metric(t["method"], t["adversary"], k) + 0.01 * seed for k in METRICS})
            if mia:
                row.update({k: {NONE: 0.7, AT: 0.68, DN: 0.55}[t["method"]] + 0.005 * seed for k in MIA_METRICS})
            rows.append(row)
    return BuildInput(reproduction=REP, task="meningioma", options=Options(seeds=seeds), summary=pd.DataFrame(rows),
                      runs={})


def _asr(survives: bool):
    def metric(method, adversary, k):
        if k != "asr_avg_benign":
            return 0.5
        if method == DN:
            return 0.1 if adversary in ADVERSARIES[:2] else (0.15 if survives else 0.5)
        return {NONE: 0.6, AT: 0.3}[method]
    return metric


def test_the_verdict_holds_when_fed_safe_stays_below_adversarial_training_under_eot():
    built = REP.build(_fake(_asr(survives=True)))
    status = {v.claim.split(" (")[0]: v.status for v in built.verdicts}
    main = built.verdicts[0]
    assert main.claim.startswith("Fed-Safe's lower ASR on benign clients") and main.status == "indicative: holds"
    assert "lower at 3 of 3 points" in main.evidence and "EOT-PGD-20 K=32: Fed-Safe 0.15 vs AT 0.30" in main.evidence
    assert status["Knowing the noise helps the attacker: EOT-PGD beats PGD on Fed-Safe's benign clients"] == \
        "indicative: holds"
    assert status["Fed-Safe's noise lowers membership inference"] == "indicative: holds"
    asr, mia = built.tables[0].frame, built.tables[1].frame
    assert asr.attack.tolist() == list(ADVERSARIES)
    assert asr.set_index("attack").loc[ADVERSARIES[-1], "passes / image (Fed-Safe)"] == "640"  # 32 x 20 steps
    assert asr.set_index("attack").loc[PGD, f"{DN}: self / avg"] == "0.50 / 0.10"
    assert mia.set_index("defense").loc[DN, "server LiRA AUC"] == "0.55" and mia.defense.tolist() == [NONE, AT, DN]
    assert built.figures and built.data is not None


def test_the_verdict_does_not_hold_when_eot_closes_the_gap():
    built = REP.build(_fake(_asr(survives=False)))
    assert built.verdicts[0].status == "indicative: does not hold"
    assert built.verdicts[1].status == "indicative: holds"  # ... while plain PGD still shows the gap


def test_three_seeds_give_full_verdicts_and_no_membership_numbers_leave_those_undetermined():
    built = REP.build(_fake(_asr(survives=True), seeds=3, mia=False))
    assert built.verdicts[0].status == "holds"  # 3 seeds, a difference far beyond the spread of 0.01
    mia = [v for v in built.verdicts if "membership" in v.claim]
    assert mia and all(v.status == "undetermined" for v in mia)
    assert (built.tables[1].frame["server LiRA AUC"] == "n/a").all()


def test_the_notes_say_no_paper_has_numbers():
    built = REP.build(_fake(_asr(survives=True)))
    assert any("no paper has numbers" in n for n in built.tables[0].notes)


def test_membership_numbers_of_a_run_that_did_not_learn_enter_neither_the_table_nor_the_verdict():
    inp = _fake(_asr(survives=True), seeds=3)
    s = inp.summary
    broken = (s.method == NONE) & (s.seed == 2)  # FedAvg's seed 2 did not learn, and its MIA numbers are absurd
    s.loc[broken, "learned"] = False
    s.loc[broken, list(MIA_METRICS)] = 0.0
    built = REP.build(inp)
    mia = next(t for t in built.tables if t.title.startswith("Membership")).frame.set_index("defense")
    assert mia.loc[NONE, "server LiRA AUC"].startswith("0.70") and mia.loc[NONE, "server LiRA AUC"].endswith("†")
    server = next(v for v in built.verdicts if "server's view" in v.claim)
    assert "FedAvg 0.70" in server.evidence and "0.47" not in server.evidence  # 0.47: the mean with seed 2 in it
    csv = built.data[built.data.method == NONE]  # table.csv says what the tables say
    assert csv.mia_server_lira_auc_mean.sub(0.7025).abs().max() < 1e-9  # seeds 0, 1 (with seed 2: 0.47)


def test_the_plan_schedules_and_costs_the_membership_inference_of_each_arm():
    p = plan(["fedsafe-adaptive"], tasks=["synthetic"], results="unused-results",
             options=Options(quick=True, overrides=TINY, seeds=(0, 1)))
    arms = {rd for rd, r in p.runs.items() if any(n.startswith("fedsafe-adaptive/") for n in r.names)}
    assert {rd for rd, _ in p.audits} == arms and len(p.audits) == 6  # three arms x two seeds, one inference each
    assert all(s == MIA_QUICK for s in p.audits.values())  # --quick: the quick settings the build reads
    one = p.cost(0)
    assert (one["audits"], one["audits_to_run"]) == (3, 3) and one["audit_seconds"] > 0
    assert sum(line.startswith("membership inference on ") for line in p.missing()) == 6  # --cached-only names them
    assert "3 membership inference(s), 3 not yet cached" in " ".join(p.describe())
    full = plan(["fedsafe-adaptive"], tasks=["synthetic"], results="unused-results", options=Options(overrides=TINY))
    assert set(full.audits.values()) == {MIA}
    table1 = plan(["fedsafe-table1"], tasks=["synthetic"], results="unused-results",
                  options=Options(quick=True, overrides=TINY))
    assert not table1.audits and "membership" not in " ".join(table1.describe())


def test_the_cost_of_a_membership_inference_counts_its_shadow_models():
    p = plan(["fedsafe-adaptive"], tasks=["synthetic"], results="unused-results", options=Options(overrides=TINY))
    (rd, key), settings = next(iter(p.audits.items()))
    cfg = p.runs[rd].cfg
    n = p.cache.task_size(cfg)
    n_train, n_server, n_glob = split_sizes(cfg, n)
    epochs = min(cfg.train.rounds * cfg.train.local_epochs, settings.max_shadow_epochs)
    shadows = settings.shadows * epochs * (n_server + n_train)  # the server's view, then each insider's own data
    scoring = 4 * (settings.shadows + 1) * (n_train + n_glob) / 3  # 4 views: the server's and 3 insiders'
    assert audit_passes(cfg, n, settings) == pytest.approx(shadows + scoring)
    assert audit_passes(cfg, n, MiaSettings(shadows=8)) > 1.9 * audit_passes(cfg, n, MiaSettings(shadows=4))


def test_executing_the_plan_runs_each_membership_inference_once_and_the_build_reads_it(tmp_path, monkeypatch):
    options = Options(quick=True, overrides=(*TINY, "threads=1", "train.precision=fp32"), sanity=False)
    p = plan(["fedsafe-adaptive"], tasks=["synthetic"], results=tmp_path, options=options)
    read = []

    def build_reads(run_dir, settings, **kwargs):  # the build finds each inference already in its run's cache
        files = [RunLayout(rd).mia(key) for rd, key in p.audits if rd == Path(run_dir)]
        assert files and all(f.is_file() for f in files), f"{run_dir}: not computed before the build"
        read.append(Path(run_dir))
        return run_membership(run_dir, settings, **kwargs)

    monkeypatch.setattr(adaptive, "run_membership", build_reads)
    execute(p)
    assert len(p.audits) == 3 and sorted(read) == sorted(rd for rd, _ in p.audits)

    def never(*args, **kwargs):
        raise AssertionError("a cached membership inference was recomputed")

    monkeypatch.setattr(mia, "membership_audit", never)
    again = plan(["fedsafe-adaptive"], tasks=["synthetic"], results=tmp_path, options=options)
    assert again.cost(None)["audits_to_run"] == 0 and again.missing() == []
    assert "membership inference" not in again.speed_source  # nothing left to estimate
    execute(again)  # reads everything back
    # seed 1's inferences are left: their shadow models are costed at the speed of trainings in their own precision
    more = plan(["fedsafe-adaptive"], tasks=["synthetic"], results=tmp_path, options=replace(options, seeds=(0, 1)))
    trained = training_speeds_by_precision(tmp_path / "runs", {})
    fp32 = speeds_in(trained, "fp32")
    assert len(fp32) == len(list((tmp_path / "runs").glob("*/summary.json"))) and fp32
    assert speeds_in(trained, "bf16") == []  # none trained in bf16: none measured in it
    assert f"membership inference (fp32) {median(fp32) / 1e9:.1f} GMAC/s measured on {len(fp32)} finished run(s) " \
        "in fp32" in more.speed_source
    (rd, key), settings = next(a for a in more.audits.items() if a[0] not in more.cached_audits)
    cfg = more.runs[rd].cfg
    assert more.audit_estimates[(rd, key)] == pytest.approx(
        3 * audit_passes(cfg, more.cache.task_size(cfg), settings) * macs_per_image(cfg, {}) / median(fp32))
