"""PatchCamelyon (Veeling et al. 2018): read the official HDF5 files into one pooled ImageTable.

Official layout, in one folder (the ``.h5.gz`` downloads must be gunzipped first)::

    camelyonpatch_level_2_split_{train,valid,test}_x.h5   key "x": (N, 96, 96, 3) uint8
    camelyonpatch_level_2_split_{train,valid,test}_y.h5   key "y": (N, 1, 1, 1) uint8, 0 normal / 1 tumour

Official splits map to origin "train", "val" (valid) and "test". ``max_per_split`` reads only the first
n rows of each split (an HDF5 slice, never the whole file); rows are read in chunks, so memory holds the
resized output, not the 96x96 source. Exact duplicates (identical pixels) are removed, "train" copy kept.

Example::

    table, report = read_pcam(folder, size=96, channels=3, max_per_split=2000)
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from ..progress import Progress, report
from .decode import RESAMPLE_NAME, check_size_channels, resize_images
from .dedup import deduplicate
from .neardup import NearDuplicateSettings, group_arrays
from .types import DataReport, ImageTable

__all__ = ["PCAM_CLASSES", "PCAM_SPLITS", "PcamSplit", "pcam_file", "read_pcam_split", "read_pcam"]

log = logging.getLogger(__name__)

PCAM_CLASSES: tuple[str, ...] = ("normal", "tumor")
PCAM_SPLITS: dict[str, str] = {"train": "train", "val": "valid", "test": "test"}
"""origin name -> split name in the official file names."""
_CHUNK = 4096


def pcam_file(root: Path | str, split: str, kind: str) -> Path:
    """The official path of split ("train", "val", "test") and kind ("x", "y") under ``root``.

    Raises ValueError naming the missing file (and saying to gunzip if only ``.h5.gz`` is there).
    """
    if split not in PCAM_SPLITS:
        raise ValueError(f"unknown PCam split {split!r}; known: {', '.join(PCAM_SPLITS)}")
    if kind not in ("x", "y"):
        raise ValueError(f"PCam file kind must be 'x' or 'y', got {kind!r}")
    path = Path(root) / f"camelyonpatch_level_2_split_{PCAM_SPLITS[split]}_{kind}.h5"
    if not path.is_file():
        hint = "; gunzip the .h5.gz download first" if path.with_suffix(".h5.gz").is_file() else ""
        raise ValueError(f"PCam file not found: {path}{hint}")
    return path


class PcamSplit(NamedTuple):
    """One split read by :func:`read_pcam_split`.

    images: (n, size, size, channels) uint8; labels: (n,) int64; hashes: (n,) sha256 of each source
    patch's pixels; source_size: "WxH" of the source patches.
    """

    images: np.ndarray
    labels: np.ndarray
    hashes: list[str]
    source_size: str


def _dataset(file: h5py.File, key: str, path: Path) -> h5py.Dataset:
    if key not in file:
        raise ValueError(f"{path}: missing key {key!r} (has {', '.join(sorted(file.keys())) or 'nothing'})")
    ds = file[key]
    if not isinstance(ds, h5py.Dataset):
        raise ValueError(f"{path}: key {key!r} is not a dataset")
    return ds


def read_pcam_split(
    root: Path | str, split: str, *, size: int, channels: int, max_n: int | None = None,
    progress: Progress | None = None,
) -> PcamSplit:
    """Read the first ``max_n`` rows (all if None) of one split, in chunks."""
    check_size_channels(size, channels)
    x_path, y_path = pcam_file(root, split, "x"), pcam_file(root, split, "y")
    try:
        with h5py.File(x_path, "r") as fx, h5py.File(y_path, "r") as fy:
            x, y = _dataset(fx, "x", x_path), _dataset(fy, "y", y_path)
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
                raise ValueError(f"{x_path}: key 'x' must be (N,H,W,3) uint8, got {x.shape} {x.dtype}")
            if y.shape[0] != x.shape[0] or int(np.prod(y.shape[1:])) != 1:
                raise ValueError(f"{y_path}: key 'y' must be (N,1,1,1) with N = {x.shape[0]}, got {y.shape}")
            n = x.shape[0] if max_n is None else min(max_n, x.shape[0])
            images = np.empty((n, size, size, channels), dtype=np.uint8)
            hashes: list[str] = []
            source_size = f"{x.shape[2]}x{x.shape[1]}"
            for start in range(0, n, _CHUNK):
                stop = min(start + _CHUNK, n)
                block = x[start:stop]
                hashes.extend(hashlib.sha256(im.tobytes()).hexdigest() for im in block)
                images[start:stop] = resize_images(block, size=size, channels=channels)
                report(progress, f"reading pcam {split}", stop, n)
            labels = np.asarray(y[:n]).reshape(-1).astype(np.int64)
    except OSError as exc:
        raise ValueError(f"cannot read PCam split {split!r} under {root}: {exc}") from exc
    if len(labels) and (labels.min() < 0 or labels.max() > 1):
        raise ValueError(f"{y_path}: labels must be 0 (normal) or 1 (tumor), got {sorted(set(labels.tolist()))}")
    return PcamSplit(images, labels, hashes, source_size)


def read_pcam(
    root: Path | str, *, size: int = 96, channels: int = 3, max_per_split: int | None = None,
    splits: Sequence[str] = tuple(PCAM_SPLITS), deduplicate_images: bool = True, drop_conflicts: bool = False,
    near_duplicates: NearDuplicateSettings | None = NearDuplicateSettings(), progress: Progress | None = None,
) -> tuple[ImageTable, DataReport]:
    """Read the PCam splits under ``root`` into a pooled ImageTable and its DataReport.

    ids are "pcam:<split>:<row>", origin the official split. Near-duplicates are grouped on the resized
    images in grey when there are at most ``neardup.MAX_IMAGES`` (e.g. with ``max_per_split``); the full
    set (327,680 patches) is not searched (every image its own group, with a note). Raises ValueError for a
    missing folder, file or key, or bad shapes.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"PCam folder not found: {root}")
    if max_per_split is not None and max_per_split < 1:
        raise ValueError(f"max_per_split must be >= 1, got {max_per_split}")
    parts = {s: read_pcam_split(root, s, size=size, channels=channels, max_n=max_per_split, progress=progress)
             for s in splits}
    images = np.concatenate([p.images for p in parts.values()])
    labels = np.concatenate([p.labels for p in parts.values()])
    hashes = [h for p in parts.values() for h in p.hashes]
    origins = [s for s, p in parts.items() for _ in range(len(p.labels))]
    ids = [f"pcam:{s}:{i}" for s, p in parts.items() for i in range(len(p.labels))]
    sizes: Counter[str] = Counter()
    for p in parts.values():
        sizes[p.source_size] += len(p.labels)
    notes = [f"official splits {', '.join(parts)} pooled; origin keeps each image's split"]
    if max_per_split is not None:
        notes.append(f"at most the first {max_per_split} rows of each split read")
    keep, duplicates = np.arange(len(labels)), {}
    if deduplicate_images:
        dd = deduplicate(hashes, labels, origins, names=ids, drop_conflicts=drop_conflicts)
        keep, duplicates = dd.keep, dict(dd.counts)
        notes.append(f"exact duplicates (identical pixels) removed: {dd.counts['removed']} of {len(labels)}")
    near = group_arrays(images[keep], near_duplicates, progress=progress)
    table = ImageTable(images=images[keep], labels=labels[keep], class_names=PCAM_CLASSES,
                       ids=tuple(ids[i] for i in keep), origin=tuple(origins[i] for i in keep), name="pcam",
                       groups=near.groups)
    near_summary = near.summary(table.labels, table.ids)
    notes.append(near.note or f"near-duplicates: {near.counts['groups']} group(s) hold "
                              f"{near.counts['images_in_groups']} of {len(table)} images; splits keep each group "
                              "inside one set")
    counts = {s: dict(zip(PCAM_CLASSES, (int(k) for k in np.bincount(p.labels, minlength=2)), strict=True))
              for s, p in parts.items()}
    report_ = DataReport(
        task="pcam", source=str(root), counts=counts, sizes=dict(sizes.most_common()),
        duplicates=duplicates, kept=table.class_counts(), notes=notes,
        preprocessing={"size": size, "channels": channels, "resample": RESAMPLE_NAME,
                       "colour": "L (ITU-R 601-2 luma)" if channels == 1 else "RGB", "pooled": list(parts),
                       "deduplicated": deduplicate_images, "max_per_split": max_per_split},
        near_duplicates=near_summary,
    )
    return table, report_
