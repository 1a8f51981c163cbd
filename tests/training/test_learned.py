"""Did a run learn? (design §11.3): the global model and every attacked client model (each client's final model
on its own test set) must clear the majority-class rate by 2 points; the summary records per-client accuracy,
majority rate and flag, and the reason; summaries written before these fields still read."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fedsafe.build import federation_spec, model_factory, prepare_data
from fedsafe.config import load_config
from fedsafe.reproduce.reproductions.format import arms, compare_rows, why_not_learned
from fedsafe.training.trainer import learn_check, run_summary, summary_learned

TINY = ["task.name=synthetic", "task.image_size=16", "task.synthetic_size=150", "model.width=0.04",
        "splits.client_test_size=20", "train.rounds=1"]


def test_a_client_model_at_the_majority_class_flags_the_run_although_the_global_model_learned():
    check = learn_check(0.90, 0.724, [0.88, 0.719, 0.93], [0.60, 0.724, 0.55])
    assert not check.learned and check.client_learned == (True, False, True)
    assert check.reason == "client 1's model 71.9% vs majority 72.4%"
    # the margin is 2 points above the majority rate, on each model's own test set
    assert learn_check(0.90, 0.70, [0.745, 0.80], [0.725, 0.70]).learned is False
    assert learn_check(0.90, 0.70, [0.746, 0.80], [0.725, 0.70]).learned is True
    both = learn_check(0.71, 0.70, [math.nan, 0.9], [0.5, 0.5])
    assert both.reason == "global model 71.0% vs majority 70.0%; client 0's model n/a vs majority 50.0%"
    assert learn_check(0.9, 0.7, None, [0.5, 0.5]).learned is True  # no client numbers: the global model alone
    with pytest.raises(ValueError, match="2 client accuracies for 3 clients"):
        learn_check(0.9, 0.7, [0.9, 0.9], [0.5, 0.5, 0.5])


def test_the_summary_records_each_client_model_and_why_the_run_did_not_learn():
    cfg = load_config(overrides=TINY)
    data = prepare_data(cfg, device="cpu")
    spec = federation_spec(cfg, data, device="cpu")
    model = model_factory(cfg, data, device="cpu")()
    majorities = [float(np.bincount(s.y.numpy()).max()) / len(s.y) for s in data.client_test]  # independent
    finals = [0.99, majorities[1] + 0.01, 0.99]  # client 1 within 2 points of its majority class
    metrics = [{"round": 1, "global_acc": 0.99}, {"round": 1, "client_final_acc": finals}]
    s = run_summary(cfg, data, spec, model, metrics, seconds=1.0, resumed_from=0)
    assert s["client_majority_class_rate"] == pytest.approx(majorities)
    assert s["learned"] is False and s["client_learned"] == [True, False, True]
    assert s["learned_reason"] == f"client 1's model {100 * finals[1]:.1f}% vs majority {100 * majorities[1]:.1f}%"
    assert s["global_acc"] == 0.99  # the global model learned: the client model alone flags the run
    ok = run_summary(cfg, data, spec, model, [{"round": 1, "global_acc": 0.99, "client_final_acc": [0.99] * 3}],
                     seconds=1.0, resumed_from=0)
    assert ok["learned"] is True and ok["learned_reason"] == ""


def test_summaries_without_the_new_fields_still_read():
    old = {"seed": 1, "global_acc": 0.719, "majority_class_rate": 0.727, "learned": False}
    assert why_not_learned(old) == "global model 71.9% vs majority class 72.7%"
    new = {**old, "learned_reason": "client 2's model 71.9% vs majority 72.4%"}
    assert why_not_learned(new) == "client 2's model 71.9% vs majority 72.4%"
    assert why_not_learned({**old, "learned_reason": math.nan}) == why_not_learned(old)  # a CSV's empty cell
    # a summary.csv without any learning columns: every run counts as learned
    frame = pd.DataFrame({"training": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "asr_self": [0.1, 0.2, 0.3, 0.5]})
    idx = arms(frame, ["training"], ["asr_self"])
    point = compare_rows("x", idx["a"], idx["b"], "asr_self")
    assert point.seeds == (0, 1) and point.difference == pytest.approx(-0.25) and not point.left_out


def test_an_older_summary_is_judged_again_on_its_client_models_from_the_data_report():
    old = {"global_acc": 0.85, "majority_class_rate": 0.72, "learned": True, "client_final_acc": [0.9, 0.73, 0.8]}
    report = {"splits": {"client0_test": {"no tumour": 30, "tumour": 70}, "client1_test": {"no tumour": 28,
                                                                                            "tumour": 72},
                         "client2_test": {"no tumour": 50, "tumour": 50}}}
    check = summary_learned(old, report)  # client 1's model: 73.0% against its majority 72.0%
    assert not check.learned and check.reason == "client 1's model 73.0% vs majority 72.0%"
    assert summary_learned(old, {}).learned is True  # no class counts: the global model alone, as recorded
    assert summary_learned({"learned": False}, report).learned is False  # nothing to judge: the recorded flag
    new = {**old, "learned": True, "learned_reason": "", "client_learned": [True, True, True]}
    assert summary_learned(new, report).learned is True  # a summary with the new fields is read as written
