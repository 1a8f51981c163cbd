"""A task's decoded image table in one file, so a federation can be trained where its source images are not: on a
GPU machine that receives only a small upload, or on a colleague's machine that must not hold the scans.

``fedsafe data snapshot FILE.npz`` writes what a task reads (:func:`fedsafe.build.load_table`): the de-duplicated
images at the task's size and channels, labels, ids (content hashes of the source files), origins, the split groups
(near-duplicates and same-scan slices), the sites where there are any, the class names and the data report. It also
records the task settings that made it (:func:`snapshot_settings`). ``task.snapshot: FILE.npz`` then reads the table
from the file instead of the source: the same table, so the same splits, the same data fingerprint and the same
cached runs (:mod:`fedsafe.reproduce.run_cache` keys runs by content, not by where the data lives).

The file is a compressed ``.npz`` without pickles, written atomically, with a sha256 ``checksum`` over its arrays
(:func:`fedsafe.data.cache.checksum`). Reading it checks the checksum and compares its settings with the config's;
a missing or damaged file, or a setting that differs (another image size, other grouping thresholds), is a one-line
ValueError naming the file and the key, never a silently different table.

Example::

    save_snapshot(path, table, report, snapshot_settings(cfg.task, seed=cfg.seed))
    table, report = load_snapshot(path, expected=snapshot_settings(cfg.task, seed=cfg.seed))
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TaskConfig
from .cache import READER_VERSION, checksum, save_entry
from .types import DataReport, ImageTable

__all__ = ["FORMAT_VERSION", "is_snapshot", "load_snapshot", "save_snapshot", "snapshot_settings"]

FORMAT_VERSION = 1
"""Bump when the snapshot's arrays change."""

_ARRAYS = ("images", "labels", "groups", "ids", "origin", "class_names", "sites", "name", "report", "settings",
           "format_version")
"""The arrays of a snapshot, in checksum order (``sites`` is empty when the task has none)."""

_LOCATIONS = ("data_root", "cache_dir", "snapshot", "strict", "sites_csv")
"""Task fields that say where the data is or how reading fails, not what the table holds (a sites CSV's content,
the sites and the patients' groups, is in the table; whether there was one is a setting, ``sites``)."""


def snapshot_settings(task: TaskConfig, *, seed: int) -> dict[str, Any]:
    """The settings that determine a task's table: every ``task`` field but where things are, the reader's version,
    and for the synthetic task (generated, not read) the seed and size that draw it."""
    settings = {k: v for k, v in task.model_dump(mode="json").items() if k not in _LOCATIONS}
    settings["sites"] = task.sites_csv is not None
    if task.name == "synthetic":
        settings["seed"] = seed
    else:
        settings.pop("synthetic_size", None)
    settings["reader_version"] = READER_VERSION
    return settings


def is_snapshot(path: str | Path) -> bool:
    """Whether ``path`` is an ``.npz`` written by :func:`save_snapshot` (by its members; its content is not read)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return {"settings.npy", "format_version.npy", "checksum.npy"} <= names


def save_snapshot(path: str | Path, table: ImageTable, report: DataReport, settings: Mapping[str, Any]) -> Path:
    """Write ``table`` and ``report``, made with ``settings`` (:func:`snapshot_settings`), to ``path`` atomically."""
    arrays = {
        "images": np.ascontiguousarray(table.images), "labels": np.asarray(table.labels, dtype=np.int64),
        "groups": np.asarray(table.groups, dtype=np.int64), "ids": np.array(table.ids, dtype=str),
        "origin": np.array(table.origin, dtype=str), "class_names": np.array(table.class_names, dtype=str),
        "sites": np.array(table.sites if table.sites is not None else [], dtype=str), "name": np.array(table.name),
        "report": np.array(json.dumps(report.to_dict(), sort_keys=True)),
        "settings": np.array(json.dumps(dict(settings), sort_keys=True)),
        "format_version": np.array(FORMAT_VERSION),
    }
    return save_entry(Path(path), {**arrays, "checksum": np.array(checksum(arrays, _ARRAYS))}, compress=True)


def load_snapshot(path: str | Path, *, expected: Mapping[str, Any] | None = None) -> tuple[ImageTable, DataReport]:
    """The table and report of the snapshot at ``path``. ValueError (one line, naming the file) when it is missing,
    unreadable or damaged, or when one of its settings differs from ``expected`` (naming the key)."""
    path = Path(path).expanduser()
    where = f"task.snapshot {path}"
    if not path.is_file():
        raise ValueError(f"{where}: no such file (make one with `fedsafe data snapshot FILE.npz`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{where}: not a readable snapshot ({' '.join(str(exc).split())})") from None
    missing = [k for k in (*_ARRAYS, "checksum") if k not in arrays]
    if missing:
        raise ValueError(f"{where}: not a fedsafe snapshot (no {', '.join(missing)})")
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"{where}: snapshot format {int(arrays['format_version'])}, this fedsafe reads "
                         f"{FORMAT_VERSION}: make it again with `fedsafe data snapshot`")
    if str(arrays["checksum"]) != checksum(arrays, _ARRAYS):
        raise ValueError(f"{where}: damaged (its checksum does not match its contents): copy it again")
    settings = json.loads(str(arrays["settings"]))
    settings["sites"] = len(arrays["sites"]) > 0  # what the table holds decides (a sites CSV gives every image one)
    for key, want in (expected or {}).items():
        if settings.get(key) != want:
            if key == "sites":
                have = "with" if settings[key] else "without"
                raise ValueError(f"{where} was made {have} a sites CSV (task.sites_csv), the config "
                                 f"{'names one' if want else 'none'}: make a new snapshot with these settings")
            name = key if key in ("seed", "reader_version") else f"task.{key}"
            raise ValueError(f"{where} was made with {name}={settings.get(key)!r}, the config has {want!r}: make "
                             "a new snapshot with these settings, or use the ones it was made with")
    sites = arrays["sites"].tolist()
    table = ImageTable(images=arrays["images"], labels=arrays["labels"], groups=arrays["groups"],
                       class_names=tuple(arrays["class_names"].tolist()), ids=tuple(arrays["ids"].tolist()),
                       origin=tuple(arrays["origin"].tolist()), name=str(arrays["name"]),
                       sites=tuple(sites) if sites else None)
    fields = {f.name for f in dataclasses.fields(DataReport)}
    report = DataReport(**{k: v for k, v in json.loads(str(arrays["report"])).items() if k in fields})
    report.notes.append(f"read from the snapshot {path.name} (made from {report.source})")
    return table, report
