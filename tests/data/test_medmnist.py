"""MedMNIST npz reader: the shared BreastMNIST, label shapes, RGB sets, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from fedsafe.data.medmnist import read_medmnist


def _write_npz(path, *, rgb=False, label_shape="column", n=(6, 2, 4), drop=None, labels_2d_k=None):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        shape = (k, 28, 28, 3) if rgb else (k, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = np.arange(k) % 2
        if labels_2d_k:
            labels = rng.integers(0, 2, (k, labels_2d_k))
        elif label_shape == "column":
            labels = labels[:, None]
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    if drop:
        del arrays[drop]
    np.savez(path, **arrays)
    return path


@pytest.mark.realdata
def test_shared_breastmnist(breastmnist_npz):
    table, report = read_medmnist(breastmnist_npz, size=28, channels=1, drop_conflicts=True)

    assert table.name == "breastmnist"
    assert table.class_names == ("malignant", "normal+benign")
    assert report.counts == {"train": {"malignant": 147, "normal+benign": 399},
                             "val": {"malignant": 21, "normal+benign": 57},
                             "test": {"malignant": 42, "normal+benign": 114}}
    # the one duplicated image carries two labels (train[115] malignant, test[76] benign): both dropped
    assert report.duplicates["label_conflicts"] == 1 and report.duplicates["removed"] == 2
    assert "breastmnist:train:115" not in table.ids and "breastmnist:test:76" not in table.ids
    assert len(table) == 778
    assert table.images.shape == (778, 28, 28, 1)
    assert table.origin.count("train") == 545 and table.origin.count("val") == 78 and table.origin.count("test") == 155
    assert report.sizes == {"28x28": 780}


@pytest.mark.realdata
def test_shared_breastmnist_conflict_is_an_error_by_default(breastmnist_npz):
    with pytest.raises(ValueError, match="breastmnist:train:115"):
        read_medmnist(breastmnist_npz, size=28, channels=1)


@pytest.mark.realdata
def test_shared_breastmnist_pixels_are_unchanged_at_native_size(breastmnist_npz):
    table, _ = read_medmnist(breastmnist_npz, size=28, channels=1, drop_conflicts=True)
    with np.load(breastmnist_npz) as data:
        original = data["val_images"]

    row = table.ids.index("breastmnist:val:5")
    np.testing.assert_array_equal(table.images[row, :, :, 0], original[5])


def test_column_labels_rgb_images_and_resize(tmp_path):
    path = _write_npz(tmp_path / "bloodmnist.npz", rgb=True)

    table, report = read_medmnist(path, size=16, channels=3)

    assert table.images.shape == (12, 16, 16, 3)
    assert table.name == "bloodmnist" and table.class_names[0] == "basophil"
    assert table.origin == ("train",) * 6 + ("val",) * 2 + ("test",) * 4
    assert table.ids[6] == "bloodmnist:val:0"
    np.testing.assert_array_equal(table.labels, np.r_[np.arange(6) % 2, np.arange(2) % 2, np.arange(4) % 2])
    assert report.preprocessing["channels"] == 3


def test_folder_and_size_suffix_and_unknown_names(tmp_path):
    _write_npz(tmp_path / "breastmnist.npz", label_shape="flat")
    _write_npz(tmp_path / "mystery_64.npz")

    from_folder, _ = read_medmnist(tmp_path, size=28, channels=1, name="breastmnist")
    unknown, _ = read_medmnist(tmp_path / "mystery_64.npz", size=28, channels=1)

    assert len(from_folder) == 12
    assert unknown.name == "mystery" and unknown.class_names == ("0", "1")


def test_max_per_split_reads_the_first_rows(tmp_path):
    path = _write_npz(tmp_path / "breastmnist.npz")

    table, report = read_medmnist(path, size=28, channels=1, max_per_split=2)

    assert table.ids == ("breastmnist:train:0", "breastmnist:train:1", "breastmnist:val:0", "breastmnist:val:1",
                         "breastmnist:test:0", "breastmnist:test:1")
    assert report.preprocessing["max_per_split"] == 2


def test_missing_key_is_one_line_naming_file_and_key(tmp_path):
    path = _write_npz(tmp_path / "breastmnist.npz", drop="val_labels")

    with pytest.raises(ValueError) as info:
        read_medmnist(path, size=28, channels=1)

    message = str(info.value)
    assert "\n" not in message and str(path) in message and "'val_labels'" in message


def test_multi_label_sets_are_refused(tmp_path):
    path = _write_npz(tmp_path / "chestmnist.npz", labels_2d_k=14)

    with pytest.raises(ValueError, match="multi-label"):
        read_medmnist(path, size=28, channels=1)


def test_missing_file_or_folder_entry(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_medmnist(tmp_path / "nope.npz", size=28, channels=1)
    with pytest.raises(ValueError, match="no breastmnist.npz"):
        read_medmnist(tmp_path, size=28, channels=1, name="breastmnist")


def test_an_html_page_saved_as_npz_is_named_as_such(tmp_path):
    path = tmp_path / "breastmnist.npz"
    path.write_bytes(b"<html><body>503 Service Unavailable</body></html>")

    with pytest.raises(ValueError, match="HTML page, not an npz archive") as info:
        read_medmnist(path, size=28, channels=1)

    assert "pickle" not in str(info.value)
