"""Every fault of a run's own files named (design §12): model files swapped within the run, damaged JSON
recomputed or named (never read as empty, never taken for a complete run), and a run stopped early said to be
so."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from fedsafe.build import prepare_data
from fedsafe.cli import app
from fedsafe.config import config_hash, load_config
from fedsafe.evaluation.run_context import load_context
from fedsafe.runs import open_run
from fedsafe.runs.errors import RunFileError, RunIncomplete
from fedsafe.runs.store import RunStore
from fedsafe.training.trainer import train

TINY = ["task.image_size=16", "task.synthetic_size=300", "model.width=0.04", "splits.client_test_size=20",
        "train.local_epochs=1", "train.rounds=3", "train.precision=fp32", "federation.downlink_noise=0.01",
        "federation.keep_received_rounds=3", "threads=1"]
SETS = sum([["--set", o] for o in TINY], [])


def _flat(text: str) -> str:
    return " ".join(text.split())


def _store(run) -> RunStore:
    return RunStore(run, config_hash=config_hash(load_config(overrides=TINY)))


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    run = tmp_path_factory.mktemp("done") / "run"
    train(load_config(overrides=TINY), run)
    return run


@pytest.fixture
def run(done, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(done, copy)
    return copy


def test_swapped_client_models_are_refused(run):
    final = run / "models" / "final"
    a, b = (final / "client_000.pt").read_bytes(), (final / "client_001.pt").read_bytes()
    (final / "client_000.pt").write_bytes(b)
    (final / "client_001.pt").write_bytes(a)
    with pytest.raises(RunFileError, match="client_000.pt: holds the model of client 1, not of client 0: model "
                                           "files were swapped or copied within the run"):
        load_context(open_run(run))
    r = CliRunner().invoke(app, ["attack", str(run), "--no-sanity", "--steps", "1"])
    assert r.exit_code == 1 and r.output.count("error:") == 1 and "holds the model of client 1" in _flat(r.output)


def test_a_received_copy_of_another_round_is_refused(run):
    store = _store(run)
    shutil.copy(store.layout.received(3, 0), store.layout.received(2, 0))  # round 3's copy over round 2's
    assert len(store.received_window(1, range(2, 4))) == 2  # another client's window is intact
    with pytest.raises(RunFileError, match=r"round_0002/client_000.pt: holds the model of round 3, not of round 2"):
        store.received_window(0, range(2, 4))  # what a CRN replay over the last 2 rounds reads
    shutil.copy(store.layout.received(3, 1), store.layout.received(3, 0))  # another client's copy of the same round
    with pytest.raises(RunFileError, match=r"round_0003/client_000.pt: holds the model of client 1, not of client 0"):
        store.load_received(3, 0)
    shutil.copy(store.layout.global_model(1), store.layout.global_model(2))
    with pytest.raises(RunFileError, match=r"round_0002.pt: holds the model of round 1, not of round 2"):
        store.load_global(2)


def test_a_resumes_checkpoint_of_another_round_or_run_is_refused(tmp_path):
    cfg = load_config(overrides=TINY)
    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg, a, stop_after=2)
    train(cfg, b, stop_after=2, data=prepare_data(load_config(overrides=[*TINY, "seed=1"])))  # same config hash
    shutil.copy(b / "checkpoint.pt", a / "checkpoint.pt")
    (a / "checkpoint.prev.pt").unlink()
    with pytest.raises(RunFileError, match=r"checkpoint.pt: holds round 2, but not the global model of "
                                           r".*round_0002.pt: a checkpoint of another round or a swapped model file"):
        _store(a).load_checkpoint()
    r = CliRunner().invoke(app, ["train", "--run-dir", str(a), *SETS])
    assert r.exit_code == 1 and "holds round 2, but not the global model" in _flat(r.output)
    assert not (a / "summary.json").exists()


def test_a_damaged_summary_is_recomputed_not_taken_as_complete(run, done, caplog):
    (run / "summary.json").write_text('{"global_acc": 0.9, "lear')
    r = CliRunner().invoke(app, ["attack", str(run), "--no-sanity", "--steps", "1"])
    assert r.exit_code == 1 and "summary.json: not valid JSON" in _flat(r.output) and "recomputes it" in \
        _flat(r.output)
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), *SETS])
    assert r.exit_code == 0, r.output
    assert "already complete" not in _flat(r.output) and "summary.json: damaged" in caplog.text
    new, old = (json.loads((p / "summary.json").read_text()) for p in (run, done))
    assert new["resumed_from_round"] == 3
    assert {k: new[k] for k in ("global_acc", "client_final_acc", "learned")} == \
        {k: old[k] for k in ("global_acc", "client_final_acc", "learned")}
    ours, ref = _store(run), _store(done)
    for c in range(3):
        a, b = ours.load_final(c), ref.load_final(c)
        assert all(torch.equal(a[k], b[k]) for k in a)
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), *SETS])
    assert r.exit_code == 0 and "already complete: nothing to do" in _flat(r.output)


def test_an_audit_of_a_damaged_privacy_report_names_the_file_and_train_recomputes_it(run, done):
    path = run / "privacy_report.json"
    path.write_bytes(path.read_bytes()[:200])
    r = CliRunner().invoke(app, ["audit", str(run), "--dry-run"])
    assert r.exit_code == 1 and r.output.count("error:") == 1
    assert f"{path}:notvalidJSON" in "".join(r.output.split()) and "epsilon" not in r.output
    with pytest.raises(RunFileError, match="privacy_report.json: not valid JSON"):
        _ = open_run(run).privacy
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), *SETS])
    assert r.exit_code == 0, r.output
    assert json.loads(path.read_text()) == json.loads((done / "privacy_report.json").read_text())
    assert open_run(run).epsilon() == open_run(done).epsilon()


def test_a_damaged_metrics_file_is_named_by_the_reader_and_recomputed_from_the_checkpoint(run, done):
    (run / "metrics.json").write_text("[{")
    with pytest.raises(RunFileError, match="metrics.json: not valid JSON"):
        _ = open_run(run).metrics
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), *SETS])
    assert r.exit_code == 0, r.output
    strip = [{k: v for k, v in m.items() if "seconds" not in k} for m in open_run(done).metrics]
    assert [{k: v for k, v in m.items() if "seconds" not in k} for m in open_run(run).metrics] == strip


def test_an_attack_on_a_run_stopped_early_says_how_far_it_got(tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--stop-after", "1", *SETS])
    assert r.exit_code == 0, r.output
    for cmd in (["attack", str(run), "--no-sanity"], ["audit", str(run), "--dry-run"]):
        r = CliRunner().invoke(app, cmd)
        msg = _flat(r.output)
        assert r.exit_code == 1 and r.output.count("error:") == 1, r.output
        assert "the run is not complete (round 1 of 3)" in msg and "client_000.pt" not in msg
    # a run killed before its first round ended
    (run / "checkpoint.pt").unlink()
    (run / "checkpoint.prev.pt").unlink(missing_ok=True)
    with pytest.raises(RunIncomplete, match=r"the run is not complete \(round 0 of 3\)"):
        load_context(open_run(run))
