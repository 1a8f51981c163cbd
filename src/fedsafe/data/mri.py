"""Brain-tumour MRI (Bhuvaji et al. 2020, Kaggle 1183165): list the files of the Kaggle layout.

Layout, at any root::

    ROOT/Training/{glioma_tumor,meningioma_tumor,no_tumor,pituitary_tumor}/*.jpg
    ROOT/Testing/{glioma_tumor,meningioma_tumor,no_tumor,pituitary_tumor}/*.jpg

File names contain spaces and parentheses ("gg (1).jpg"); nothing here parses them. Listing is sorted
(split, then class in task order, then file name), so it is the same on every machine. Each file
carries the sha256 of its bytes, the key of de-duplication (``dedup.py``) and of the cache (``cache.py``).

The papers' tasks pool Training and Testing (design §1.6); ``origin`` keeps where a file
came from ("train" for Training, "test" for Testing).

Example::

    files = list_mri_files(root, "meningioma")     # [MriFile(path, origin, class_name, label, sha256), ...]
    table, report = read_mri(root, "meningioma", size=64, channels=1, cache_dir=cache)
    table.groups                                   # (K,) near-duplicate group of each image
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..progress import Progress, report
from .cache import cached_decode
from .decode import RESAMPLE_NAME, check_size_channels, decode_files
from .dedup import deduplicate
from .grouping import cached_groups, join_groups
from .neardup import OFF_NOTE, NearDuplicateSettings, singletons
from .scans import ScanSettings
from .types import DataReport, ImageTable

__all__ = [
    "MRI_CLASSES", "MRI_SPLITS", "MRI_TASKS", "IMAGE_SUFFIXES", "MriFile", "sha256_file", "list_mri_files",
    "hash_listed", "not_a_file_error", "read_image_files", "read_mri", "skip_not_a_file",
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


def not_a_file_error(path: Path) -> str:
    """The report's error for ``path``, named like an image but no regular file, without opening it: "not a
    regular file: a FIFO", "...: a symbolic link to a character device", "...: a broken symbolic link"... (the MRI
    reader's and the image folder's, ``folder.py``)."""
    link = "a symbolic link to " if path.is_symlink() else ""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "not a regular file: " + ("a broken symbolic link" if link else "unreadable")
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return "not a regular file: " + link + next((name for test, name in kinds if test(mode)), "of a kind unknown")


def skip_not_a_file(path: Path, origin: str, class_name: str, not_files: list[dict[str, str]] | None) -> None:
    """Log ``path`` (named like an image, no regular file) as skipped and note it in ``not_files`` when given."""
    error = not_a_file_error(path)
    log.warning("skipping %s: %s", path, error)
    if not_files is not None:
        not_files.append({"file": str(path), "error": error, "origin": origin, "class_name": class_name})


def hash_listed(listed: list[tuple[Path, str, str, int]], progress: Progress | None) -> list[MriFile]:
    """(path, origin, class name, label) in listing order -> MriFile with the file's SHA-256, reporting progress."""
    files = []
    for i, (path, origin, cls, label) in enumerate(listed):
        files.append(MriFile(path=path, origin=origin, class_name=cls, label=label, sha256=sha256_file(path)))
        if (i + 1) % 256 == 0 or i + 1 == len(listed):
            report(progress, "hashing files", i + 1, len(listed))
    return files


def list_mri_files(root: Path | str, task: str, *, progress: Progress | None = None,
                   not_files: list[dict[str, str]] | None = None) -> list[MriFile]:
    """List and hash the image files of ``task`` under ``root`` (the brain-tumor-mri folder).

    Returns files in a fixed order: Training before Testing, classes in task order, names sorted.
    Hidden files and files without an image suffix are ignored. An entry named like an image that is no regular
    file (a FIFO, a device, a folder, a broken link) is never opened: it is appended to ``not_files`` when given
    (``{"file", "error", "origin", "class_name"}``) and logged.

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
                if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if path.is_file():
                    paths.append((path, MRI_SPLITS[split], cls, label))
                    continue
                skip_not_a_file(path, MRI_SPLITS[split], cls, not_files)
    for cls in classes:
        if not any(p[2] == cls for p in paths):
            raise ValueError(f"{root}: class {cls!r} has no image files in {' or '.join(splits)}")
    files = hash_listed(paths, progress)
    log.info("%s: listed %d files of task %s", root, len(files), task)
    return files


def read_mri(
    root: Path | str, task: str, *, size: int, channels: int, cache_dir: Path | None = None, strict: bool = False,
    drop_conflicts: bool = False, near_duplicates: NearDuplicateSettings | None = NearDuplicateSettings(),
    same_scan: ScanSettings | None = ScanSettings(), progress: Progress | None = None,
) -> tuple[ImageTable, DataReport]:
    """Read an MRI task: list and hash its files (:func:`list_mri_files`), then :func:`read_image_files`
    (decode through the cache, pool Training + Testing, de-duplicate, group)."""
    root = Path(root)
    classes = _task_classes(task)
    check_size_channels(size, channels)
    not_files: list[dict[str, str]] = []
    files = list_mri_files(root, task, progress=progress, not_files=not_files)
    table, report_, _ = read_image_files(
        files, root=root, task=task, classes=classes, size=size, channels=channels, cache_dir=cache_dir,
        strict=strict, drop_conflicts=drop_conflicts, near_duplicates=near_duplicates, same_scan=same_scan,
        progress=progress, pooled_note="Training and Testing pooled (design §1.6); origin tells where "
        "each kept file came from", not_files=not_files)
    return table, report_


def read_image_files(
    files: list[MriFile], *, root: Path, task: str, classes: tuple[str, ...], size: int, channels: int,
    cache_dir: Path | None, strict: bool, drop_conflicts: bool, near_duplicates: NearDuplicateSettings | None,
    same_scan: ScanSettings | None, progress: Progress | None, pooled_note: str,
    not_files: Sequence[Mapping[str, str]] = (),
) -> tuple[ImageTable, DataReport, list[MriFile]]:
    """Read listed, hashed image files of one task (the MRI layout's, or an image folder's, ``folder.py``).

    Order matters: every distinct file content is decoded first, so unreadable files (empty, truncated, an
    HTML page saved as .jpg, pixel values without a known range) are skipped, counted and named before
    de-duplication and never form a duplicate group; exact de-duplication then runs on the readable files
    (the copy of the first origin listed is kept); near-duplicates and adjacent slices of one scan are grouped
    last (``grouping.py``; ``same_scan=None`` groups near-duplicates only, ``near_duplicates=None`` leaves every
    image alone).

    Returns an ImageTable of images (K, size, size, channels) uint8, labels (K,), ids = file sha256, origin
    (where the kept copy came from) and near-duplicate groups; the DataReport; and the kept files, in table
    order. ``not_files``: entries named like images that are no regular file (:func:`list_mri_files`), named
    and counted as unreadable. ``cache_dir=None`` decodes without caching. Raises ValueError for label conflicts
    among duplicates (unless ``drop_conflicts``), an unreadable file under ``strict``, or a class left empty after
    reading.
    """
    first_of: dict[str, int] = {}
    for i, f in enumerate(files):
        first_of.setdefault(f.sha256, i)
    distinct = [files[i] for i in first_of.values()]
    paths = [f.path for f in distinct]
    hashes = [f.sha256 for f in distinct]
    if cache_dir is None:
        decoded, hit = decode_files(paths, size=size, channels=channels, strict=strict, progress=progress), False
    else:
        decoded, hit = cached_decode(paths, hashes, task=task, size=size, channels=channels,
                                     cache_dir=Path(cache_dir), strict=strict, progress=progress)
    row_of = {hashes[k]: r for r, k in enumerate(decoded.ok.tolist())}
    hash_of_path = {str(p): h for p, h in zip(paths, hashes, strict=True)}
    error_of = {hash_of_path[u["file"]]: u["error"] for u in decoded.unreadable}
    readable = [f for f in files if f.sha256 in row_of]
    unreadable = [{"file": str(f.path), "error": error_of.get(f.sha256, "unreadable")}
                  for f in files if f.sha256 not in row_of]
    unreadable += [{"file": n["file"], "error": n["error"]} for n in not_files]

    dd = deduplicate([f.sha256 for f in readable], [f.label for f in readable], [f.origin for f in readable],
                     names=[str(f.path) for f in readable], drop_conflicts=drop_conflicts)
    kept = [readable[i] for i in dd.keep]
    labels = np.array([f.label for f in kept], dtype=np.int64)
    for label, cls in enumerate(classes):
        if not np.any(labels == label):
            raise ValueError(f"{root}: class {cls!r} is empty after reading (every file unreadable or dropped)")
    images = decoded.images[np.array([row_of[f.sha256] for f in kept], dtype=np.int64)]
    if near_duplicates is None:
        grouped = join_groups(singletons(len(kept), OFF_NOTE), None)
    else:
        grouped = cached_groups([f.path for f in kept], [f.sha256 for f in kept], near_duplicates, same_scan,
                                cache_dir=cache_dir, task=task, progress=progress)
    near = grouped.near
    table = ImageTable(images=images, labels=labels, class_names=classes, ids=tuple(f.sha256 for f in kept),
                       origin=tuple(f.origin for f in kept), name=task, groups=grouped.groups)

    sizes = Counter(decoded.sizes[row_of[f.sha256]] for f in readable)
    counts: dict[str, dict[str, int]] = {}
    for origin in dict.fromkeys(f.origin for f in files):
        per_class = Counter([f.class_name for f in files if f.origin == origin]
                            + [n["class_name"] for n in not_files if n["origin"] == origin])
        if per_class:
            counts[origin] = {cls: per_class.get(cls, 0) for cls in classes}
    notes = [
        pooled_note,
        f"exact duplicates (sha256 of file bytes) removed: {dd.counts['removed']} of {len(readable)} readable "
        f"files; the {files[0].origin if files else 'first'} copy is kept",
        "images read from the cache " + str(cache_dir) if hit else
        "images decoded" + ("" if cache_dir is None else f" and cached in {cache_dir}"),
    ]
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable file(s) ({len(error_of)} distinct contents"
                     + (f", {len(not_files)} not a regular file" if not_files else "")
                     + ") skipped before de-duplication: they form no duplicate group and no label conflict")
    if dd.conflicts:
        named = "; ".join(" = ".join(c["files"]) for c in dd.conflicts[:3])
        notes.append(f"{len(dd.conflicts)} duplicate group(s) with conflicting labels dropped entirely "
                     f"(task.label_conflicts=drop): {named}" + (" ..." if len(dd.conflicts) > 3 else ""))
    names = [str(f.path.relative_to(root)) for f in kept]
    near_summary = grouped.summary(labels, names)
    if near.settings is not None:
        notes.append(f"near-duplicates: {near.counts['groups']} group(s) hold {near.counts['images_in_groups']} "
                     f"of {len(kept)} images ({near_summary['mixed_label_groups']} with mixed labels)"
                     + (" (grouping read from the cache)" if grouped.cached else ""))
        if grouped.scans is not None:
            scan = grouped.scans.counts
            notes.append(f"same scan (adjacent slices): {scan['confirmed_pairs']} pair(s), {scan['groups']} group(s) "
                         f"holding {scan['images_in_groups']} images")
        notes.append(f"split groups (near-duplicates and same-scan slices joined): {grouped.counts['groups']} "
                     f"group(s) hold {grouped.counts['images_in_groups']} of {len(kept)} images (largest "
                     f"{grouped.counts['largest_group']}); splits keep each group inside one set")
    else:
        notes.append(near.note)
    flat = images.reshape(len(images), -1)
    blank = int(np.sum(flat.min(axis=1) == flat.max(axis=1))) if len(images) else 0
    if blank:
        notes.append(f"{blank} image(s) are a single grey level after decoding: check those files")
    report_ = DataReport(
        task=task, source=str(root), counts=counts, sizes=dict(sizes.most_common()), unreadable=unreadable,
        duplicates=dict(dd.counts), kept=table.class_counts(), notes=notes,
        preprocessing={"size": size, "channels": channels, "resample": RESAMPLE_NAME,
                       "colour": "L (ITU-R 601-2 luma)" if channels == 1 else "RGB",
                       "pooled": list(counts), "deduplicated": True},
        near_duplicates=near_summary,
    )
    log.info("%s: %d images kept of %d files", task, len(table), len(files))
    return table, report_, kept
