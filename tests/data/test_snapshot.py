"""A task's decoded table in one file (``fedsafe data snapshot``; ``task.snapshot``): the same table back, the same
data fingerprint and run key, and a one-line error for a missing, damaged or differently made file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fedsafe.build import load_table
from fedsafe.cli import app
from fedsafe.config import load_config
from fedsafe.data.cache import checksum
from fedsafe.data.snapshot import _ARRAYS, is_snapshot, load_snapshot, save_snapshot, snapshot_settings
from fedsafe.data.types import DataReport, ImageTable
from fedsafe.reproduce.run_cache import data_fingerprint, run_key

SYNTH = ["task.name=synthetic", "task.synthetic_size=120", "task.image_size=16"]


def flat(text: str) -> str:
    return " ".join(text.split())


def test_a_table_with_groups_and_sites_comes_back_unchanged(tmp_path):
    # Arrange: a hand-made table whose groups join images and whose images have sites
    rng = np.random.default_rng(0)
    table = ImageTable(images=rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), labels=np.array([0, 1, 0, 1, 1, 0]),
                       class_names=("a", "b"), ids=tuple(f"{i:064x}" for i in range(6)),
                       origin=("train",) * 4 + ("test",) * 2, name="image-folder",
                       groups=np.array([0, 0, 2, 3, 3, 5]), sites=("h1", "h1", "h2", "h2", "h1", "h2"))
    report = DataReport(task="image-folder", source="/data/x", kept={"a": 3, "b": 3}, notes=["one note"])
    # Act
    save_snapshot(tmp_path / "t.npz", table, report, {"name": "image-folder"})
    got, got_report = load_snapshot(tmp_path / "t.npz", expected={"name": "image-folder"})
    # Assert
    np.testing.assert_array_equal(got.images, table.images)
    np.testing.assert_array_equal(got.labels, table.labels)
    np.testing.assert_array_equal(got.groups, table.groups)
    assert (got.ids, got.origin, got.class_names, got.name, got.sites) == \
        (table.ids, table.origin, table.class_names, table.name, table.sites)
    assert data_fingerprint(got) == data_fingerprint(table)
    assert got_report.kept == report.kept and got_report.source == "/data/x"
    assert got_report.notes == ["one note", "read from the snapshot t.npz (made from /data/x)"]


def test_a_config_reading_the_snapshot_gets_the_same_table_and_run_key(tmp_path):
    cfg = load_config(overrides=SYNTH)
    table, report = load_table(cfg)
    save_snapshot(tmp_path / "s.npz", table, report, snapshot_settings(cfg.task, seed=cfg.seed))
    snap = load_config(overrides=[*SYNTH, f"task.snapshot={tmp_path / 's.npz'}"])
    got, _ = load_table(snap)
    assert got.ids == table.ids and np.array_equal(got.images, table.images) and got.sites is None
    fp = data_fingerprint(got)
    assert fp == data_fingerprint(table) and run_key(snap, fp) == run_key(cfg, fp)


def test_a_setting_that_differs_from_the_snapshots_is_a_one_line_error(tmp_path):
    cfg = load_config(overrides=SYNTH)
    table, report = load_table(cfg)
    path = tmp_path / "s.npz"
    save_snapshot(path, table, report, snapshot_settings(cfg.task, seed=cfg.seed))
    for override, message in [("task.image_size=32", "made with task.image_size=16, the config has 32"),
                              ("seed=3", "made with seed=0, the config has 3"),  # the synthetic task is drawn
                              ("task.same_scan_threshold=0.03", "task.same_scan_threshold=0.025"),
                              ("task.name=meningioma", "made with task.name='synthetic'")]:
        with pytest.raises(ValueError, match=message) as err:
            load_table(load_config(overrides=[*SYNTH, f"task.snapshot={path}", override]))
        assert "\n" not in str(err.value) and str(path) in str(err.value)
    # where the data lives and how reading fails are not the table's settings
    load_table(load_config(overrides=[*SYNTH, f"task.snapshot={path}", "task.data_root=/nowhere", "task.strict=true"]))
    # a sites CSV's content is in the table: its path need not match, but whether there was one must
    with pytest.raises(ValueError, match="made without a sites CSV"):
        load_table(load_config(overrides=[*SYNTH, f"task.snapshot={path}", "task.sites_csv=sites.csv"]))
    with_sites = snapshot_settings(load_config(overrides=[*SYNTH, "task.sites_csv=/a/sites.csv"]).task, seed=0)
    assert with_sites == snapshot_settings(load_config(overrides=[*SYNTH, "task.sites_csv=b.csv"]).task, seed=0)


def test_a_missing_damaged_or_foreign_file_is_a_one_line_error_naming_it(tmp_path):
    cfg = load_config(overrides=SYNTH)
    table, report = load_table(cfg)
    good = tmp_path / "s.npz"
    save_snapshot(good, table, report, snapshot_settings(cfg.task, seed=cfg.seed))
    with np.load(good) as d:
        arrays = {k: d[k] for k in d.files}
    damaged = dict(arrays, labels=1 - arrays["labels"])  # the checksum of the original beside changed labels
    np.savez_compressed(tmp_path / "damaged.npz", **damaged)
    (tmp_path / "text.npz").write_text("not a zip")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    old = {k: v for k, v in arrays.items() if k != "checksum"}
    old["format_version"] = np.array(0)
    np.savez(tmp_path / "old.npz", **old, checksum=np.array(checksum(old, _ARRAYS)))
    for name, message in [("absent.npz", "no such file"), ("damaged.npz", "damaged"),
                          ("text.npz", "not a readable snapshot"), ("other.npz", "not a fedsafe snapshot"),
                          ("old.npz", "snapshot format 0")]:
        with pytest.raises(ValueError, match=message) as err:
            load_snapshot(tmp_path / name)
        assert f"task.snapshot {tmp_path / name}" in str(err.value) and "\n" not in str(err.value)


def test_the_command_writes_a_snapshot_that_training_reads(tmp_path):
    # Act
    r = CliRunner().invoke(app, ["data", "snapshot", str(tmp_path / "s.npz"), "--task", "synthetic",
                                 "--set", "task.synthetic_size=120", "--set", "task.image_size=16"])
    # Assert
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "120 images of 16x16x1" in flat(r.output)
    assert f"--set task.snapshot={tmp_path / 's.npz'}" in flat(r.output)
    got, _ = load_table(load_config(overrides=[*SYNTH, f"task.snapshot={tmp_path / 's.npz'}"]))
    want, _ = load_table(load_config(overrides=SYNTH))
    assert got.ids == want.ids and np.array_equal(got.images, want.images)
    with np.load(tmp_path / "s.npz") as d:
        assert json.loads(str(d["settings"]))["synthetic_size"] == 120
    (tmp_path / "dir.npz").mkdir()
    for args, message in [([str(tmp_path / "s.txt")], "an .npz file"), ([str(tmp_path / "dir.npz")], "is a folder")]:
        bad = CliRunner().invoke(app, ["data", "snapshot", *args, "--task", "synthetic"])
        assert bad.exit_code == 2 and message in flat(bad.output), bad.output
    bad = CliRunner().invoke(app, ["data", "snapshot", str(tmp_path / "m.npz"), "--task", "meningioma",
                                   "--data-root", str(tmp_path / "nowhere")])
    assert bad.exit_code == 1 and "data root not found" in flat(bad.output) and bad.output.count("error:") == 1


def test_data_check_shows_a_snapshots_report(tmp_path):
    path = tmp_path / "s.npz"
    r = CliRunner().invoke(app, ["data", "snapshot", str(path), "--task", "synthetic", "--set",
                                 "task.synthetic_size=120", "--set", "task.image_size=16"])
    assert r.exit_code == 0, r.output
    shown = CliRunner().invoke(app, ["data", "check", str(path), "--json"])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["task"] == "synthetic" and report["notes"][-1] == "read from the snapshot s.npz (made from " \
        f"{report['source']})"
    wrong = CliRunner().invoke(app, ["data", "check", str(path), "--task", "meningioma"])
    assert wrong.exit_code == 1 and "a snapshot of task 'synthetic', not 'meningioma'" in flat(wrong.output)
    np.savez(tmp_path / "plain.npz", x=np.zeros(2))  # the control: an npz that is no snapshot is not taken for one
    assert not is_snapshot(tmp_path / "plain.npz") and is_snapshot(path)
