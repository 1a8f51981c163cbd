"""Nothing lost, nothing silent (design §12): files of another run, damaged files, stale temporary files,
concurrent writers, and JSON that is always valid."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from fedsafe.cli import app
from fedsafe.config import load_config
from fedsafe.evaluation.run_context import load_context
from fedsafe.federation.hooks import Hooks
from fedsafe.runs import open_run
from fedsafe.runs.atomic import write_json
from fedsafe.runs.store import RunFileError, RunLockedError, RunStore
from fedsafe.training.trainer import train

TINY = ["task.image_size=16", "task.synthetic_size=300", "model.width=0.04", "splits.client_test_size=20",
        "train.local_epochs=1", "train.rounds=3", "train.precision=fp32", "federation.downlink_noise=0.01",
        "threads=1"]


def _cfg(*extra):
    return load_config(overrides=[*TINY, *extra])


def _flat(text: str) -> str:
    return " ".join(text.split())


def _cli_train(run, *extra):
    args = ["train", "--run-dir", str(run)]
    for o in (*TINY, *extra):
        args += ["--set", o]
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    """Two complete runs of the tiny config, seeds 0 and 1."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        train(_cfg(f"seed={seed}"), root / f"seed{seed}")
    return root


def test_a_checkpoint_copied_from_another_run_is_refused(seed_runs, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--stop-after", "2",
                                 *sum([["--set", o] for o in (*TINY, "seed=0")], [])])
    assert r.exit_code == 0, r.output
    shutil.copy(seed_runs / "seed1" / "checkpoint.pt", run / "checkpoint.pt")
    (run / "checkpoint.prev.pt").unlink()
    r = _cli_train(run, "seed=0")
    assert r.exit_code == 1 and "checkpoint of another run" in _flat(r.output) and r.output.count("error:") == 1
    assert "checkpoint.pt" in _flat(r.output) and not (run / "summary.json").exists()


def test_a_final_model_copied_from_another_run_is_refused_by_attacks(seed_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(seed_runs / "seed0", run)
    shutil.copy(seed_runs / "seed1" / "models" / "final" / "client_001.pt", run / "models" / "final" / "client_001.pt")
    with pytest.raises(RunFileError, match="client_001.pt: belongs to another run"):
        load_context(open_run(run))
    r = CliRunner().invoke(app, ["attack", str(run), "--no-sanity"])
    assert r.exit_code == 1 and "belongs to another run" in _flat(r.output)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_round(seed_runs, tmp_path, damage):
    cfg = _cfg("seed=0")
    run = tmp_path / "run"
    train(cfg, run, stop_after=2)
    ck = run / "checkpoint.pt"
    data = ck.read_bytes()
    ck.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"<html>not a model</html>"}[damage])
    out = train(cfg, run)  # resumes from round 1 (the previous checkpoint), ends like an uninterrupted run
    assert out.result.resumed_from == 1
    ref = RunStore(seed_runs / "seed0", config_hash=out.run_dir.config_hash)
    for c in range(3):
        a, b = ref.load_final(c), out.run_dir.load_final(c)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_damaged_checkpoint_without_a_previous_one_is_a_one_line_error(tmp_path):
    run = tmp_path / "run"
    train(_cfg(), run, stop_after=1)
    (run / "checkpoint.pt").write_bytes(b"")
    r = _cli_train(run)
    assert r.exit_code == 1 and r.output.count("error:") == 1
    assert "checkpoint.pt" in _flat(r.output) and "empty file (a damaged or interrupted copy)" in _flat(r.output)


def test_damaged_model_and_round_files_name_the_file(seed_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(seed_runs / "seed0", run)
    cfg = _cfg("seed=0")
    from fedsafe.config import config_hash

    store = RunStore(run, config_hash=config_hash(cfg))
    path = store.layout.global_model(2)
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw[: len(raw) - 40]))
    with pytest.raises(RunFileError, match="round_0002.pt: unreadable"):
        store.load_global(2)
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(RunFileError, match="metrics.json: not valid JSON"):
        store.read_json(store.layout.metrics)


def test_stale_temporary_files_are_cleaned(tmp_path):
    cfg = _cfg()
    run = tmp_path / "run"
    train(cfg, run, stop_after=1)
    stale = [run / ".checkpoint.pt.abc123.tmp", run / "models" / "global" / ".round_0002.pt.x.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    train(cfg, run)
    assert not any(p.exists() for p in stale)


_HOLDER = """
import sys, time, pathlib
from fedsafe.runs.store import RunStore
with RunStore(sys.argv[1], config_hash="x").lock():
    print("ready", flush=True)
    while not pathlib.Path(sys.argv[2]).exists():
        time.sleep(0.05)
"""


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    run, release = tmp_path / "run", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run), str(release)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"), RunStore(run, config_hash="y").lock():
            pass
        r = _cli_train(run)
        assert r.exit_code == 1 and f"pid {holder.pid}" in _flat(r.output) and r.output.count("error:") == 1
    finally:
        release.touch()
        holder.wait(30)
    with RunStore(run, config_hash="y").lock():  # released: the next writer gets it
        pass


def test_json_is_always_valid(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": torch.tensor([math.nan, 2.0])})
    text = path.read_text()
    assert json.loads(text) == {"a": None, "b": [1.0, "inf", "-inf"], "c": [None, 2.0]}
    assert "NaN" not in text and "Infinity" not in text


def test_the_summary_names_rejected_uploads_and_the_learning_flag(tmp_path):
    class NaNClient:
        name = "nan"

        def on_upload(self, upload, *, round_, client):
            return {k: v * math.nan for k, v in upload.items()} if client == 2 else dict(upload)

    cfg = _cfg()
    out = train(cfg, tmp_path / "run", hooks=Hooks(upload=NaNClient()))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [(r["round"], r["client"]) for r in summary["rejected_uploads"]] == [(1, 2), (2, 2), (3, 2)]
    assert "learned" in summary and "majority_class_rate" in summary
    assert out.result is not None


def test_the_did_not_learn_flag_fires_on_a_constant_model_and_attacks_warn(tmp_path, caplog):
    class ZeroUploads:  # every client uploads all-zero weights: the global model outputs zero logits, one class
        name = "zero"

        def on_upload(self, upload, *, round_, client):
            return {k: torch.zeros_like(v) for k, v in upload.items()}

    train(_cfg("federation.downlink_noise=0"), tmp_path / "run", hooks=Hooks(upload=ZeroUploads()))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["global_acc"] <= summary["majority_class_rate"] and summary["learned"] is False
    with caplog.at_level("WARNING"):
        assert load_context(open_run(tmp_path / "run")).learned is False
    assert "did not learn" in caplog.text


@pytest.mark.parametrize("override, message", [
    ("train.rounds=true", "train.rounds: Input should be a valid integer"),
    ("federation.downlink_noise=.inf", "federation.downlink_noise: Input should be a finite number"),
    ("defense.fraction=.nan", "defense.fraction"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, override, message):
    run = tmp_path / "run"
    r = _cli_train(run, override)
    assert r.exit_code == 1 and message in _flat(r.output) and r.output.count("error:") == 1
    assert not run.exists()
    assert _cli_train(run).exit_code == 0  # the corrected command runs in the same directory


def test_stop_after_zero_is_refused(tmp_path):
    r = CliRunner().invoke(app, ["train", "--run-dir", str(tmp_path / "r"), "--stop-after", "0"])
    assert r.exit_code == 2 and "--stop-after" in _flat(r.output)


def test_a_pool_too_small_for_the_held_out_sets_is_a_clear_error(tmp_path):
    r = _cli_train(tmp_path / "run2", "task.synthetic_size=50", "splits.global_test_size=0.001")
    assert r.exit_code == 1 and "global test set empty" in _flat(r.output)


def test_a_writer_that_may_wait_gets_the_run_once_it_is_released(tmp_path):
    run, release = tmp_path / "run", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run), str(release)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        subprocess.Popen([sys.executable, "-c", f"import time, pathlib; time.sleep(1.0); "
                                                f"pathlib.Path({str(release)!r}).touch()"])
        with RunStore(run, config_hash="y").lock(wait=60, poll=0.1):
            assert holder.poll() is not None or release.exists()  # it waited for the release
    finally:
        release.touch()
        holder.wait(30)


def test_attacks_refuse_a_model_with_non_finite_weights(seed_runs, tmp_path):
    """A NaN model must never be reported as robust: the attack refuses it, naming the file."""
    from fedsafe.config import config_hash

    run = tmp_path / "run"
    shutil.copytree(seed_runs / "seed0", run)
    store = RunStore(run, config_hash=config_hash(_cfg("seed=0")))
    state = store.load_final(1)
    store.save_final(1, {k: v * math.nan if v.is_floating_point() else v for k, v in state.items()})  # valid hashes
    with pytest.raises(ValueError, match="client_001.pt: client 1's final model has non-finite weights"):
        load_context(open_run(run))
    r = CliRunner().invoke(app, ["attack", str(run), "--no-sanity"])
    assert r.exit_code == 1 and "non-finite weights" in _flat(r.output) and r.output.count("error:") == 1
