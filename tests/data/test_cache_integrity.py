"""The decoded-image cache checks what it reads and every unreadable entry is named by its own path."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from fedsafe.data.cache import cache_key, cache_path, cached_decode, default_cache_dir, load_entry
from fedsafe.data.mri import list_mri_files, read_mri


def _entry(root: Path, cache: Path) -> tuple[list[Path], list[str], Path]:
    files = list_mri_files(root, "brain-tumor-4class")
    paths, hashes = [f.path for f in files], [f.sha256 for f in files]
    cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=cache)
    return paths, hashes, cache_path(cache, cache_key(hashes, task="t", size=8, channels=1), task="t")


def _rewrite(path: Path, **changes: np.ndarray) -> None:
    arrays = {**load_entry(path), **changes}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_a_zeroed_cache_entry_is_rebuilt_with_a_warning(make_mri_tree, tmp_path, count_decodes, caplog):
    paths, hashes, entry = _entry(make_mri_tree(), tmp_path / "c")
    first = count_decodes.copy()
    good = load_entry(entry)["images"]
    _rewrite(entry, images=np.zeros_like(good))  # same shapes, same keys: only the checksum can tell

    with caplog.at_level(logging.WARNING, logger="fedsafe.data.cache"):
        result, hit = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path / "c")

    assert not hit and count_decodes[len(first):] == first  # every image decoded again
    assert np.array_equal(result.images, good) and good.any()
    assert any(str(entry) in r.getMessage() and "checksum does not match" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(load_entry(entry)["images"], good)  # rewritten whole
    again, hit = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path / "c")
    assert hit and np.array_equal(again.images, good)


def test_an_entry_with_fewer_rows_than_hashes_is_rebuilt_with_a_warning(make_mri_tree, tmp_path, caplog):
    paths, hashes, entry = _entry(make_mri_tree(), tmp_path / "c")
    good = load_entry(entry)["images"]
    _rewrite(entry, images=good[:-3])

    with caplog.at_level(logging.WARNING, logger="fedsafe.data.cache"):
        result, hit = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path / "c")

    assert not hit and np.array_equal(result.images, good)
    assert any("17 images and 20 sizes for 20 hashes" in r.getMessage() for r in caplog.records)


def test_an_entry_from_before_checksums_is_rebuilt_quietly(make_mri_tree, tmp_path, caplog):
    paths, hashes, entry = _entry(make_mri_tree(), tmp_path / "c")
    arrays = load_entry(entry)
    del arrays["checksum"]
    with open(entry, "wb") as fh:
        np.savez(fh, **arrays)
    with caplog.at_level(logging.WARNING, logger="fedsafe.data.cache"):
        _, hit = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path / "c")
    assert not hit and not caplog.records and "checksum" in load_entry(entry)


def test_two_empty_files_are_each_named_with_their_own_error(make_mri_tree, tmp_path):
    root = make_mri_tree()
    a, b = root / "Training" / "no_tumor" / "empty.jpg", root / "Training" / "meningioma_tumor" / "empty.jpg"
    a.write_bytes(b"")
    b.write_bytes(b"")
    for attempt in ("decoded", "from the cache"):
        _, report = read_mri(root, "meningioma", size=8, channels=1, cache_dir=tmp_path / "c",
                             near_duplicates=None)
        errors = {u["file"]: u["error"] for u in report.unreadable}
        assert set(errors) == {str(a), str(b)}, attempt
        for path, error in errors.items():
            assert "cannot identify image file" in error and str(root) not in error, (attempt, path, error)


def test_a_fifo_named_jpg_is_named_in_the_report(make_mri_tree):
    root = make_mri_tree()
    fifo = root / "Testing" / "meningioma_tumor" / "pipe.jpg"
    os.mkfifo(fifo)  # opening it would block for ever: it must be named without being read
    device = root / "Training" / "no_tumor" / "device.jpg"
    device.symlink_to(os.devnull)

    _, report = read_mri(root, "meningioma", size=8, channels=1, near_duplicates=None)

    errors = {u["file"]: u["error"] for u in report.unreadable}
    assert errors == {str(fifo): "not a regular file: a FIFO",
                      str(device): "not a regular file: a symbolic link to a character device"}
    assert report.counts["test"]["meningioma_tumor"] == 3 and report.counts["train"]["no_tumor"] == 4  # counted
    assert report.kept == {"no_tumor": 5, "meningioma_tumor": 5}
    assert any("2 not a regular file" in n for n in report.notes)


def test_fedsafe_cache_naming_a_file_is_one_line_naming_it(tmp_path, monkeypatch):
    afile = tmp_path / "cache"
    afile.write_text("not a folder")
    monkeypatch.setenv("FEDSAFE_CACHE", str(afile))
    with pytest.raises(ValueError, match=f"FEDSAFE_CACHE={afile}: the image cache must be a folder, and this is a "
                                         "file"):
        default_cache_dir()
