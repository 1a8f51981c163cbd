"""The noise's norms beside the model (fedsafe.privacy.noise_scale): the formula against noise actually drawn and
averaged as FedAvg averages it, the warning exactly where the received noise reaches the clip, and the run's
privacy report, the training log and `fedsafe privacy` reporting it."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from typer.testing import CliRunner

from fedsafe.build import model_factory, prepare_data
from fedsafe.cli import app
from fedsafe.config import load_config
from fedsafe.privacy.noise_scale import noise_scale
from fedsafe.training.trainer import train


@pytest.mark.parametrize(("weights", "s_u", "s_d"), [([1, 1, 1], 1.5, 0.0), ([300, 500, 200], 0.7, 0.2),
                                                       ([5, 1], 0.0, 0.3)])
def test_the_norms_are_those_of_noise_drawn_and_averaged(weights, s_u, s_d):
    d, draws = 20_000, 20
    g = torch.Generator().manual_seed(0)
    p = torch.tensor(weights, dtype=torch.float64) / sum(weights)
    received = []
    for _ in range(draws):  # sum_k p_k n_k (the uplinks, averaged) + the downlink noise of one client's copy
        ups = torch.randn(len(weights), d, generator=g, dtype=torch.float64) * s_u
        received.append(float(((p[:, None] * ups).sum(0) + s_d * torch.randn(d, generator=g, dtype=torch.float64))
                              .pow(2).sum()))
    scale = noise_scale(std_uplink=s_u, std_downlink=s_d, entries=d, weights=weights, clip=None)
    assert math.sqrt(sum(received) / draws) == pytest.approx(scale.received_norm, rel=0.01)
    assert scale.received_norm == pytest.approx(math.hypot(scale.averaged_uplink_norm, scale.downlink_norm))
    assert scale.received_to_clip is None and scale.warning() is None  # no clip: no bound on a model's norm


def test_the_warning_starts_where_the_received_noise_reaches_the_clip():
    base = dict(std_downlink=0.0, entries=10_000, weights=[1, 1, 1, 1])  # sqrt(d) sqrt(sum p^2) = 100 x 0.5 = 50
    below = noise_scale(std_uplink=0.99, clip=50.0, **base)
    at = noise_scale(std_uplink=1.0, clip=50.0, **base)
    assert below.received_to_clip == pytest.approx(0.99) and below.warning() is None
    assert at.received_to_clip == pytest.approx(1.0) and "times the clip C = 50" in at.warning()
    assert at.to_dict()["warning"] == at.warning() and below.to_dict()["warning"] is None


@pytest.mark.parametrize(("kw", "message"), [(dict(std_uplink=-1.0), "noise stds"), (dict(entries=0), "entry"),
                                             (dict(weights=[0, 0]), "weights"), (dict(clip=0.0), "clip")])
def test_bad_inputs_are_named(kw, message):
    args = dict(std_uplink=1.0, std_downlink=0.0, entries=10, weights=[1, 1], clip=1.0) | kw
    with pytest.raises(ValueError, match=message):
        noise_scale(**args)


SYN = ["task.name=synthetic", "task.image_size=16", "task.synthetic_size=150", "model.width=0.04",
       "splits.client_test_size=10", "train.local_epochs=1", "train.rounds=1", "train.precision=fp32", "threads=1"]


def test_a_run_records_its_noise_scale_and_warns_when_the_noise_swamps_the_clip(tmp_path, caplog):
    noisy = load_config(overrides=[*SYN, "federation.uplink_clip=5", "federation.uplink_noise=1.0"])
    with caplog.at_level(logging.WARNING, logger="fedsafe"):
        train(noisy, tmp_path / "noisy")
    model = model_factory(noisy, prepare_data(noisy), layout=False, device="cpu")()
    entries = sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    scale = json.loads((tmp_path / "noisy" / "privacy_report.json").read_text())["noise_scale"]
    assert scale["entries"] == entries and scale["clip"] == 5.0 and scale["received_to_clip"] > 1
    assert any("times the clip C = 5" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fedsafe"):
        train(load_config(overrides=SYN), tmp_path / "clean")
    clean = json.loads((tmp_path / "clean" / "privacy_report.json").read_text())["noise_scale"]
    assert clean["averaged_uplink_norm"] == 0 and clean["warning"] is None and clean["received_to_clip"] is None
    assert not any("times the clip" in r.getMessage() for r in caplog.records)


def test_fedsafe_privacy_prints_the_noise_beside_the_model():
    args = ["privacy", "account", "--sigma-up", "1.47", "--sigma-down", "0.01", "--clip", "59", "--m", "191",
            "--T", "20", "--N", "3", "--entries", "367936"]
    text = CliRunner().invoke(app, args, terminal_width=200)
    assert text.exit_code == 0, text.output
    assert "a client receives 514.84, 8.7261 x the clip C" in text.output and "Warning: the noise" in text.output
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    assert data["noise_scale"]["received_to_clip"] == pytest.approx(8.726, rel=1e-3)
    calibrated = CliRunner().invoke(app, ["privacy", "calibrate", "--epsilon", "10", "--clip", "59", "--m", "191",
                                          "--T", "20", "--N", "3", "--entries", "367936"], terminal_width=200)
    assert calibrated.exit_code == 0 and "The noise beside a model of D = 367936 entries" in calibrated.output
    # the accountants' own noise for epsilon 10 (NbAFL sensitivity, RDP: s_U 1.4633) leaves 8.69 x C of noise
    assert "noise / C" in calibrated.output and "│ 1.4633 │   0 │    8.6858 │" in calibrated.output
    assert "Warning" not in CliRunner().invoke(app, args[:-2]).output  # no --entries: no model to compare with


def test_the_audit_says_when_the_noise_swamps_the_model_and_older_runs_still_render():
    from fedsafe.audit.page import _privacy
    from fedsafe.audit.text import _privacy_sentence, privacy_facts

    scale = noise_scale(std_uplink=1.47, std_downlink=0.01, entries=367_936, weights=[1, 1, 1], clip=59.0)
    report = {"noise": "hand-set", "sigma_uplink": 1.47, "sigma_downlink": 0.01, "clip": 59.0, "delta": 1e-5,
              "sensitivities": {"nbafl": {"pld": {"epsilon": 9.3}}, "unconditional": {"pld": {"epsilon": 7e4}}},
              "dp": {"nbafl": "DP (epsilon 9.3)"}, "noise_scale": scale.to_dict()}
    facts = {"privacy": privacy_facts(report)}
    assert "At that price the noise a client receives each round has L2 norm 515, 8.7" in _privacy_sentence(facts)
    assert "L2 norm 515, 8.73 x the clip C (model of 367936 entries)" in "".join(_privacy(facts))
    older = {"privacy": privacy_facts({k: v for k, v in report.items() if k != "noise_scale"})}
    assert "At that price" not in _privacy_sentence(older) and "clip C (model" not in "".join(_privacy(older))


def test_table2_shows_the_noise_over_the_clip_recorded_or_recomputed_for_older_runs(tmp_path):
    from types import SimpleNamespace

    from fedsafe.reproduce.reproductions.fedsafe_table2 import _noise_over_clip
    from fedsafe.runs.run import open_run

    train(load_config(overrides=[*SYN, "federation.uplink_clip=5", "federation.uplink_noise=1.0"]), tmp_path / "n")
    train(load_config(overrides=SYN), tmp_path / "clean")
    report = tmp_path / "n" / "privacy_report.json"
    recorded = json.loads(report.read_text())

    def shown(run_dir):
        return _noise_over_clip(SimpleNamespace(runs={"arm": open_run(run_dir)}), "arm")

    now = shown(tmp_path / "n")
    assert float(now) == pytest.approx(recorded["noise_scale"]["received_to_clip"], rel=1e-2) and float(now) > 1
    report.write_text(json.dumps({k: v for k, v in recorded.items() if k != "noise_scale"}))  # an older run's report
    assert shown(tmp_path / "n") == now  # recomputed from its config's model and its report's noise
    assert shown(tmp_path / "clean") == "no clip" and _noise_over_clip(SimpleNamespace(runs={}), "arm") == "n/a"
