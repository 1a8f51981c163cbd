import json

import torch
from typer.testing import CliRunner

from fedsafe.cli import app
from fedsafe.federation.state import max_abs_diff
from fedsafe.runs.atomic import torch_load


def _state(path):
    return torch_load(path)["state"]

TINY = ["--set", "task.image_size=16", "--set", "task.synthetic_size=300", "--set", "model.width=0.04",
        "--set", "splits.client_test_size=20", "--set", "train.local_epochs=1", "--set", "train.rounds=2",
        "--set", "train.precision=fp32", "--set", "federation.downlink_noise=0.01"]


def test_train_writes_a_complete_run_directory_and_skips_when_complete(tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "-o", str(run), *TINY])
    assert r.exit_code == 0, r.output
    assert "[synthetic]" in r.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["synthetic"] is True and summary["profile"] == "cpu" and summary["precision"] == "fp32"
    assert 0.0 <= summary["global_acc"] <= 1.0
    privacy = json.loads((run / "privacy_report.json").read_text())
    assert privacy["sigma_downlink"] == 0.01 and privacy["noise"] == "hand-set"
    assert privacy["defense_cost"]["server"]["passes"] == 0 and privacy["defense_cost"]["clients"]["passes"] > 0
    report = json.loads((run / "data_report.json").read_text())
    assert report["synthetic"] is True and set(report["splits"]) >= {"global_test", "server"}
    assert (run / "models" / "final" / "client_002.pt").is_file()
    again = CliRunner().invoke(app, ["train", "-o", str(run), *TINY])
    assert again.exit_code == 0 and "already complete" in " ".join(again.output.split())


def test_stop_after_then_resume_matches_a_straight_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert CliRunner().invoke(app, ["train", "-o", str(a), *TINY]).exit_code == 0
    assert CliRunner().invoke(app, ["train", "-o", str(b), "--stop-after", "1", *TINY]).exit_code == 0
    assert not (b / "summary.json").exists()
    r = CliRunner().invoke(app, ["train", "-o", str(b), *TINY])
    assert r.exit_code == 0, r.output
    assert json.loads((b / "summary.json").read_text())["resumed_from_round"] == 1
    for c in range(3):
        assert max_abs_diff(_state(a / "models/final" / f"client_{c:03d}.pt"),
                            _state(b / "models/final" / f"client_{c:03d}.pt")) == 0.0
    assert isinstance(torch_load(a / "checkpoint.pt")["global_state"], dict)
    assert torch.is_tensor(next(iter(_state(a / "models/global/round_0002.pt").values())))


def test_bad_inputs_are_one_line_errors(tmp_path):
    r = CliRunner().invoke(app, ["train", "-o", str(tmp_path / "x"), "--set", "train.lr_rate=1"])
    assert r.exit_code == 1 and "unknown key 'train.lr_rate'" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["train", "-o", str(tmp_path / "x"), "--task", "meningioma",
                                 "--data-root", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "missing" in r.output
    # a run directory holding another config is refused, nothing in it is touched
    run = tmp_path / "run"
    assert CliRunner().invoke(app, ["train", "-o", str(run), *TINY]).exit_code == 0
    before = (run / "summary.json").read_bytes()
    r = CliRunner().invoke(app, ["train", "-o", str(run), *TINY, "--set", "seed=5"])
    assert r.exit_code == 1 and "different config" in " ".join(r.output.split())
    assert (run / "summary.json").read_bytes() == before
