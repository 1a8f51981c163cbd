"""The task registry, load_task, and the ``fedsafe data check`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fedsafe.cli.data import app, infer_task
from fedsafe.data.tasks import TASKS, load_task

runner = CliRunner()


def _npz(path, n=(6, 2, 4)):
    rng = np.random.default_rng(1)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 2).astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    return path


def test_registry_is_explicit():
    assert list(TASKS) == ["meningioma", "glioma", "brain-tumor-4class", "breastmnist", "pcam", "synthetic",
                           "image-folder"]
    assert TASKS["meningioma"].class_names == ("no_tumor", "meningioma_tumor")
    assert TASKS["image-folder"].class_names == ()  # its classes are its folders (test_folder.py)
    assert TASKS["synthetic"].data_root is None


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="known: meningioma, glioma, brain-tumor-4class, breastmnist, pcam, synthetic, "
                                         "image-folder"):
        load_task("lung", image_size=32, channels=1)


def test_missing_root_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"data root not found: {tmp_path / 'gone'}"):
        load_task("glioma", data_root=tmp_path / "gone", image_size=32, channels=1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="needs data_root"):
        load_task("glioma", image_size=32, channels=1)


def test_synthetic_through_load_task():
    table, report = load_task("synthetic", image_size=32, channels=3, n_synthetic=40, seed=4)

    assert table.images.shape == (40, 32, 32, 3)
    assert report.synthetic and report.task == "synthetic"


def test_mri_through_load_task_with_cache(make_mri_tree, tmp_path):
    root = make_mri_tree()

    table, report = load_task("brain-tumor-4class", data_root=root, image_size=16, channels=1,
                              cache_dir=tmp_path / "cache")

    assert len(table) == 20 and table.images.shape[1:] == (16, 16, 1)
    assert report.preprocessing["size"] == 16 and report.preprocessing["channels"] == 1
    assert list((tmp_path / "cache").glob("brain-tumor-4class-*.npz"))


def test_mri_root_may_be_the_download_folder(make_mri_tree, tmp_path):
    root = make_mri_tree(name="brain-tumor-mri")

    table, report = load_task("meningioma", data_root=root.parent, image_size=8, channels=1, use_cache=False)

    assert len(table) == 10 and report.source == str(root)


def test_use_cache_false_writes_nothing(make_mri_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSAFE_CACHE", str(tmp_path / "default-cache"))

    load_task("glioma", data_root=make_mri_tree(), image_size=8, channels=1, use_cache=False)

    assert not (tmp_path / "default-cache").exists()


def test_breastmnist_from_folder_or_file(tmp_path):
    _npz(tmp_path / "breastmnist.npz")

    a, report = load_task("breastmnist", data_root=tmp_path, image_size=28, channels=1)
    b, _ = load_task("breastmnist", data_root=tmp_path / "breastmnist.npz", image_size=28, channels=1)

    assert a.ids == b.ids and len(a) == 12
    assert a.class_names == ("malignant", "normal+benign")
    assert report.counts["val"] == {"malignant": 1, "normal+benign": 1}


def test_max_per_split_only_where_there_are_official_splits(make_mri_tree):
    with pytest.raises(ValueError, match="max_per_split"):
        load_task("meningioma", data_root=make_mri_tree(), image_size=8, channels=1, max_per_split=2)


@pytest.mark.realdata
def test_real_meningioma_report(real_meningioma):
    table, report, _ = real_meningioma

    assert report.task == "meningioma" and not report.synthetic
    assert report.counts == {"train": {"no_tumor": 395, "meningioma_tumor": 822},
                             "test": {"no_tumor": 105, "meningioma_tumor": 115}}
    assert report.kept == {"no_tumor": 352, "meningioma_tumor": 927}
    assert report.duplicates["removed"] == 1437 - 1279
    assert report.sizes["512x512"] == max(report.sizes.values())
    assert report.preprocessing["size"] == 32
    assert json.loads(json.dumps(report.to_dict()))["kept"] == report.kept


@pytest.mark.realdata
def test_real_breastmnist_task_drops_the_conflicting_pair(breastmnist_npz):
    table, report = load_task("breastmnist", data_root=breastmnist_npz.parent, image_size=28, channels=1)

    assert len(table) == 778
    assert any("conflicting labels dropped" in note for note in report.notes)


# --- fedsafe data check ----------------------------------------------------------------------------------


def test_infer_task(tmp_path, make_mri_tree):
    assert infer_task(make_mri_tree()) == "brain-tumor-4class"
    assert infer_task(_npz(tmp_path / "breastmnist_64.npz")) == "breastmnist"
    with pytest.raises(ValueError, match="not found"):
        infer_task(tmp_path / "nope")


def test_check_prints_tables(make_mri_tree, tmp_path):
    root = make_mri_tree()

    result = runner.invoke(app, ["check", str(root), "--task", "glioma", "--size", "16",
                                 "--cache-dir", str(tmp_path / "c")])

    assert result.exit_code == 0, result.output
    assert "glioma_tumor" in result.output and "Exact duplicates" in result.output
    assert "24x20" in result.output and "unreadable files: none" in result.output


def test_check_json(tmp_path):
    path = _npz(tmp_path / "breastmnist.npz")

    result = runner.invoke(app, ["check", str(path), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["task"] == "breastmnist" and report["kept"] == {"malignant": 6, "normal+benign": 6}


def test_check_synthetic_without_path():
    result = runner.invoke(app, ["check", "--task", "synthetic", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("{"):])["synthetic"] is True


def test_check_names_unreadable_files(make_mri_tree, tmp_path):
    root = make_mri_tree()
    (root / "Testing" / "no_tumor" / "no (1).jpg").write_bytes(b"broken")

    ok = runner.invoke(app, ["check", str(root), "--no-cache"])
    strict = runner.invoke(app, ["check", str(root), "--no-cache", "--strict"])

    assert ok.exit_code == 0 and "Unreadable files (1" in ok.output
    assert strict.exit_code == 1 and "no (1).jpg" in strict.output


@pytest.mark.parametrize("case", ["missing", "bad-key", "unknown-task"])
def test_check_errors_exit_1_with_one_line(tmp_path, case):
    if case == "missing":
        args, expected = [str(tmp_path / "nowhere")], "nowhere"
    elif case == "bad-key":
        path = tmp_path / "breastmnist.npz"
        np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8))
        args, expected = [str(path)], "'train_labels'"
    else:
        args, expected = [str(tmp_path), "--task", "lung"], "unknown task 'lung'"

    result = runner.invoke(app, ["check", *args])

    assert result.exit_code == 1
    assert expected in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
