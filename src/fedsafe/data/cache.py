"""On-disk cache of decoded, resized images, so a task's JPEGs are decoded once.

An entry is one ``.npz`` file (uncompressed, no pickles) named by a key: the sha256 over the sorted
content hashes of the source files, the task, the size, the channels and ``READER_VERSION``. A changed,
added or removed file, another size, or a new reader (bump ``READER_VERSION`` when decoding changes)
gives another key; the old entry is simply not used. Entries are written to a temporary file in the
cache folder and renamed into place (``os.replace``), so a crash never leaves a half-written entry
under a real name, and a reader never sees one. An unreadable entry is treated as absent (and rebuilt).

The default folder is ``$FEDSAFE_CACHE`` or ``~/.cache/fedsafe`` (:func:`default_cache_dir`); every
function here takes the folder explicitly.

Example::

    decoded, hit = cached_decode(paths, hashes, task="meningioma", size=64, channels=1, cache_dir=d)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..progress import Progress
from . import decode

__all__ = [
    "READER_VERSION", "default_cache_dir", "cache_key", "cache_path", "load_entry", "save_entry", "cached_decode",
]

log = logging.getLogger(__name__)

READER_VERSION = 2
"""Bump when decoding or resizing changes, so old entries are not used (2: 16-bit and float sources scaled)."""


def default_cache_dir() -> Path:
    """``$FEDSAFE_CACHE`` if set, else ``~/.cache/fedsafe``."""
    env = os.environ.get("FEDSAFE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedsafe"


def cache_key(
    content_hashes: Iterable[str], *, task: str, size: int, channels: int, reader_version: int = READER_VERSION,
) -> str:
    """sha256 hex over (sorted content hashes, task, size, channels, reader version)."""
    payload = json.dumps(
        {"hashes": sorted(content_hashes), "task": task, "size": size, "channels": channels,
         "reader_version": reader_version},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_path(cache_dir: Path, key: str, *, task: str = "data") -> Path:
    """Where the entry of ``key`` lives: ``cache_dir/<task>-<key>.npz``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", task)
    return Path(cache_dir) / f"{safe}-{key}.npz"


def load_entry(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache entry, or None if it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable cache entry %s: %s", path, exc)
        return None


def save_entry(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write arrays atomically to ``path`` (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cached_decode(
    paths: Sequence[Path], hashes: Sequence[str], *, task: str, size: int, channels: int, cache_dir: Path,
    strict: bool = False, progress: Progress | None = None,
) -> tuple[decode.DecodeResult, bool]:
    """:func:`fedsafe.data.decode.decode_files` through the cache. Returns (result, cache hit).

    paths, hashes: (N,) the files and the sha256 of their bytes (distinct hashes expected; duplicates
    are decoded once each anyway). The result is in input order and names unreadable files by their
    current path, whether it came from the cache or not. ``strict`` raises on unreadable files in both.
    """
    if len(paths) != len(hashes):
        raise ValueError("paths and hashes differ in length")
    decode.check_size_channels(size, channels)
    key = cache_key(hashes, task=task, size=size, channels=channels)
    path = cache_path(Path(cache_dir), key, task=task)
    entry = load_entry(path)
    if entry is not None and _entry_matches(entry, hashes, size, channels):
        log.info("cache hit %s", path)
        return _from_entry(entry, paths, hashes, strict=strict), True

    result = decode.decode_files(paths, size=size, channels=channels, strict=strict, progress=progress)
    ok_hashes = [hashes[i] for i in result.ok]
    good = set(result.ok.tolist())
    bad = [i for i in range(len(paths)) if i not in good]
    errors = {u["file"]: u["error"] for u in result.unreadable}
    save_entry(path, {
        "hashes": np.array(ok_hashes, dtype=str),
        "images": result.images,
        "sizes": np.array(result.sizes, dtype=str),
        "bad_hashes": np.array([hashes[i] for i in bad], dtype=str),
        "bad_errors": np.array([errors.get(str(paths[i]), "unreadable") for i in bad], dtype=str),
    })
    log.info("cached %d decoded images in %s", len(ok_hashes), path)
    return result, False


def _entry_matches(entry: Mapping[str, np.ndarray], hashes: Sequence[str], size: int, channels: int) -> bool:
    needed = {"hashes", "images", "sizes", "bad_hashes", "bad_errors"}
    if not needed <= set(entry):
        return False
    images = entry["images"]
    known = set(entry["hashes"].tolist()) | set(entry["bad_hashes"].tolist())
    return images.ndim == 4 and images.shape[1:] == (size, size, channels) and set(hashes) <= known


def _from_entry(
    entry: Mapping[str, np.ndarray], paths: Sequence[Path], hashes: Sequence[str], *, strict: bool,
) -> decode.DecodeResult:
    row = {h: i for i, h in enumerate(entry["hashes"].tolist())}
    bad = dict(zip(entry["bad_hashes"].tolist(), entry["bad_errors"].tolist(), strict=True))
    ok = [i for i, h in enumerate(hashes) if h in row]
    unreadable = [{"file": str(paths[i]), "error": bad[h]} for i, h in enumerate(hashes) if h not in row]
    if strict and unreadable:
        raise ValueError(f"cannot decode image {unreadable[0]['file']}: {unreadable[0]['error']}")
    index = np.array([row[hashes[i]] for i in ok], dtype=np.int64)
    sizes = entry["sizes"].tolist()
    return decode.DecodeResult(
        images=entry["images"][index], ok=np.array(ok, dtype=np.int64), sizes=[sizes[j] for j in index],
        unreadable=unreadable,
    )
