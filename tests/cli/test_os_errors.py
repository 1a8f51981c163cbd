"""Operating-system errors end in one line naming the path and the cause, never a traceback.

The full disk and the read-only folder are real: small tmpfs mounts (root only; skipped with the reason where the
machine does not allow mounting)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsafe.cli import app

TINY = ["--set", "task.image_size=16", "--set", "task.synthetic_size=300", "--set", "model.width=0.04",
        "--set", "splits.client_test_size=20", "--set", "train.local_epochs=1", "--set", "train.rounds=2",
        "--set", "train.precision=fp32", "--set", "train.eval_every=0"]


def flat(text: str) -> str:
    return " ".join(text.split())


def one_line_error(r, code: int = 1) -> str:
    text = flat(r.output)
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert text.count("error:") == 1 and "Traceback" not in r.output, r.output
    return text


@pytest.fixture
def mount(tmp_path):
    """``mount(size, *options) -> folder``: a fresh tmpfs of ``size`` (e.g. "4m"), unmounted after the test."""
    mounted: list[Path] = []

    def make(size: str, *options: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        opts = ",".join((f"size={size}", *options))
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot mount a tmpfs here ({exc}): the disk-full and read-only tests need one")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): the disk-full and "
                        "read-only tests need root")
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(folder: Path, *, leave: int) -> None:
    """Fill ``folder``'s file system until ``leave`` bytes are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("os-errors") / "run"
    r = CliRunner().invoke(app, ["train", "-o", str(run), *TINY])
    assert r.exit_code == 0, r.output
    return run


def test_a_full_disk_is_one_line_naming_the_path(mount):
    disk = mount("64k")
    r = CliRunner().invoke(app, ["train", "-o", str(disk / "run"), *TINY])
    text = one_line_error(r)
    assert f"error: {disk / 'run'}" in text and "no space left on the device (disk full)" in text


def test_a_full_disk_during_attack_leaves_no_csv_without_its_json(trained, mount):
    disk = mount("8m")
    run = disk / "run"
    shutil.copytree(trained, run)
    fill(disk, leave=4096)  # one page: the CSV fits, its JSON does not

    r = CliRunner().invoke(app, ["attack", str(run), "--steps", "1", "--alpha", "0.01", "--no-sanity"])

    text = one_line_error(r)
    assert f"{run / 'attacks'}" in text and "disk full" in text
    assert not list((run / "attacks").glob("*.csv")) and not list((run / "attacks").glob("*.json"))
    assert not list((run / "attacks").glob(".*.tmp"))


def test_a_read_only_folder_is_one_line_naming_the_path(trained, mount):
    disk = mount("8m")
    shutil.copytree(trained, disk / "run")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, capture_output=True, timeout=30)

    r = CliRunner().invoke(app, ["attack", str(disk / "run"), "--steps", "1", "--alpha", "0.01", "--no-sanity"])

    text = one_line_error(r)
    assert str(disk / "run") in text and "read-only file system" in text


def test_a_full_disk_during_the_cache_write_of_data_check_names_the_entry(make_mri_tree, mount):
    root = make_mri_tree()
    disk = mount("64k")
    fill(disk, leave=0)
    r = CliRunner().invoke(app, ["data", "check", str(root), "--task", "meningioma", "--size", "16",
                                 "--cache-dir", str(disk / "cache"), "--no-near-duplicates"])
    text = one_line_error(r)
    assert f"error: {disk / 'cache'}" in text and ".npz: no space left on the device (disk full)" in text


def test_a_run_directory_that_is_a_file_is_one_line_naming_it(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    r = CliRunner().invoke(app, ["train", "-o", str(afile), *TINY])
    # -o names the folder to write into: a file there is a usage error (exit 2), before anything runs
    assert f"Directory '{afile}' is a file" in one_line_error(r, code=2)
    assert afile.read_text() == "mine"


def test_fedsafe_cache_naming_a_file_is_one_line_naming_it(make_mri_tree, tmp_path):
    root = make_mri_tree()
    afile = tmp_path / "cache"
    afile.write_text("not a folder")
    r = CliRunner().invoke(app, ["data", "check", str(root), "--task", "meningioma", "--size", "16",
                                 "--no-near-duplicates"], env={"FEDSAFE_CACHE": str(afile)})
    assert f"FEDSAFE_CACHE={afile}: the image cache must be a folder, and this is a file" in one_line_error(r)


def test_a_full_disk_during_audit_is_one_line_naming_the_path(trained, mount):
    disk = mount("8m")
    run = disk / "run"
    shutil.copytree(trained, run)
    fill(disk, leave=0)  # the audit's first write fails

    r = CliRunner().invoke(app, ["audit", str(run), "--quick", "--steps", "1", "--eot", "1", "--no-membership",
                                 "--no-masking", "--precision", "fp32"])

    text = one_line_error(r)
    assert f"error: {run}" in text and "no space left on the device (disk full)" in text
