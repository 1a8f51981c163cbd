"""PCam HDF5 reader, on small files written in the official layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fedsafe.data import pcam
from fedsafe.data.pcam import pcam_file, read_pcam

SIZES = {"train": 10, "valid": 4, "test": 6}


def _write_pcam(root, sizes=SIZES, *, skip=None, x_key="x"):
    root.mkdir(parents=True, exist_ok=True)
    data = {}
    for i, (split, n) in enumerate(sizes.items()):
        rng = np.random.default_rng(i)
        x = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        y = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1)
        data[split] = (x, y)
        for kind, key, value in (("x", x_key, x), ("y", "y", y)):
            path = root / f"camelyonpatch_level_2_split_{split}_{kind}.h5"
            if path.name == skip:
                continue
            with h5py.File(path, "w") as f:
                f.create_dataset(key, data=value, chunks=True, compression="gzip")
    return data


def test_reads_all_splits_pooled(tmp_path):
    data = _write_pcam(tmp_path)

    table, report = read_pcam(tmp_path, size=96, channels=3)

    assert table.class_names == ("normal", "tumor")
    assert table.images.shape == (20, 96, 96, 3) and table.images.dtype == np.uint8
    assert table.origin == ("train",) * 10 + ("val",) * 4 + ("test",) * 6
    np.testing.assert_array_equal(table.images[10:14], data["valid"][0])
    np.testing.assert_array_equal(table.labels[:10], np.arange(10) % 2)
    assert report.counts["val"] == {"normal": 2, "tumor": 2}
    assert report.sizes == {"96x96": 20}
    assert table.ids[14] == "pcam:test:0"


def test_resize_and_grey(tmp_path):
    _write_pcam(tmp_path)

    table, report = read_pcam(tmp_path, size=32, channels=1)

    assert table.images.shape == (20, 32, 32, 1)
    assert report.preprocessing == {**report.preprocessing, "size": 32, "channels": 1}


def test_max_per_split_reads_only_a_slice(tmp_path, monkeypatch):
    data = _write_pcam(tmp_path)
    requested = []
    real = pcam._dataset

    class Spy:
        def __init__(self, ds):
            self._ds = ds

        def __getattr__(self, name):
            return getattr(self._ds, name)

        def __getitem__(self, key):
            requested.append(key)
            return self._ds[key]

    monkeypatch.setattr(pcam, "_dataset", lambda f, key, path: Spy(real(f, key, path)))

    table, _ = read_pcam(tmp_path, max_per_split=3)

    assert len(table) == 9
    np.testing.assert_array_equal(table.images[:3], data["train"][0][:3])
    assert requested and all(isinstance(k, slice) and k.stop <= 3 for k in requested)


def test_missing_file_is_named(tmp_path):
    _write_pcam(tmp_path, skip="camelyonpatch_level_2_split_valid_y.h5")

    with pytest.raises(ValueError, match="camelyonpatch_level_2_split_valid_y.h5"):
        read_pcam(tmp_path)


def test_gzipped_download_gets_a_hint(tmp_path):
    _write_pcam(tmp_path, skip="camelyonpatch_level_2_split_test_x.h5")
    (tmp_path / "camelyonpatch_level_2_split_test_x.h5.gz").write_bytes(b"")

    with pytest.raises(ValueError, match="gunzip"):
        pcam_file(tmp_path, "test", "x")


def test_missing_key_is_named(tmp_path):
    _write_pcam(tmp_path, x_key="images")

    with pytest.raises(ValueError, match=r"missing key 'x' \(has images\)"):
        read_pcam(tmp_path)


def test_label_rows_must_match(tmp_path):
    _write_pcam(tmp_path, {"train": 4, "valid": 2, "test": 2})
    with h5py.File(tmp_path / "camelyonpatch_level_2_split_train_y.h5", "w") as f:
        f.create_dataset("y", data=np.zeros((3, 1, 1, 1), np.uint8))

    with pytest.raises(ValueError, match="must be \\(N,1,1,1\\) with N = 4"):
        read_pcam(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="PCam folder not found"):
        read_pcam(tmp_path / "nope")
