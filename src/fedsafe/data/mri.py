"""Brain-tumour MRI (Bhuvaji et al. 2020, Kaggle 1183165): list the files of the Kaggle layout.

Layout, at any root::

    ROOT/Training/{glioma_tumor,meningioma_tumor,no_tumor,pituitary_tumor}/*.jpg
    ROOT/Testing/{glioma_tumor,meningioma_tumor,no_tumor,pituitary_tumor}/*.jpg

File names contain spaces and parentheses ("gg (1).jpg"); nothing here parses them. Listing is sorted
(split, then class in task order, then file name), so it is the same on every machine. Each file
carries the sha256 of its bytes, the key of de-duplication (``dedup.py``) and of the cache (``cache.py``).

The papers' tasks pool Training and Testing (SPEC section 1, Splits); ``origin`` keeps where a file
came from ("train" for Training, "test" for Testing).

Example::

    files = list_mri_files(root, "meningioma")     # [MriFile(path, origin, class_name, label, sha256), ...]
    table, report = read_mri(root, "meningioma", size=64, channels=1, cache_dir=cache)
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..progress import Progress, report
from .cache import cached_decode
from .decode import RESAMPLE_NAME, check_size_channels, decode_files
from .dedup import deduplicate
from .types import DataReport, ImageTable

__all__ = [
    "MRI_CLASSES", "MRI_SPLITS", "MRI_TASKS", "IMAGE_SUFFIXES", "MriFile", "sha256_file", "list_mri_files",
    "read_mri",
]

log = logging.getLogger(__name__)

MRI_CLASSES: tuple[str, ...] = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
"""The four class folders of the Kaggle layout, alphabetical."""

MRI_SPLITS: dict[str, str] = {"Training": "train", "Testing": "test"}
"""Split folder -> origin name used in :class:`~fedsafe.data.types.ImageTable`."""

MRI_TASKS: dict[str, tuple[str, ...]] = {
    "meningioma": ("no_tumor", "meningioma_tumor"),
    "glioma": ("no_tumor", "glioma_tumor"),
    "brain-tumor-4class": MRI_CLASSES,
}
"""Task -> class folders; the label of a file is the index of its folder in this tuple."""

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class MriFile:
    """One listed image file.

    path: the file; origin: "train" (Training) or "test" (Testing); class_name: its folder;
    label: index of class_name in the task's classes; sha256: hex digest of the file's bytes.
    """

    path: Path
    origin: str
    class_name: str
    label: int
    sha256: str


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _task_classes(task: str) -> tuple[str, ...]:
    try:
        return MRI_TASKS[task]
    except KeyError:
        raise ValueError(f"unknown MRI task {task!r}; known: {', '.join(MRI_TASKS)}") from None


def list_mri_files(root: Path | str, task: str, *, progress: Progress | None = None) -> list[MriFile]:
    """List and hash the image files of ``task`` under ``root`` (the brain-tumor-mri folder).

    Returns files in a fixed order: Training before Testing, classes in task order, names sorted.
    Hidden files and files without an image suffix are ignored.

    Raises ValueError when the root or both split folders are missing, or when a class of the task
    has no folder in any split (message names the root and the class).
    """
    root = Path(root)
    classes = _task_classes(task)
    if not root.is_dir():
        raise ValueError(f"MRI data root not found: {root}")
    splits = [s for s in MRI_SPLITS if (root / s).is_dir()]
    if not splits:
        raise ValueError(f"{root}: no Training or Testing folder (expected the Kaggle layout ROOT/Training/<class>/)")
    for missing in sorted(set(MRI_SPLITS) - set(splits)):
        log.warning("%s: no %s folder; reading %s only", root, missing, ", ".join(splits))
    paths: list[tuple[Path, str, str, int]] = []
    for split in splits:
        for label, cls in enumerate(classes):
            folder = root / split / cls
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir(), key=lambda p: p.name):
                if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
                    paths.append((path, MRI_SPLITS[split], cls, label))
    for cls in classes:
        if not any(p[2] == cls for p in paths):
            raise ValueError(f"{root}: class {cls!r} has no image files in {' or '.join(splits)}")
    files = []
    for i, (path, origin, cls, label) in enumerate(paths):
        files.append(MriFile(path=path, origin=origin, class_name=cls, label=label, sha256=sha256_file(path)))
        if (i + 1) % 256 == 0 or i + 1 == len(paths):
            report(progress, "hashing files", i + 1, len(paths))
    log.info("%s: listed %d files of task %s", root, len(files), task)
    return files


def read_mri(
    root: Path | str, task: str, *, size: int, channels: int, cache_dir: Path | None = None, strict: bool = False,
    drop_conflicts: bool = False, progress: Progress | None = None,
) -> tuple[ImageTable, DataReport]:
    """Read an MRI task: list, hash, pool Training + Testing, de-duplicate, decode (through the cache).

    Returns an ImageTable of images (K, size, size, channels) uint8, labels (K,), ids = file sha256 and
    origin "train"/"test" (where the kept copy came from: Training wins), and the DataReport.
    ``cache_dir=None`` decodes without caching. Raises ValueError for a missing root, an unknown task,
    label conflicts among duplicates (unless ``drop_conflicts``), an unreadable file under ``strict``,
    or a class left empty after reading.
    """
    root = Path(root)
    classes = _task_classes(task)
    check_size_channels(size, channels)
    files = list_mri_files(root, task, progress=progress)
    dd = deduplicate([f.sha256 for f in files], [f.label for f in files], [f.origin for f in files],
                     names=[str(f.path) for f in files], drop_conflicts=drop_conflicts)
    kept = [files[i] for i in dd.keep]
    paths = [f.path for f in kept]
    hashes = [f.sha256 for f in kept]
    if cache_dir is None:
        decoded, hit = decode_files(paths, size=size, channels=channels, strict=strict, progress=progress), False
    else:
        decoded, hit = cached_decode(paths, hashes, task=task, size=size, channels=channels,
                                     cache_dir=Path(cache_dir), strict=strict, progress=progress)
    ok = [kept[i] for i in decoded.ok]
    labels = np.array([f.label for f in ok], dtype=np.int64)
    for label, cls in enumerate(classes):
        if not np.any(labels == label):
            raise ValueError(f"{root}: class {cls!r} is empty after reading (every file unreadable or dropped)")
    table = ImageTable(images=decoded.images, labels=labels, class_names=classes,
                       ids=tuple(f.sha256 for f in ok), origin=tuple(f.origin for f in ok), name=task)

    size_of = {f.sha256: s for f, s in zip(ok, decoded.sizes, strict=True)}
    sizes = Counter(size_of[f.sha256] for f in files if f.sha256 in size_of)
    counts: dict[str, dict[str, int]] = {}
    for origin in MRI_SPLITS.values():
        per_class = Counter(f.class_name for f in files if f.origin == origin)
        if per_class:
            counts[origin] = {cls: per_class.get(cls, 0) for cls in classes}
    notes = [
        "Training and Testing pooled (SPEC section 1, Splits); origin tells where each kept file came from",
        f"exact duplicates (sha256 of file bytes) removed: {dd.counts['removed']} of {len(files)} files; "
        "the Training copy is kept",
        "images read from the cache " + str(cache_dir) if hit else
        "images decoded" + ("" if cache_dir is None else f" and cached in {cache_dir}"),
    ]
    if dd.conflicts:
        notes.append(f"{len(dd.conflicts)} duplicate group(s) with conflicting labels dropped entirely")
    if decoded.unreadable:
        notes.append(f"{len(decoded.unreadable)} unreadable file(s) skipped (and any byte-identical copies)")
    report_ = DataReport(
        task=task, source=str(root), counts=counts, sizes=dict(sizes.most_common()),
        unreadable=list(decoded.unreadable), duplicates=dict(dd.counts), kept=table.class_counts(), notes=notes,
        preprocessing={"size": size, "channels": channels, "resample": RESAMPLE_NAME,
                       "colour": "L (ITU-R 601-2 luma)" if channels == 1 else "RGB",
                       "pooled": list(counts), "deduplicated": True},
    )
    log.info("%s: %d images kept of %d files", task, len(table), len(files))
    return table, report_
