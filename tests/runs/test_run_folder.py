"""A run is bound to its folder (design §12): a run directory is new, empty or a fedsafe run; any other folder is
refused untouched, the store deletes only its own temporary files, and a run that fails before its first file
leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fedsafe.cli import app
from fedsafe.config import config_hash, load_config
from fedsafe.runs.claim import inspect, own_tmp_files
from fedsafe.runs.errors import RunDirRefused
from fedsafe.runs.layout import MARKER
from fedsafe.runs.store import RunStore
from fedsafe.training.trainer import train

TINY = ["task.image_size=16", "task.synthetic_size=300", "model.width=0.04", "splits.client_test_size=20",
        "train.local_epochs=1", "train.rounds=2", "train.precision=fp32", "federation.downlink_noise=0.01",
        "threads=1"]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _has(output: str, text: str) -> bool:
    """``text`` in the CLI's ``output``, whatever the console's line breaks (it breaks long paths anywhere)."""
    return "".join(text.split()) in "".join(output.split())


def _train(run_dir: str, *extra: str):
    args = ["train", "--run-dir", run_dir]
    for o in (*TINY, *extra):
        args += ["--set", o]
    return CliRunner().invoke(app, args)


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("done") / "run"
    train(load_config(overrides=TINY), run)
    return run


def test_an_existing_folder_is_refused_and_nothing_in_it_deleted(tmp_path, monkeypatch):
    # the example: a user's notes with a draft ending in .tmp, the run asked into the current folder
    folder = tmp_path / "v"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / ".draft.tmp").write_text("draft")
    (folder / "keep.txt").write_text("mine")
    before = _tree(folder)
    monkeypatch.chdir(folder)
    r = _train(".")
    assert r.exit_code == 1 and r.output.count("error:") == 1
    assert "not empty and not a fedsafe run directory" in _flat(r.output) and "nothing in it was touched" in \
        _flat(r.output)
    assert _tree(folder) == before  # not a file added, changed or deleted
    with pytest.raises(RunDirRefused, match="keep.txt, notes"):
        inspect(folder)


def test_an_empty_output_path_is_refused(tmp_path, monkeypatch):
    (tmp_path / ".draft.tmp").write_text("draft")
    monkeypatch.chdir(tmp_path)
    r = _train("")
    assert r.exit_code == 2 and "-o/--output is an empty path" in _flat(r.output)
    assert [p.name for p in tmp_path.iterdir()] == [".draft.tmp"]


def test_a_data_folder_and_another_runs_sub_folder_are_refused(tmp_path, done_run):
    data = tmp_path / "data" / "Training" / "no_tumor"
    data.mkdir(parents=True)
    (data / "a.jpg").write_bytes(b"\xff\xd8")
    before = _tree(tmp_path / "data")
    r = _train(str(tmp_path / "data"))
    assert r.exit_code == 1 and _has(r.output, f"{tmp_path / 'data'}: not empty and not a fedsafe run")
    assert _tree(tmp_path / "data") == before
    run_before = _tree(done_run)
    for sub in (done_run / "models", done_run / "models" / "new"):
        r = _train(str(sub))
        assert r.exit_code == 1 and _has(r.output, f"is inside the fedsafe run {done_run.resolve()}"), r.output
    assert _tree(done_run) == run_before


def test_a_file_as_run_directory_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    r = _train(str(tmp_path / "f"))
    # a usage error (exit 2): -o/--output takes a folder, and the file is named
    assert r.exit_code == 2 and f"Directory '{tmp_path / 'f'}' is a file" in _flat(r.output)
    assert (tmp_path / "f").read_text() == "x"


def test_the_store_deletes_only_its_own_temporary_files(tmp_path, done_run):
    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    (run / "summary.json").unlink()  # so that train takes the run again
    own = [run / ".checkpoint.pt.k2j4h1ab.tmp", run / ".summary.json.x7.tmp",
           run / "models" / "global" / ".round_0002.pt.abc_12.tmp",
           run / "models" / "final" / ".client_001.pt.q.tmp", run / "attacks" / ".pgd-zero-ab12.csv.zz.tmp"]
    foreign = [run / ".notes.tmp", run / ".checkpoint.pt.tmp", run / "models" / ".round_0002.pt.x.tmp",
               run / "models" / "global" / ".client_001.pt.q.tmp", run / "mine" / ".config.yaml.abc.tmp",
               run / "models" / "final" / "client_001.pt.q.tmp"]
    for p in own + foreign:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("half a file")
    assert sorted(own_tmp_files(run)) == sorted(own)
    r = _train(str(run))
    assert r.exit_code == 0, r.output
    assert not any(p.exists() for p in own)
    assert all(p.read_text() == "half a file" for p in foreign)


def test_a_run_written_before_markers_is_recognised_and_marked(tmp_path, done_run):
    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    (run / MARKER).unlink()
    (run / "summary.json").unlink()
    assert inspect(run) == "legacy"
    r = _train(str(run))
    assert r.exit_code == 0, r.output
    assert json.loads((run / MARKER).read_text())["kind"] == "fedsafe-run" and inspect(run) == "run"
    # a folder holding config.yaml alone (a project folder) is no run
    other = tmp_path / "project"
    other.mkdir()
    (other / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(RunDirRefused, match="holds config.yaml"):
        inspect(other)


def test_a_damaged_or_foreign_marker_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text("not json")
    (run / "x.txt").write_text("mine")
    r = _train(str(run))
    assert r.exit_code == 1 and _has(r.output, f"{run / MARKER}: not a fedsafe run marker")
    assert sorted(p.name for p in run.iterdir()) == [MARKER, "x.txt"]


def test_the_marker_is_written_first_and_an_empty_folder_is_accepted(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    store = RunStore(run, config_hash="x")
    with store.lock():
        assert json.loads((run / MARKER).read_text()) == {"kind": "fedsafe-run", "format": 1}
        (run / "config.yaml").write_text("seed: 0\n")
    assert inspect(run) == "run"


@pytest.mark.parametrize("bad", [["task.name=meningioma", "task.data_root={missing}"],
                                 ["splits.partition=dirichlet", "splits.dirichlet_alpha=0.01",
                                  "splits.num_clients=20", "splits.client_test_size=5"]],
                         ids=["missing data root", "impossible dirichlet split"])
def test_a_run_that_fails_before_its_first_file_leaves_nothing_behind(tmp_path, bad):
    run = tmp_path / "run"
    r = _train(str(run), *[b.format(missing=tmp_path / "missing") for b in bad])
    assert r.exit_code == 1 and r.output.count("error:") == 1, r.output
    assert not run.exists()  # no .lock, no marker, no folder
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _train(str(empty), *[b.format(missing=tmp_path / "missing") for b in bad]).exit_code == 1
    assert empty.is_dir() and not list(empty.iterdir())  # the user's empty folder stays, empty


def test_an_unknown_task_leaves_nothing_behind(tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--set", "task.name=nosuch"])
    assert r.exit_code == 1 and "unknown task 'nosuch'" in _flat(r.output)
    assert not run.exists()


def test_a_folder_left_with_only_a_lock_is_taken(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("12345\n")
    assert inspect(run) == "empty"
    cfg = load_config(overrides=TINY)
    out = train(cfg, run, stop_after=1)
    assert out.run_dir.config_hash == config_hash(cfg) and (run / MARKER).is_file()


_HOLDER = """
import sys, time
from fedsafe.runs.store import RunStore
with RunStore(sys.argv[1], config_hash="x").lock():
    print("ready", flush=True)
    time.sleep(1.0)
print("released", flush=True)
"""


def test_a_waiter_takes_the_folder_a_holder_left_without_writing(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with RunStore(run, config_hash="y").lock(wait=60, poll=0.05):
            assert holder.stdout.readline().strip() == "released"  # it wrote nothing, so took its files away
            assert (run / ".lock").read_text().strip() == str(os.getpid()) and (run / MARKER).is_file()
            (run / "config.yaml").write_text("seed: 0\n")
    finally:
        holder.wait(30)
    assert inspect(run) == "run"
