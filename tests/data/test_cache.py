"""The decoded-image cache: keys, atomic writes, and no second decode."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fedsafe.data import cache as cache_mod
from fedsafe.data import decode
from fedsafe.data.cache import cache_key, cache_path, cached_decode, default_cache_dir, load_entry, save_entry
from fedsafe.data.mri import list_mri_files
from fedsafe.data.tasks import load_task


def _files(root: Path) -> tuple[list[Path], list[str]]:
    files = list_mri_files(root, "brain-tumor-4class")
    return [f.path for f in files], [f.sha256 for f in files]


def test_key_ignores_order_and_depends_on_everything_else():
    base = cache_key(["b", "a"], task="t", size=8, channels=1)

    assert base == cache_key(["a", "b"], task="t", size=8, channels=1)
    others = {
        cache_key(["a"], task="t", size=8, channels=1),
        cache_key(["a", "b"], task="u", size=8, channels=1),
        cache_key(["a", "b"], task="t", size=9, channels=1),
        cache_key(["a", "b"], task="t", size=8, channels=3),
        cache_key(["a", "b"], task="t", size=8, channels=1, reader_version=999),
    }
    assert base not in others and len(others) == 5


def test_default_dir_from_env_or_home(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDSAFE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FEDSAFE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "fedsafe"


def test_second_load_does_not_decode(make_mri_tree, tmp_path, count_decodes):
    paths, hashes = _files(make_mri_tree())
    cache_dir = tmp_path / "cache"

    first, hit1 = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=cache_dir)
    n_first = len(count_decodes)
    second, hit2 = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=cache_dir)

    assert (hit1, hit2) == (False, True)
    assert n_first == len(paths) == 20 and len(count_decodes) == n_first
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.ok, second.ok)
    assert first.sizes == second.sizes


def test_other_size_is_another_entry(make_mri_tree, tmp_path, count_decodes):
    paths, hashes = _files(make_mri_tree())

    cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path)
    _, hit = cached_decode(paths, hashes, task="t", size=10, channels=1, cache_dir=tmp_path)

    assert not hit and len(count_decodes) == 40
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_unreadable_files_are_remembered_and_named_by_current_path(make_mri_tree, tmp_path):
    root = make_mri_tree()
    bad = root / "Training" / "no_tumor" / "no (1).jpg"
    bad.write_bytes(b"garbage")
    paths, hashes = _files(root)

    first, _ = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path / "c")
    second, hit = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path / "c")

    assert hit
    assert [u["file"] for u in second.unreadable] == [str(bad)] == [u["file"] for u in first.unreadable]
    with pytest.raises(ValueError, match=r"no \(1\)\.jpg"):
        cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path / "c", strict=True)


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path, monkeypatch):
    target = tmp_path / "entry.npz"
    save_entry(target, {"a": np.arange(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"]

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_entry(target, {"a": np.arange(5)})

    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"]  # old entry intact, no temp left
    np.testing.assert_array_equal(load_entry(target)["a"], np.arange(3))


def test_a_corrupt_entry_is_rebuilt(make_mri_tree, tmp_path, count_decodes):
    paths, hashes = _files(make_mri_tree())
    key = cache_key(hashes, task="t", size=8, channels=1)
    entry = cache_path(tmp_path, key, task="t")
    entry.write_bytes(b"half a zip")

    result, hit = cached_decode(paths, hashes, task="t", size=8, channels=1, cache_dir=tmp_path)

    assert not hit and len(result.ok) == 20
    assert load_entry(entry) is not None


@pytest.mark.realdata
def test_real_second_load_hits_the_cache(real_meningioma, mri_root, monkeypatch):
    table, _, cache_dir = real_meningioma

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(decode, "decode_image", no_decoding)
    start = time.perf_counter()
    again, report = load_task("meningioma", data_root=mri_root, image_size=32, channels=1, cache_dir=cache_dir)
    elapsed = time.perf_counter() - start

    np.testing.assert_array_equal(again.images, table.images)
    assert again.ids == table.ids
    assert any("read from the cache" in n for n in report.notes)
    assert elapsed < 5.0
