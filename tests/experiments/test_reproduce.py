"""Reproductions: plans share trainings, an interrupted reproduction resumes and ends equal to an uninterrupted
one, builders put the papers' numbers beside ours, and verdicts follow their rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from fedsafe.experiments.reproduce import (
    METRICS,
    REPRODUCTIONS,
    BuildInput,
    Options,
    aggregate,
    execute,
    markdown_table,
    plan,
)
from fedsafe.experiments.verdicts import STATUSES, Comparison, compare, spearman, trend

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
    assert p.cost(None)["runs_to_train"] == 2  # one of the three runs was complete when the plan was made

    b = tmp_path / "uninterrupted"
    _fs_table1(b)
    folder = "fedsafe-table1/synthetic"
    for name in ("summary.csv", "rows.csv"):
        pd.testing.assert_frame_equal(_comparable(a / folder / name), _comparable(b / folder / name))
    assert (a / folder / "fedsafe-table1.md").read_text().count("QUICK") >= 2

    again = plan(["fedsafe-table1"], tasks=["synthetic"], results=a,
                 options=Options(quick=True, overrides=FS_TINY, sanity=False))
    assert again.cost(None)["runs_to_train"] == 0 and again.cost(None)["evaluations_to_run"] == 0


def test_outputs_of_a_reproduction(tmp_path):
    _, (w,) = _fs_table1(tmp_path)
    manifest = json.loads(w.manifest.read_text())
    assert manifest["quick"] and manifest["synthetic"] and manifest["task"] == "synthetic"
    for f in ("rows.csv", "summary.csv", "table.csv", "verdicts.json", "table1.png", "table1.svg"):
        assert (w.folder / f).is_file(), f
    rows = pd.read_csv(w.folder / "rows.csv")
    assert len(rows) == 3 * 4 * 3 * 3  # trainings x steps x attackers x targets
    assert {"attacker", "target", "asr", "aetr", "method", "step"} <= set(rows.columns)
    assert {v["status"] for v in manifest["verdicts"]} <= set(STATUSES)
    assert manifest["heatmaps"] and len(manifest["heatmaps"][0]["matrix"]) == 3


def test_reproductions_share_their_trainings():
    p = plan(["all"], tasks=["synthetic"], results="unused-results", options=Options(quick=True, overrides=TINY))
    assert len(p.runs) == 15  # 3 (Table 1) + 1 (DP) + 10 (Figure 3 but f = 1) + 1 (CRN)
    names = sorted(run.names for run in p.runs.values())
    assert ("crn-table1/crn", "crn-table2/crn", "crn-fig2/crn", "crn-fig3/crn") in names
    assert any("fedsafe-table2/no DP" in n and "fedsafe-table1/distributed noise (Fed-Safe)" in n for n in names)
    cost = p.cost(0)
    assert cost["runs_to_train"] == 15 and cost["evaluations"] == len(p.evaluations(0)) > 0
    assert "15 training run(s)" in "\n".join(p.describe())
    two = plan(["crn-table1"], tasks=["synthetic"], results="unused-results",
               options=Options(quick=True, overrides=TINY, seeds=2))
    assert len(two.runs) == 2 and {r.seed for r in two.runs.values()} == {0, 1}


def test_a_missing_task_names_its_path_and_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="/nonexistent/mri"):
        plan(["crn-table1"], tasks=["meningioma"], results="unused",
             options=Options(overrides=("task.data_root=/nonexistent/mri",)))
    with pytest.raises(ValueError, match="crn-table1"):
        plan(["crn-table9"], tasks=["synthetic"], results="unused")


# -- builders on made-up measurements ---------------------------------------------------------------------------


def _fake(rep_name: str, task: str, metric, seeds: int = 2) -> BuildInput:
    rep = REPRODUCTIONS[rep_name]
    rows = []
    for seed in range(seeds):
        for m in rep.measurements(seed):
            s = m.spec
            row = {"training": m.training, **m.tag(), "label": s.label, "attack": s.attack, "eps": s.eps,
                   "alpha": s.alpha, "steps": s.steps, "start": s.start, "seed": seed,
                   "fb_passes_per_image": s.steps, "crn_passes_per_image": 50 if s.window else 0,
                   "start_source": "x", "epsilon": math.inf}
            row.update({k: metric(m, k) + 0.01 * seed for k in METRICS})
            rows.append(row)
    return BuildInput(reproduction=rep, task=task, options=Options(seeds=seeds), summary=pd.DataFrame(rows), runs={})


def test_crn_table1_beside_the_paper_with_spread_over_seeds():
    def metric(m, k):
        crn = m.spec.window is not None
        return {"aasr": 0.7 if crn else 0.3, "seconds_per_batch": 0.01 if crn else 1.0}.get(k, 0.5)

    built = REPRODUCTIONS["crn-table1"].build(_fake("crn-table1", "meningioma", metric))
    table = built.tables[0].frame
    assert table.attack.tolist() == ["PGD-1+CRN10", "PGD-20", "PGD-40"]
    assert table["AASR (paper)"].tolist() == ["63.92%", "27.52%", "32.99%"]
    assert "±" in table["AASR"].iloc[0]
    assert built.verdicts[0].claim.startswith("PGD-1+CRN10 beats PGD-40") and built.verdicts[0].status == "holds"


def test_fedsafe_table1_verdicts_follow_the_numbers():
    def metric(m, k):  # distributed noise lower than adversarial training at 3 of the 4 steps
        method, step = m.tag()["method"], m.tag()["step"]
        if k == "asr_avg_benign":
            return {"no defense (FedAvg)": 0.6, "adversarial training": 0.3}.get(method, 0.2 if step != 0.05 else 0.4)
        return 0.5

    built = REPRODUCTIONS["fedsafe-table1"].build(_fake("fedsafe-table1", "meningioma", metric, seeds=1))
    table = built.tables[0].frame
    assert table["(paper)"].iloc[0] == "0.12 / 0.05"  # MRI, step 0.005, adversarial training
    dn_vs_at = built.verdicts[0]
    assert dn_vs_at.status == "partly" and "3 of 4" in dn_vs_at.evidence


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
@pytest.mark.parametrize("task", ["meningioma", "glioma", "breastmnist"])
def test_every_builder_runs_and_says_where_the_paper_has_no_number(name, task):
    rng = np.random.default_rng(0)
    built = REPRODUCTIONS[name].build(_fake(name, task, lambda m, k: float(rng.uniform(0.05, 0.95))))
    assert built.tables and all(len(t.frame) for t in built.tables) and built.figures
    assert all(v.status in STATUSES for v in built.verdicts)
    text = " ".join(n for t in built.tables for n in t.notes)
    if task == "breastmnist":
        assert "no" in text and "numbers" in text


# -- verdicts, aggregation, tables ------------------------------------------------------------------------------


def test_compare_statuses():
    lower = [Comparison("a", 0.1, 0.2), Comparison("b", 0.1, 0.3)]
    assert compare("c", lower, expect="lower", names=("x", "y")).status == "holds"
    assert compare("c", lower, expect="higher", names=("x", "y")).status == "does not hold"
    mixed = [*lower, Comparison("c", 0.5, 0.2), Comparison("d", math.nan, 0.2)]
    v = compare("c", mixed, expect="lower", names=("x", "y"))
    assert v.status == "partly" and "2 of 3" in v.evidence and "1 undefined" in v.evidence
    assert compare("c", [Comparison("a", math.nan, 1.0)], expect="lower", names=("x", "y")).status == "undetermined"
    noisy = compare("c", [Comparison("a", 0.10, 0.12, 0.05, 0.01)], expect="lower", names=("x", "y"))
    assert "within one std" in noisy.evidence


def test_trend_and_spearman():
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [1, 1, 1]))
    down = {"a": ([0.1, 0.5, 1.0], [0.3, 0.2, 0.1]), "b": ([0.1, 0.5, 1.0], [0.4, 0.3, 0.2])}
    assert trend("t", down, expect="decreasing").status == "holds"
    assert trend("t", down, expect="increasing").status == "does not hold"
    half = {**down, "c": ([0.1, 0.5, 1.0], [0.1, 0.3, 0.2])}  # rises overall: counts 0
    assert trend("t", half, expect="decreasing").status == "partly"


def test_aggregate_mean_std_over_seeds_and_markdown():
    frame = pd.DataFrame({"g": ["a", "a", "b"], "asr_self": [0.2, 0.4, 0.5], "seed": [0, 1, 0]})
    agg = aggregate(frame, ["g"], ["asr_self"]).set_index("g")
    assert agg.loc["a", "asr_self_mean"] == pytest.approx(0.3)
    assert agg.loc["a", "asr_self_std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert math.isnan(agg.loc["b", "asr_self_std"]) and agg.loc["a", "seeds"] == 2
    md = markdown_table(pd.DataFrame({"x": ["a|b"], "y": ["1"]}))
    assert md.splitlines() == ["| x | y |", "|---|---|", "| a\\|b | 1 |"]


def test_task_all_takes_the_paper_tasks_whose_data_is_present(tmp_path):
    from fedsafe.experiments.reproduce import PAPER_TASKS, expand_tasks

    tasks, skipped = expand_tasks(["all", "synthetic"], Options(overrides=(f"task.data_root={tmp_path / 'no'}",)))
    assert tasks == ("synthetic",) and set(skipped) == set(PAPER_TASKS)
    assert all(str(tmp_path / "no") in why for why in skipped.values())
    tasks, skipped = expand_tasks(["all"], Options(overrides=(f"task.data_root={tmp_path}",)))
    assert tasks == PAPER_TASKS and not skipped
