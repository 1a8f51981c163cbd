"""On-disk cache of decoded, resized images, so a task's JPEGs are decoded once.

An entry is one ``.npz`` file (uncompressed, no pickles) named by a key: the sha256 over the sorted
content hashes of the source files, the task, the size, the channels and ``READER_VERSION``. A changed,
added or removed file, another size, or a new reader (bump ``READER_VERSION`` when decoding changes)
gives another key; the old entry is simply not used. Entries are written to a temporary file in the
cache folder and renamed into place (``os.replace``), so a crash never leaves a half-written entry
under a real name, and a reader never sees one. An unreadable entry is treated as absent (and rebuilt).

Every entry carries a ``checksum``: sha256 over its arrays (dtype, shape and bytes, in a fixed order). On load the
row counts (one image and one size a readable hash, one error a bad hash), the image shape and the checksum are
verified; an entry that fails (zeroed images, rows cut off, an array swapped in) is rebuilt with a warning naming
it and what is wrong, never used. Unreadable files' errors are stored without their path (two files of one content
are named each by its own path when read back).

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
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..progress import Progress
from ..runs.atomic import temp_file
from . import decode

__all__ = [
    "READER_VERSION", "checksum", "default_cache_dir", "cache_key", "cache_path", "load_entry", "save_entry",
    "cached_decode",
]

log = logging.getLogger(__name__)

READER_VERSION = 2
"""Bump when decoding or resizing changes, so old entries are not used (2: 16-bit and float sources scaled). An
entry written before checksums (and path-free errors) is rebuilt once, quietly."""

_ARRAYS = ("hashes", "images", "sizes", "bad_hashes", "bad_errors")
"""The arrays of a decoded-image entry, in checksum order."""
_NO_CHECKSUM = "no checksum"


def default_cache_dir() -> Path:
    """``$FEDSAFE_CACHE`` if set, else ``~/.cache/fedsafe``. ValueError when that path exists and is not a folder."""
    env = os.environ.get("FEDSAFE_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "fedsafe"
    if path.exists() and not path.is_dir():
        name = f"FEDSAFE_CACHE={env}" if env else str(path)
        raise ValueError(f"{name}: the image cache must be a folder, and this is a file")
    return path


def checksum(arrays: Mapping[str, np.ndarray], names: Sequence[str] = _ARRAYS) -> str:
    """sha256 hex over ``names``' arrays in that order: each one's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for name in names:
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


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


def save_entry(path: Path, arrays: Mapping[str, np.ndarray], *, compress: bool = False) -> Path:
    """Write arrays atomically to ``path`` (temporary file in the same folder, then ``os.replace``; ``compress``:
    deflated, as ``np.savez_compressed``). An OSError (a full disk, a read-only folder, a cache "folder" that is a
    file) names ``path``."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path.parent, f".{path.stem}.", ".tmp")
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and str(exc.filename) != str(path.parent):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # the folder's own fault keeps its name
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
    problem = None if entry is None else _entry_problem(entry, hashes, size, channels)
    if entry is not None and problem is None:
        log.info("cache hit %s", path)
        return _from_entry(entry, paths, hashes, strict=strict), True
    if problem == _NO_CHECKSUM:
        log.info("cache entry %s predates checksums: rebuilding it", path)
    elif problem is not None:
        log.warning("cache entry %s is damaged (%s): decoding the images again and rewriting it", path, problem)

    result = decode.decode_files(paths, size=size, channels=channels, strict=strict, progress=progress)
    ok_hashes = [hashes[i] for i in result.ok]
    good = set(result.ok.tolist())
    bad = [i for i in range(len(paths)) if i not in good]
    errors = {u["file"]: u["error"] for u in result.unreadable}
    arrays = {
        "hashes": np.array(ok_hashes, dtype=str),
        "images": result.images,
        "sizes": np.array(result.sizes, dtype=str),
        "bad_hashes": np.array([hashes[i] for i in bad], dtype=str),
        "bad_errors": np.array([errors.get(str(paths[i]), "unreadable") for i in bad], dtype=str),
    }
    save_entry(path, {**arrays, "checksum": np.array(checksum(arrays))})
    log.info("cached %d decoded images in %s", len(ok_hashes), path)
    return result, False


def _entry_problem(entry: Mapping[str, np.ndarray], hashes: Sequence[str], size: int, channels: int) -> str | None:
    """What is wrong with a decoded-image entry, or None when it is whole and covers ``hashes``."""
    missing = [k for k in _ARRAYS if k not in entry]
    if missing:
        return f"no {', '.join(missing)}"
    if "checksum" not in entry:
        return _NO_CHECKSUM
    images, n = entry["images"], len(entry["hashes"])
    if images.ndim != 4 or images.shape[1:] != (size, size, channels):
        return f"images of shape {images.shape}, expected (n, {size}, {size}, {channels})"
    if len(images) != n or len(entry["sizes"]) != n or len(entry["bad_errors"]) != len(entry["bad_hashes"]):
        return (f"{len(images)} images and {len(entry['sizes'])} sizes for {n} hashes, {len(entry['bad_errors'])} "
                f"errors for {len(entry['bad_hashes'])} unreadable files")
    if str(entry["checksum"]) != checksum(entry):
        return "its checksum does not match its contents"
    known = set(entry["hashes"].tolist()) | set(entry["bad_hashes"].tolist())
    if not set(hashes) <= known:
        return f"it lacks {len(set(hashes) - known)} of the files"
    return None


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
