"""Reproductions: plans share trainings, an interrupted reproduction resumes and ends equal to an uninterrupted
one, builders put the papers' numbers beside ours, and verdicts follow their rules."""

from __future__ import annotations

import html
import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from fedsafe.cli import app
from fedsafe.progress import duration
from fedsafe.report.html import build_report
from fedsafe.reproduce.costs import attack_speeds_by_precision, eval_passes, macs_per_image, speeds_in
from fedsafe.reproduce.execution import execute
from fedsafe.reproduce.outputs import built_markdown, command_line, markdown_table
from fedsafe.reproduce.planning import PAPER_TASKS, expand_tasks, plan
from fedsafe.reproduce.reproductions import REPRODUCTIONS
from fedsafe.reproduce.reproductions.base import DEFAULT_SEEDS, BuildInput, Built, Options, parse_seeds, seeds_arg
from fedsafe.reproduce.reproductions.format import METRICS, aggregate
from fedsafe.verdicts.claims import RULES, STATUSES, Comparison, Curve, compare, spearman, trend

TINY = ("task.synthetic_size=150", "task.image_size=16", "model.width=0.05", "splits.client_test_size=10")
FS_TINY = (*TINY, "train.rounds=2")  # Fed-Safe Table 1 needs no CRN: 2 rounds are enough


class Stop(Exception):
    """Stands for a kill: raised from a hook to interrupt the reproduction."""


def _fs_table1(results, **kw):
    p = plan(["fedsafe-table1"], tasks=["synthetic"], results=results,
             options=Options(quick=True, overrides=FS_TINY, sanity=False))
    return p, execute(p, **kw)


_TIMING = ["seconds_per_batch", "attack_seconds_per_batch", "crn_seconds", "run_dir"]


def _comparable(path):
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in _TIMING if c in frame.columns])


@pytest.mark.slow  # 20-40 s on 2 cores: the reproduction trained three times over (make test-slow)
def test_an_interrupted_reproduction_resumes_and_equals_an_uninterrupted_one(tmp_path):
    a = tmp_path / "interrupted"
    seen: list[tuple[str, bool]] = []

    def stop_after_first_run(run, skipped):
        seen.append((run.run_dir.name, skipped))
        raise Stop

    with pytest.raises(Stop):
        _fs_table1(a, on_trained=stop_after_first_run)
    first = a / "runs" / seen[0][0]
    stamps = {f: (first / f).stat().st_mtime_ns for f in ("summary.json", "checkpoint.pt", "metrics.json")}

    def stop_in_round_1(step, done, total):  # the second run is killed after its first checkpointed round
        if step == "rounds" and done == 1:
            raise Stop

    with pytest.raises(Stop):
        _fs_table1(a, progress=stop_in_round_1)

    runs: list[tuple[str, bool]] = []
    p, written = _fs_table1(a, on_trained=lambda run, skipped: runs.append((run.run_dir.name, skipped)))
    assert runs[0] == (seen[0][0], True)  # the finished run was not trained again ...
    assert {f: (first / f).stat().st_mtime_ns for f in stamps} == stamps  # ... nor touched
    second = json.loads((a / "runs" / runs[1][0] / "summary.json").read_text())
    assert second["resumed_from_round"] == 1  # the killed run continued from its checkpoint
    assert p.cost(None)["runs_to_train"] == 7  # one of the eight runs was complete when the plan was made

    b = tmp_path / "uninterrupted"
    _fs_table1(b)
    folder = "fedsafe-table1/synthetic"
    for name in ("summary.csv", "rows.csv"):
        pd.testing.assert_frame_equal(_comparable(a / folder / name), _comparable(b / folder / name))
    assert (a / folder / "fedsafe-table1.md").read_text().count("QUICK") >= 2

    again = plan(["fedsafe-table1"], tasks=["synthetic"], results=a,
                 options=Options(quick=True, overrides=FS_TINY, sanity=False))
    assert again.cost(None)["runs_to_train"] == 0 and again.cost(None)["evaluations_to_run"] == 0


def again_all_cached(results: Path):
    return plan(["fedsafe-table1"], tasks=["synthetic"], results=results,
                options=Options(quick=True, overrides=FS_TINY, sanity=False))


def test_outputs_of_a_reproduction(tmp_path):
    _, (w,) = _fs_table1(tmp_path)
    manifest = json.loads(w.manifest.read_text())
    assert manifest["quick"] and manifest["synthetic"] and manifest["task"] == "synthetic"
    for f in ("rows.csv", "summary.csv", "table.csv", "verdicts.json", "points.csv", "table1.png", "table1.svg"):
        assert (w.folder / f).is_file(), f
    rows = pd.read_csv(w.folder / "rows.csv")
    assert len(rows) == 8 * 4 * 3 * 3  # trainings (3 clean, 2 leaky, 3 sensitivity) x steps x attackers x targets
    assert {"attacker", "target", "asr", "aetr", "method", "step"} <= set(rows.columns)
    assert {v["status"] for v in manifest["verdicts"]} <= set(STATUSES)
    assert manifest["heatmaps"] and len(manifest["heatmaps"][0]["matrix"]) == 3
    md = w.markdown.read_text()  # seeds, profile, precision, device, wall time, the exact command, the rules
    assert "Seeds 0 (fixed before the run; every seed's numbers are in summary.csv, learned or not); profile cpu; " \
        "device " in md and "training precision" in md and "wall time: 8 training run(s)" in md
    threads = {json.loads(p.read_text())["threads"] for p in (tmp_path / "runs").glob("*/summary.json")}
    assert len(threads) == 1 and f"torch threads a training run {threads.pop()} (CPU sums depend on it" in md
    assert "1 seed(s) (0) (fewer than the 5 this reproduction asks for)" in md and manifest["seeds"] == [0]
    assert "Command: `fedsafe reproduce fedsafe-table1 --task synthetic --profile cpu --seeds 1 --quick" in md
    assert "Verdict rules (design §11)" in md and "LEAKY" in md and "SENSITIVITY, not the papers' split" in md
    assert manifest["rules"] == RULES and html.escape(RULES) in build_report(w.folder)  # the report prints it too
    verdicts = json.loads((w.folder / "verdicts.json").read_text())  # each point in numbers beside the text
    assert verdicts and all(v["points"] and v["n"] == min((p["n"] for p in v["points"] if p["n"]), default=0)
                            for v in verdicts)
    points = pd.read_csv(w.folder / "points.csv", keep_default_na=False)  # the same points, one row each
    assert len(points) == sum(len(v["points"]) for v in verdicts)
    first = verdicts[0]["points"][0]
    row = points.iloc[0]
    assert (row["claim"], row["where"], row["n"]) == (verdicts[0]["claim"], first["where"], first["n"])
    assert str(row["seeds"]) == " ".join(map(str, first["seeds"]))
    summary = pd.read_csv(w.folder / "summary.csv")
    assert {"learned", "learned_reason", "majority_class_rate", "epsilon_unconditional", "device"} <= set(
        summary.columns)
    assert len(summary) == 8 * 4  # every run's numbers, learned or not
    # the next plan estimates attacks at the speed its cached evaluations were timed at, not the trainings'
    assert "attacks" not in again_all_cached(tmp_path).speed_source  # nothing left to estimate: no records read
    again = plan(["fedsafe-table1"], tasks=["synthetic"], results=tmp_path,  # seed 1: evaluations left to estimate
                 options=Options(quick=True, overrides=FS_TINY, sanity=False, seeds=(0, 1)))
    record = json.loads(next((tmp_path / "runs").glob("*/attacks/*.json")).read_text())
    cfg = next(iter(again.runs.values())).cfg
    one = (3 * record["fb_passes_per_image"] * macs_per_image(cfg, {}) * min(record["batch_size"], max(record["n"]))
           / record["attack_seconds_per_batch"])
    speeds = speeds_in(attack_speeds_by_precision(tmp_path / "runs", {}))
    assert len(speeds) == len(again.evaluations(0)) and any(one == pytest.approx(x) for x in speeds)
    assert f"attacks {statistics.median(speeds) / 1e9:.1f} GMAC/s measured on {len(speeds)} cached" in \
        again.speed_source
    rd, spec = again.evaluations()[0]
    assert again.eval_estimates[(rd, spec)] == pytest.approx(
        3 * eval_passes(again.runs[rd].cfg, spec) * macs_per_image(again.runs[rd].cfg, {}) / statistics.median(speeds))
    assert (summary.learned_reason.fillna("") == "").eq(summary.learned).all()  # a reason exactly where it did not


def test_each_closing_note_is_a_paragraph_of_its_own():
    v = compare("c", [Comparison("x", [0.1], [0.2])], expect="lower", names=("a", "b"))
    lines = built_markdown(Built((), (), (v,), notes=("Sanity-check warnings: w.", "Pathology: p.", "Files: f.")))
    after = lines[lines.index(RULES) + 1:]
    assert after == ["", "Sanity-check warnings: w.", "", "Pathology: p.", "", "Files: f.", ""]


def test_reproductions_share_their_trainings():
    p = plan(["all"], tasks=["synthetic"], results="unused-results", options=Options(quick=True, overrides=TINY))
    # 8 (Table 1: 3 clean, 2 leaky, 3 Dirichlet sensitivity) + 4 (Table 2: papers' setting, epsilon <= 10, each on
    # both partitions) + 10 (Figure 3 but f = 0.2) + 1 (CRN)
    assert len(p.runs) == 23
    names = sorted(run.names for run in p.runs.values())
    assert ("crn-table1/crn", "crn-table2/crn", "crn-fig2/crn", "crn-fig3/crn") in names
    assert any("fedsafe-table2/no uplink noise" in n and "fedsafe-table1/distributed noise (Fed-Safe)" in n
               for n in names)
    assert any("fedsafe-table2/no uplink noise [Dirichlet 0.5]" in n  # the sensitivity arms share the same way
               and "fedsafe-table1/distributed noise (Fed-Safe) [Dirichlet 0.5]" in n for n in names)
    # Figure 3's f = 0.2 runs are Table 1's (one cached training each)
    assert any({"fedsafe-table1/adversarial training", "fedsafe-fig3/adversarial training f=0.2"} <= set(n)
               for n in names)
    assert any("fedsafe-fig3/distributed noise (Fed-Safe) f=0.2" in n and "fedsafe-table1/distributed noise "
               "(Fed-Safe)" in n for n in names)
    # every Fed-Safe training is on the one split whose server set holds f = 1 of the largest client
    fs = [r.cfg for r in p.runs.values() if any(n.startswith("fedsafe-") for n in r.names)]
    assert {c.splits.server_for_fraction for c in fs} == {1.0}
    assert {c.defense.name for c in fs} == {"none", "adversarial-training", "fed-safe"}  # never the shared variant
    cost = p.cost(0)
    assert cost["runs_to_train"] == 23 and cost["evaluations"] == len(p.evaluations(0)) > 0
    text = "\n".join(p.describe())
    assert "23 training run(s)" in text
    assert "Trainings a seed (per task): fedsafe-table1 8, fedsafe-table2 6, fedsafe-fig3 12, crn-table1 1" in text
    two = plan(["crn-table1"], tasks=["synthetic"], results="unused-results",
               options=Options(quick=True, overrides=TINY, seeds=2))
    assert len(two.runs) == 2 and {r.seed for r in two.runs.values()} == {0, 1}


def test_the_seed_list_is_fixed_before_running_and_stated_first():
    p = plan(["crn-table1", "crn-table2"], tasks=["synthetic"], results="unused-results",
             options=Options(quick=True, overrides=TINY, seeds=(3, 1, 4)))
    assert {r.seed for r in p.runs.values()} == {1, 3, 4} and {j.seed for j in p.jobs} == {1, 3, 4}
    lines = p.describe()
    assert lines[1] == "Seeds (fixed before running, never chosen by outcome): 1, 3, 4 (3)."
    assert lines[2].startswith("Fewer seeds than asked for: crn-table1 asks for at least 5;")
    assert "crn-table2" not in lines[2]  # it asks for 3 (the default)
    assert REPRODUCTIONS["fedsafe-table1"].min_seeds == REPRODUCTIONS["crn-table1"].min_seeds == 5
    five = plan(["crn-table1"], tasks=["synthetic"], results="unused-results",
                options=Options(quick=True, overrides=TINY, seeds=5))
    assert {r.seed for r in five.runs.values()} == {0, 1, 2, 3, 4} and "Fewer seeds" not in " ".join(five.describe())
    # the estimate is the work; with workers, its wall time shared out beside it
    (serial,) = [x for x in five.describe() if x.startswith("All 5 seeds")]
    (shared,) = [x for x in five.describe(jobs=2) if x.startswith("All 5 seeds")]
    assert "with --jobs" not in serial and shared.count("with --jobs 2") == 2
    train = five.cost(None)["train_seconds"]
    assert f"~{duration(train)}, ~{duration(train / 2)} with --jobs 2)" in shared
    assert command_line("crn-table1", "synthetic", Options(seeds=(1, 3)), Path("r")).count("--seeds 1,3 ") == 1
    assert "--seeds 5 " in command_line("crn-table1", "synthetic", Options(seeds=5), Path("r"))
    for seeds in ((3,), (0,), (1, 3), (0, 1, 2), (2, 3, 4)):  # the printed value gives the same seeds back
        assert parse_seeds(seeds_arg(seeds)) == seeds
    assert seeds_arg((3,)) == "3," and parse_seeds("3") == (0, 1, 2)  # a bare 3 is a count


def test_seeds_are_a_count_or_a_list_and_bad_values_are_named():
    assert parse_seeds("5") == (0, 1, 2, 3, 4) == Options(seeds=5).seeds and parse_seeds("4,0,2") == (0, 2, 4)
    assert Options().seeds == (0,) and DEFAULT_SEEDS == (0, 1, 2, 3, 4)
    for bad in ("0", "-2", "a", "1,1", "1,-1", "1.5"):
        with pytest.raises(ValueError, match=re.escape(f"--seeds {bad!r}")):
            parse_seeds(bad)
    res = CliRunner().invoke(app, ["reproduce", "crn-table1", "--task", "synthetic", "--seeds", "0,x", "--dry-run",
                                   "--results", "unused-results"])
    assert res.exit_code != 0 and "--seeds '0,x': give a count N" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["reproduce", "crn-table1", "--task", "synthetic", "--seeds", "0,2", "--dry-run",
                                   "--quick", "--results", "unused-results", *[a for o in TINY for a in ("--set", o)]])
    assert res.exit_code == 0, res.output
    assert "Seeds (fixed before running, never chosen by outcome): 0, 2 (2)." in res.output


def test_a_missing_task_names_its_path_and_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="/nonexistent/mri"):
        plan(["crn-table1"], tasks=["meningioma"], results="unused",
             options=Options(overrides=("task.data_root=/nonexistent/mri",)))
    with pytest.raises(ValueError, match="crn-table1"):
        plan(["crn-table9"], tasks=["synthetic"], results="unused")


# -- builders on made-up measurements ---------------------------------------------------------------------------


def _fake(rep_name: str, task: str, metric, seeds: int = 2, learned=lambda m, seed: True) -> BuildInput:
    """A builder's input with ``metric(m, k) + 0.01 * seed`` for every measurement and metric."""
    rep = REPRODUCTIONS[rep_name]
    rows = []
    for seed in range(seeds):
        for m in rep.measurements(seed):
            s = m.spec
            row = {"training": m.training, **m.tag(), "label": s.label, "attack": s.attack, "eps": s.eps,
                   "alpha": s.alpha, "steps": s.steps, "start": s.start, "seed": seed,
                   "fb_passes_per_image": s.steps, "crn_passes_per_image": 50 if s.window else 0,
                   "start_source": "x", "epsilon": math.inf, "learned": learned(m, seed),
                   "majority_class_rate": 0.727}
            row.update({k: metric(m, k) + 0.01 * seed for k in METRICS})
            rows.append(row)
    return BuildInput(reproduction=rep, task=task, options=Options(seeds=seeds), summary=pd.DataFrame(rows), runs={})


def test_crn_table1_beside_the_paper_with_both_crn_steps_and_their_controls():
    def metric(m, k):
        crn = m.spec.window is not None
        final = crn and m.spec.start.final
        asr = 0.4 if final else 0.7 if crn else 0.3
        return {"aasr": asr, "asr_avg_benign": asr, "seconds_per_batch": 0.01 if crn else 1.0}.get(k, 0.5)

    built = REPRODUCTIONS["crn-table1"].build(_fake("crn-table1", "meningioma", metric))
    table = built.tables[0].frame
    assert table.attack.tolist() == [
        "PGD-1+CRN10, step eps/j", "PGD-1+CRN10, step 0.001", "final-model control, step eps/j",
        "final-model control, step 0.001", "PGD-20", "PGD-40", "PGD-20, alpha 2.5eps/K", "PGD-40, alpha 2.5eps/K"]
    # the paper's numbers beside both CRN steps (it does not state its own), never beside a control or Madry's step
    assert table["AASR (paper)"].tolist() == ["63.92%", "63.92%", "—", "—", "27.52%", "32.99%", "—", "—"]
    assert "±" in table["AASR"].iloc[0]
    assert table["passes/image at attack"].iloc[2] == "51 (1 + 50 CRN on the final model)"
    claims = {v.claim: v.status for v in built.verdicts}
    assert claims["PGD-1+CRN10 beats PGD-40 in AASR with the CRN step at eps/j"] == "indicative: holds"  # 2 seeds
    assert claims["PGD-1+CRN10 beats PGD-40 in AASR with the CRN step at 0.001"] == "indicative: holds"
    assert claims["Accumulating over rounds beats the same steps on the final model alone (CRN step eps/j)"] == \
        "indicative: holds"


def test_fedsafe_table1_verdicts_follow_the_numbers():
    def metric(m, k):  # distributed noise lower than adversarial training at 3 of the 4 steps
        method, step = m.tag()["method"], m.tag()["step"]
        if k == "asr_avg_benign":
            return {"no defense (FedAvg)": 0.6, "adversarial training": 0.3,
                    "adversarial training, LEAKY": 0.1, "distributed noise, LEAKY": 0.05}.get(
                method, 0.2 if step != 0.05 else 0.4)
        return 0.5

    built = REPRODUCTIONS["fedsafe-table1"].build(_fake("fedsafe-table1", "meningioma", metric, seeds=1))
    table, leaky = built.tables[0].frame, built.tables[1].frame
    assert table["(paper)"].iloc[0] == "0.12 / 0.05"  # MRI, step 0.005, adversarial training
    assert leaky["AT LEAKY: self / avg"].iloc[0] == "0.50 / 0.10" and leaky["AT clean"].iloc[0] == "0.50 / 0.30"
    dn_vs_at = built.verdicts[0]
    assert dn_vs_at.status == "indicative: mixed" and "3 of 4" in dn_vs_at.evidence  # one seed: indicative
    leak = next(v for v in built.verdicts if "leaky protocol" in v.claim)
    assert leak.status == "indicative: holds"
    assert "the leak accounts for" in " ".join(built.tables[1].notes)


def test_a_run_that_did_not_learn_is_flagged_and_enters_no_verdict():
    def metric(m, k):
        return {"distributed noise (Fed-Safe)": 0.2}.get(m.tag()["method"], 0.5) if k == "asr_avg_benign" else 0.5

    def learned(m, seed):  # Fed-Safe's run stayed at the majority class in every seed
        return m.tag()["method"] != "distributed noise (Fed-Safe)"

    built = REPRODUCTIONS["fedsafe-table1"].build(
        _fake("fedsafe-table1", "meningioma", metric, seeds=3, learned=learned))
    table = built.tables[0]
    assert table.frame["distributed noise: self / avg"].str.endswith("†").all()
    assert not table.frame["adversarial training: self / avg"].str.endswith("†").any()
    assert any("did not learn" in n and "distributed noise (Fed-Safe) seed 2" in n for n in table.notes)
    dn_vs_at = built.verdicts[0]  # its only evidence was the run that did not learn
    assert dn_vs_at.status == "undetermined" and "4 undefined" in dn_vs_at.evidence
    assert ("Seeds left out (design §11): distributed noise (Fed-Safe) seed 0 did not learn (global model "
            "50.0% vs majority class 72.7%)") in dn_vs_at.evidence  # an older summary: no reason, its accuracies
    # AT vs none: 3 matched seeds, equal numbers -> a mean paired difference of 0 (p 1): inconclusive
    at_vs_none = next(v for v in built.verdicts if v.claim.startswith("Adversarial training lowers"))
    assert at_vs_none.status == "inconclusive"
    # a clean-accuracy claim counts the runs that did not learn (not learning is the cost it asks about), named
    acc = next(v for v in built.verdicts if "clean accuracy" in v.claim)
    assert acc.status != "undetermined" and "Counted although they did not learn" in acc.evidence
    assert "distributed noise (Fed-Safe) seed 1" in acc.evidence


def test_attack_means_average_only_the_runs_that_learned():
    # 0.5 + 0.01 * seed everywhere, but FedAvg's seed 2 did not learn and reads 0.99: its mean stays ~0.50
    def learned(m, seed):
        return not (m.tag()["method"] == "no defense (FedAvg)" and seed == 2)

    inp = _fake("fedsafe-table1", "meningioma", lambda m, k: 0.5, seeds=3, learned=learned)
    bad = ~inp.summary.learned
    inp.summary.loc[bad, ["asr_self", "asr_avg_benign"]] = 0.99
    built = REPRODUCTIONS["fedsafe-table1"].build(inp)
    frame = built.tables[0].frame
    cells = frame["no defense: self / avg"]
    assert cells.str.fullmatch(r"0\.5\d ± 0\.01 / 0\.5\d ± 0\.01 †").all()  # seeds 0, 1 (with seed 2: 0.66 ± 0.28)
    assert frame["adversarial training: self / avg"].str.startswith("0.51 ± 0.01").all()  # seeds 0..2
    assert any("Left out of the attack means" in n for n in built.tables[0].notes)
    # where no run learned at all (one run attacked on its own), the numbers are shown, marked, for diagnosis
    all_bad = _fake("crn-table1", "meningioma", lambda m, k: 0.5, seeds=1, learned=lambda m, seed: False)
    none = REPRODUCTIONS["crn-table1"].build(all_bad)
    assert len(none.tables[0].frame) == all_bad.summary.row.nunique()  # every attack's row, shown
    assert any("No run learned" in n for n in none.tables[0].notes)


def test_an_arm_that_did_not_learn_on_seed_k_leaves_seed_k_out_of_every_comparison_with_it():
    # the measured reversal: on the seeds where every arm learned, distributed noise has the HIGHEST ASR; its seed 2
    # (ASR 0.24), which adversarial training lost, must not make it look lower
    at, dn, none = "adversarial training", "distributed noise (Fed-Safe)", "no defense (FedAvg)"
    asr = {none: 0.76, at: 0.67, dn: 0.78, "adversarial training, LEAKY": 0.6, "distributed noise, LEAKY": 0.7,
           none + " [Dirichlet 0.5]": 0.7, at + " [Dirichlet 0.5]": 0.5, dn + " [Dirichlet 0.5]": 0.55}
    jitter = [0.0, 0.03, -0.02, 0.01, -0.03]  # differs per seed and arm: spreads that are not zero

    def learned(m, seed):
        return not (m.tag()["method"] == at and seed == 2)

    inp = _fake("fedsafe-table1", "meningioma", lambda m, k: 0.5, seeds=5, learned=learned)
    s = inp.summary
    s["asr_avg_benign"] = [asr[m] + jitter[(seed + i) % 5] / (1 + i)
                           for m, seed, i in zip(s.method, s.seed, s.method.map(list(asr).index), strict=True)]
    s.loc[(s.method == dn) & (s.seed == 2), "asr_avg_benign"] = 0.24
    s["learned_reason"] = ["client 2's model 71.9% vs majority 72.4%" if not ok else "" for ok in s.learned]
    built = REPRODUCTIONS["fedsafe-table1"].build(inp)
    by_claim = {v.claim.split(" compared")[0]: v for v in built.verdicts}
    why = ("Seeds left out (design §11): adversarial training seed 2 did not learn (client 2's model 71.9% vs majority "
           "72.4%).")
    for claim in ("Distributed noise lowers the average ASR (benign clients)", "Adversarial training lowers the "
                  "average ASR", "Distributed noise lowers the attacker's self ASR"):
        v = by_claim[claim]
        assert v.evidence.count("n 4 (seeds 0, 1, 3, 4)") == 4 and why in v.evidence, claim
    dn_at = by_claim["Distributed noise lowers the average ASR (benign clients)"]
    assert dn_at.status == "does not hold"  # DN above AT at every step on the matched seeds
    matched = s[(s.step == 0.005) & s.seed.isin([0, 1, 3, 4])].groupby("method").asr_avg_benign
    assert f"DN {matched.mean()[dn]:.2f} vs AT {matched.mean()[at]:.2f}" in dn_at.evidence
    ours, other = (s[(s.step == 0.005) & (s.method == m) & (s.seed != 2)].asr_avg_benign.to_numpy() for m in (dn, at))
    shown = float(re.search(r"\), p ([0-9.e+-]+),", dn_at.evidence.split(";")[0]).group(1))  # 2 digits
    assert shown == pytest.approx(sps.ttest_rel(ours, other).pvalue, rel=0.06)
    # a comparison without the arm keeps seed 2; the leaky claim drops it only at the points with AT
    dn_none = by_claim["Distributed noise lowers the average ASR"]
    assert dn_none.evidence.count("n 5 (seeds 0-4)") == 4 and "Seeds left out" not in dn_none.evidence
    leak = next(v for v in built.verdicts if "leaky protocol" in v.claim)
    assert leak.evidence.count("n 4 (seeds 0, 1, 3, 4)") == 4 and leak.evidence.count("n 5 (seeds 0-4)") == 4
    # a clean-accuracy claim counts the run that did not learn, still paired: all 5 seeds, the run named
    acc = next(v for v in built.verdicts if "clean accuracy" in v.claim)
    assert "n 5 (seeds 0-4)" in acc.evidence and "Counted although they did not learn" in acc.evidence


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
@pytest.mark.parametrize("task", ["meningioma", "glioma", "breastmnist"])
def test_every_builder_runs_and_says_where_the_paper_has_no_number(name, task):
    rng = np.random.default_rng(0)
    built = REPRODUCTIONS[name].build(_fake(name, task, lambda m, k: float(rng.uniform(0.05, 0.95))))
    assert built.tables and all(len(t.frame) for t in built.tables) and built.figures
    assert all(v.status in STATUSES for v in built.verdicts)
    assert all(v.status.startswith("indicative") or v.status == "undetermined" for v in built.verdicts)  # 2 seeds
    text = " ".join(n for t in built.tables for n in t.notes)
    if task == "breastmnist":
        assert "no" in text and "numbers" in text


# -- verdicts, aggregation, tables ------------------------------------------------------------------------------


def test_compare_statuses():
    lower = [Comparison("a", [0.1], [0.2]), Comparison("b", [0.1], [0.3])]  # one seed: indicative
    assert compare("c", lower, expect="lower", names=("x", "y")).status == "indicative: holds"
    assert compare("c", lower, expect="higher", names=("x", "y")).status == "indicative: does not hold"
    mixed = [*lower, Comparison("c", [0.5], [0.2]), Comparison("d", [], [])]
    v = compare("c", mixed, expect="lower", names=("x", "y"))
    assert v.status == "indicative: mixed" and "2 of 3" in v.evidence and "1 undefined" in v.evidence
    assert compare("c", [Comparison("a", [], [])], expect="lower", names=("x", "y")).status == "undetermined"
    noisy = compare("c", [Comparison("a", [0.10, 0.15, 0.05], [0.12, 0.11, 0.13])], expect="lower",
                    names=("x", "y"))
    assert noisy.status == "inconclusive" and "1 unresolved" in noisy.evidence
    assert "Smallest difference these seeds could resolve" in noisy.evidence
    with pytest.raises(ValueError, match="NaN"):
        Comparison("a", [0.1, math.nan], [0.2, 0.3])


def _diffs(mean: float, sd: float) -> list[float]:
    """Three per-seed differences with exactly this mean and standard deviation (ddof 1)."""
    return [mean - sd, mean, mean + sd]


def _point(mean: float, sd: float, where: str = "p") -> Comparison:
    return Comparison(where, [0.5 + d for d in _diffs(mean, sd)], [0.5] * 3)


def test_partial_statuses_say_which_way_the_resolved_points_go():
    def status(*points):
        return compare("c", points, expect="lower", names=("x", "y")).status

    far_below, far_above, noisy = _point(-0.2, 0.005), _point(0.2, 0.005), _point(-0.05, 0.1)
    assert status(far_below, noisy) == "partly holds"  # one resolved below, one unresolved
    assert status(far_above, _point(0.05, 0.1)) == "partly does not hold"  # nothing supports the claim
    assert status(far_below, far_above, noisy) == "mixed"
    assert status(far_below, _point(-0.3, 0.01)) == "holds" and status(noisy) == "inconclusive"
    assert {"partly holds", "partly does not hold", "mixed", "indicative: mixed"} <= set(STATUSES)


def test_points_resolve_at_p_below_005_after_holm_over_the_claim():
    # two points at raw p 0.03 and 0.04 (3 seeds each): each resolves alone, but Holm over the claim gives both
    # 2 x 0.03 = 0.06 and max(0.06, 1 x 0.04) = 0.06: neither resolves together
    def at_p(p: float, where: str) -> Comparison:
        t = sps.t.isf(p / 2, 2)
        return _point(-t * 0.01 / math.sqrt(3), 0.01, where)

    a, b = at_p(0.03, "a"), at_p(0.04, "b")
    assert a.test.p == pytest.approx(0.03, abs=1e-12) and b.test.p == pytest.approx(0.04, abs=1e-12)
    assert compare("c", [a], expect="lower", names=("x", "y")).status == "holds"
    both = compare("c", [a, b], expect="lower", names=("x", "y"))
    assert both.status == "inconclusive" and both.evidence.count("Holm p 0.06") == 2
    # a third point far below: Holm multiplies its tiny p by 3 and the two others' by 2 and 1 -> still 0.06, 0.06
    far = _point(-0.2, 0.001, "far")
    assert compare("c", [a, b, far], expect="lower", names=("x", "y")).status == "partly holds"
    # the evidence gives the exact numbers of each point: mean difference, 95% CI, p, Holm p, n and seeds
    d = np.array(_diffs(-0.2, 0.001))
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    text = compare("c", [far], expect="lower", names=("x", "y")).evidence
    low, high = 100 * (d.mean() - half), 100 * (d.mean() + half)
    assert f"difference {100 * d.mean():.1f}% (95% CI {low:.1f}% to {high:.1f}%)" in text and "n 3 (seeds 0-2)" in text


def test_the_smallest_resolvable_difference_is_the_t_half_width_at_the_strictest_holm_level():
    noisy = [_point(-0.05, 0.1, "a"), _point(0.01, 0.2, "b")]  # 2 tested points: level 0.05 / 2
    v = compare("c", noisy, expect="lower", names=("x", "y"))
    expected = sps.t.ppf(1 - 0.025 / 2, 2) * 0.1 / math.sqrt(3)  # the smaller sd gives the smaller figure
    assert v.status == "inconclusive"
    assert f"Smallest difference these seeds could resolve: ±{100 * expected:.1f}% (a;" in v.evidence


def test_a_smallest_resolvable_share_over_100_points_says_it_is_out_of_reach():
    v = compare("c", [_point(0.3, 0.6, "wide")], expect="lower", names=("x", "y"))  # t(0.975, 2) x 0.6 / sqrt 3 > 1
    assert v.status == "inconclusive" and "(over 100 points: out of reach)" in v.evidence
    near = compare("c", [_point(0.01, 0.1, "near")], expect="lower", names=("x", "y"))
    assert "out of reach" not in near.evidence  # 43 points: within the scale


def test_the_claims_smallest_resolvable_difference_skips_points_whose_differences_do_not_vary():
    # point "same": three equal differences of 0 (sd 0, p undefined -> unresolved, resolvable 0): not informative
    same = Comparison("same", [0.4, 0.5, 0.6], [0.4, 0.5, 0.6])
    v = compare("c", [same, _point(0.01, 0.1, "b")], expect="higher", names=("x", "y"))
    assert v.status == "inconclusive" and "Smallest difference these seeds could resolve" in v.evidence
    assert "(b; t at the strictest Holm" in v.evidence and "(same; t at" not in v.evidence
    alone = compare("c", [same], expect="higher", names=("x", "y"))  # nothing else: the 0 is all there is
    assert "±0.0% (same; t at the strictest Holm" in alone.evidence


def _curve(xs, ys, seeds=(0,), jitter=0.0) -> Curve:
    """A curve whose seed s reads ``y + jitter * (s - mean seed)`` at every x."""
    mid = sum(seeds) / len(seeds)
    return Curve(xs, [{s: y + jitter * (s - mid) * (1 + i) for s in seeds} for i, y in enumerate(ys)])


def test_trend_and_spearman():
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [1, 1, 1]))
    xs = [0.1, 0.5, 1.0]
    down = {"a": _curve(xs, [0.3, 0.2, 0.1]), "b": _curve(xs, [0.4, 0.3, 0.2])}
    assert trend("t", down, expect="decreasing").status == "indicative: holds"
    assert trend("t", down, expect="increasing").status == "indicative: does not hold"
    half = {**down, "c": _curve(xs, [0.1, 0.3, 0.2])}  # rises overall
    assert trend("t", half, expect="decreasing").status == "indicative: mixed"
    seeds3 = {k: _curve(xs, ys, (0, 1, 2), 0.005) for k, ys in (("a", [0.3, 0.2, 0.1]), ("b", [0.4, 0.3, 0.2]))}
    assert trend("t", seeds3, expect="decreasing").status == "holds"  # end points far apart on every seed
    wide = {k: _curve(xs, ys, (0, 1, 2), 0.2) for k, ys in (("a", [0.3, 0.2, 0.1]), ("b", [0.4, 0.3, 0.2]))}
    assert trend("t", wide, expect="decreasing").status == "inconclusive"  # the end-point differences scatter


def test_a_trend_counts_the_seeds_that_move_the_claimed_way_at_every_step():
    # seeds 0 and 1 fall at every step; seed 2 falls overall but rises from x 0.5 to 1.0; a tie is no step down
    values = [{0: 0.30, 1: 0.32, 2: 0.31}, {0: 0.20, 1: 0.21, 2: 0.10}, {0: 0.10, 1: 0.21, 2: 0.12}]
    v = trend("t", {"a": Curve([0.1, 0.5, 1.0], values)}, expect="decreasing")
    assert "decreasing at every step on 1 of 3 seeds" in v.evidence  # seed 1 ties at the last step
    up = trend("t", {"a": Curve([0.1, 0.5, 1.0], values)}, expect="increasing")
    assert "increasing at every step on 0 of 3 seeds" in up.evidence
    assert v.status == "holds"  # descriptive only: the end points and the means' ranks decide


def test_a_trend_tests_the_end_points_on_the_seeds_matched_along_the_curve():
    # seed 3 did not learn at x = 0.5 (absent there): it leaves the whole curve, the end points included
    values = [{0: 0.30, 1: 0.32, 2: 0.31, 3: 0.90}, {0: 0.2, 1: 0.21, 2: 0.2}, {0: 0.10, 1: 0.13, 2: 0.11, 3: 0.95}]
    v = trend("t", {"a": Curve([0.1, 0.5, 1.0], values, ("x seed 3 did not learn (…)",))}, expect="decreasing")
    first, last = np.array([0.30, 0.32, 0.31]), np.array([0.10, 0.13, 0.11])
    assert v.status == "holds" and "n 3 (seeds 0-2)" in v.evidence
    p = sps.ttest_rel(last, first).pvalue
    assert p < 0.001 and f"p {p:.1e}, Holm p {p:.1e}" in v.evidence  # one curve: Holm changes nothing
    assert "seed 3: no number (did not learn, or undefined) at x = 0.5" in v.evidence
    assert "x seed 3 did not learn" in v.evidence


def test_aggregate_mean_std_over_seeds_and_markdown():
    frame = pd.DataFrame({"g": ["a", "a", "b"], "asr_self": [0.2, 0.4, 0.5], "seed": [0, 1, 0]})
    agg = aggregate(frame, ["g"], ["asr_self"]).set_index("g")
    assert agg.loc["a", "asr_self_mean"] == pytest.approx(0.3)
    assert agg.loc["a", "asr_self_std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert math.isnan(agg.loc["b", "asr_self_std"]) and agg.loc["a", "seeds"] == 2
    md = markdown_table(pd.DataFrame({"x": ["a|b"], "y": ["1"]}))
    assert md.splitlines() == ["| x | y |", "|---|---|", "| a\\|b | 1 |"]


def test_task_all_takes_the_paper_tasks_whose_data_is_present(tmp_path):
    tasks, skipped = expand_tasks(["all", "synthetic"], Options(overrides=(f"task.data_root={tmp_path / 'no'}",)))
    assert tasks == ("synthetic",) and set(skipped) == set(PAPER_TASKS)
    assert all(str(tmp_path / "no") in why for why in skipped.values())
    tasks, skipped = expand_tasks(["all"], Options(overrides=(f"task.data_root={tmp_path}",)))
    assert tasks == PAPER_TASKS and not skipped


def test_each_fedsafe_table1_table_names_only_its_own_runs_that_did_not_learn():
    def metric(m, k):
        return 0.5

    def learned(m, seed):  # only the leaky adversarial training stayed at the majority class
        return m.tag()["method"] != "adversarial training, LEAKY"

    built = REPRODUCTIONS["fedsafe-table1"].build(
        _fake("fedsafe-table1", "meningioma", metric, seeds=3, learned=learned))
    titles = ("Fed-Safe Table 1", "The authors'", "Clean accuracy", "SENSITIVITY")
    main, leaky, accuracy, sensitivity = (next(t for t in built.tables if t.title.startswith(w)) for w in titles)

    def names_it(t):
        return any("did not learn" in n and "adversarial training, LEAKY seed 0" in n for n in t.notes)

    assert names_it(leaky) and names_it(accuracy)  # the tables that show the run name it ...
    assert not names_it(main) and not names_it(sensitivity)  # ... the others do not (it is not in them)
    assert not any("did not learn (" in n for n in main.notes + sensitivity.notes)


def test_fedsafe_table1_runs_a_labelled_dirichlet_sensitivity_beside_the_papers_split():
    p = plan(["fedsafe-table1"], tasks=["synthetic"], results="unused-results",
             options=Options(quick=True, overrides=FS_TINY, sanity=False))
    parts = {n.split("/", 1)[1]: r.cfg.splits for r in p.runs.values() for n in r.names}
    sens = {m: s for m, s in parts.items() if m.endswith("[Dirichlet 0.5]")}
    assert len(sens) == 3 and len(parts) == 8
    assert {(s.partition, s.dirichlet_alpha) for s in sens.values()} == {("dirichlet", 0.5)}
    assert {s.partition for m, s in parts.items() if m not in sens} == {"shards"}


def test_the_papers_pathology_row_is_named_where_it_is_not_run():
    from fedsafe.reproduce.outputs import pathology_note

    note = pathology_note("fed-safe", "fedsafe-table1", "glioma", data_found=False)
    assert "is not on the machine these results come from" in note
    assert "`fedsafe reproduce fedsafe-table1 --task pcam --set task.data_root=DIR --set task.image_size=96 " in note
    assert "were found on this machine" in pathology_note("crn", "crn-fig2", "meningioma", data_found=True)
    # the control: no note on PCam itself, on tasks the papers do not have, or for the demo
    assert [pathology_note(p, "x", t, data_found=False) for p, t in
            [("crn", "pcam"), ("crn", "synthetic"), ("fed-safe", "breastmnist"), ("demo", "meningioma")]] == [None] * 4
