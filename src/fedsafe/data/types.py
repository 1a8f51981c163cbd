"""Shared data containers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ImageTable", "DataReport"]


@dataclass(frozen=True)
class ImageTable:
    """Decoded, resized images of one task, ready to split.

    images: (N, H, W, C) uint8, C = 1 (grey) or 3 (RGB), H == W (square).
    labels: (N,) int64 in [0, len(class_names)).
    ids: (N,) stable identifiers (content hash of the source file, or "name:index").
    origin: (N,) the split each image came from in its source ("train", "test", "val", "synthetic").
    groups: (N,) int64 near-duplicate group id per image (``neardup.py``): images with the same id are
    copies of one picture (e.g. one scan saved with two JPEG encodings) and must stay in one split; an
    image alone has an id no other image has. ``None`` (the default) means all distinct: ``arange(N)``.
    sites: (N,) the hospital of each image (the image-folder task's sites CSV, ``folder.py``), or ``None``.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    ids: tuple[str, ...]
    origin: tuple[str, ...]
    name: str
    groups: np.ndarray | None = None
    sites: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        groups = np.arange(n, dtype=np.int64) if self.groups is None else np.asarray(self.groups)
        if groups.shape != (n,) or (n and not np.issubdtype(groups.dtype, np.integer)):
            raise ValueError(f"{self.name}: groups must be ({n},) integers, got {groups.shape} {groups.dtype}")
        groups = groups.astype(np.int64, copy=True)
        groups.setflags(write=False)
        object.__setattr__(self, "groups", groups)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"{self.name}: images must be (N,H,W,C) uint8, got {self.images.shape} {self.images.dtype}")
        if self.sites is not None and len(self.sites) != n:
            raise ValueError(f"{self.name}: sites must have one entry per image ({n}), got {len(self.sites)}")
        if self.images.shape[0] != n or len(self.ids) != n or len(self.origin) != n:
            raise ValueError(f"{self.name}: images, labels, ids and origin differ in length")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"{self.name}: labels outside [0, {len(self.class_names)})")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ImageTable:
        index = np.asarray(index, dtype=np.int64)
        return ImageTable(
            images=self.images[index], labels=self.labels[index], class_names=self.class_names,
            ids=tuple(self.ids[i] for i in index), origin=tuple(self.origin[i] for i in index), name=self.name,
            groups=self.groups[index], sites=None if self.sites is None else tuple(self.sites[i] for i in index),
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {c: int(k) for c, k in zip(self.class_names, counts, strict=True)}


@dataclass
class DataReport:
    """What was read, dropped and kept. Serialisable with ``to_dict``; shown by ``fedsafe data check``."""

    task: str
    source: str  # data root, file, or "synthetic (embedded, procedurally generated)"
    synthetic: bool = False
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> files read
    sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> number of files
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {"file": ..., "error": ...}
    duplicates: dict[str, int] = field(default_factory=dict)  # named duplicate counts
    kept: dict[str, int] = field(default_factory=dict)  # class -> images kept after de-dup
    notes: list[str] = field(default_factory=list)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)  # set name -> class -> count
    preprocessing: dict[str, object] = field(default_factory=dict)
    # near-duplicate grouping (``neardup.NearDuplicates.summary``): counts, thresholds, example pairs
    near_duplicates: dict[str, object] = field(default_factory=dict)
    # the image-folder task's sites CSV (``folder.site_summary``): images per site and class, patients; empty without
    sites: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "task": self.task, "source": self.source, "synthetic": self.synthetic, "counts": self.counts,
            "sizes": self.sizes, "unreadable": self.unreadable, "duplicates": self.duplicates, "kept": self.kept,
            "notes": self.notes, "splits": self.splits, "preprocessing": self.preprocessing,
            "near_duplicates": self.near_duplicates, **({"sites": self.sites} if self.sites else {}),
        }
