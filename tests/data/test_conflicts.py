"""Unreadable files are found before de-duplication, and a real label conflict is resolvable from config
``task.label_conflicts``, passed through ``load_task``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fedsafe.cli.data import app
from fedsafe.config import ConfigError, load_config
from fedsafe.data.tasks import load_task, load_task_kwargs

HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please log in</body></html>\n"


def _picture(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _tree(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A meningioma tree with 2 Training + 1 Testing distinct pictures per class, plus ``extra`` files."""
    seed = iter(range(1000))
    for split, n in (("Training", 2), ("Testing", 1)):
        for cls in ("no_tumor", "meningioma_tumor"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (root / split / cls / f"{cls[:2]} ({i + 1}).jpg").write_bytes(_picture(next(seed)))
    for rel, data in (extra or {}).items():
        (root / rel).write_bytes(data)
    return root


def _load(root: Path, **kw):
    return load_task("meningioma", data_root=root, image_size=8, channels=1, use_cache=False, **kw)


def test_empty_and_html_files_in_two_classes_are_unreadable_not_a_conflict(tmp_path):
    root = _tree(tmp_path / "mri", {
        "Training/no_tumor/empty.jpg": b"", "Training/meningioma_tumor/empty.jpg": b"",
        "Testing/no_tumor/login.jpg": HTML, "Training/meningioma_tumor/login.jpg": HTML,
    })

    table, report = _load(root)

    assert len(table) == 6
    assert sorted(str(Path(u["file"]).relative_to(root)) for u in report.unreadable) == [
        "Testing/no_tumor/login.jpg", "Training/meningioma_tumor/empty.jpg", "Training/meningioma_tumor/login.jpg",
        "Training/no_tumor/empty.jpg"]
    assert all(u["error"] for u in report.unreadable)
    assert report.duplicates["label_conflicts"] == 0 and report.duplicates["groups"] == 0
    assert any("4 unreadable file(s) (2 distinct contents) skipped before de-duplication" in n for n in report.notes)


def test_a_real_conflict_errors_naming_the_files_and_the_setting(tmp_path):
    picture = _picture(99)
    root = _tree(tmp_path / "mri", {"Training/no_tumor/scan.jpg": picture,
                                    "Testing/meningioma_tumor/scan copy.jpg": picture})

    with pytest.raises(ValueError) as info:
        _load(root)

    message = str(info.value)
    assert "Training/no_tumor/scan.jpg (label 0)" in message
    assert "Testing/meningioma_tumor/scan copy.jpg (label 1)" in message
    assert "--set task.label_conflicts=drop" in message


def test_label_conflicts_drop_drops_and_reports(tmp_path):
    picture = _picture(99)
    root = _tree(tmp_path / "mri", {"Training/no_tumor/scan.jpg": picture,
                                    "Testing/meningioma_tumor/scan copy.jpg": picture})

    table, report = _load(root, label_conflicts="drop")
    old_spelling, _ = _load(root, drop_conflicts=True)

    assert len(table) == len(old_spelling) == 6
    assert report.duplicates["label_conflicts"] == 1 and report.duplicates["removed"] == 2
    assert any("conflicting labels dropped" in n and "scan copy.jpg" in n for n in report.notes)
    with pytest.raises(ValueError, match="disagree"):
        _load(root, label_conflicts="error", drop_conflicts=True)
    with pytest.raises(ValueError, match="'error' or 'drop'"):
        _load(root, label_conflicts="ignore")


def test_config_carries_label_conflicts_and_near_duplicates_to_load_task(tmp_path):
    picture = _picture(99)
    root = _tree(tmp_path / "mri", {"Training/no_tumor/scan.jpg": picture,
                                    "Testing/meningioma_tumor/scan copy.jpg": picture})
    cfg = load_config(overrides=["task.label_conflicts=drop", "task.near_duplicates=false", "task.image_size=8"])

    kwargs = load_task_kwargs(cfg.task)
    table, report = load_task("meningioma", data_root=root, **{**kwargs, "cache_dir": tmp_path / "cache"})

    assert kwargs["label_conflicts"] == "drop" and kwargs["near_duplicates"] is False
    assert len(table) == 6 and report.near_duplicates["computed"] is False
    assert load_config().task.label_conflicts is None  # the task's default (breastmnist: drop)
    with pytest.raises(ConfigError, match="label_conflicts"):
        load_config(overrides=["task.label_conflicts=maybe"])
    with pytest.raises(ConfigError, match="near_duplicate_threshold"):
        load_config(overrides=["task.near_duplicate_threshold=0"])


def test_data_check_prints_near_duplicates_and_unreadable_counts(tmp_path):
    picture = _picture(7)
    copy = io.BytesIO()
    Image.open(io.BytesIO(picture)).save(copy, format="PNG")  # the same scan, another encoding
    root = _tree(tmp_path / "mri", {"Training/no_tumor/scan.jpg": picture, "Testing/no_tumor/scan.png": copy.getvalue(),
                                    "Testing/no_tumor/empty.jpg": b""})

    result = CliRunner().invoke(app, ["check", str(root), "--task", "meningioma", "--size", "8", "--no-cache"],
                                env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert "Near-duplicates" in result.output and "images in groups" in result.output
    assert "Training/no_tumor/scan.jpg" in result.output and "Testing/no_tumor/scan.png" in result.output
    assert "Unreadable files (1, skipped)" in result.output
    as_json = CliRunner().invoke(app, ["check", str(root), "--task", "meningioma", "--size", "8", "--no-cache",
                                       "--json"])
    near = json.loads(as_json.stdout[as_json.stdout.index("{"):])["near_duplicates"]
    assert (near["groups"], near["images_in_groups"], near["mixed_label_groups"]) == (1, 2, 0)
