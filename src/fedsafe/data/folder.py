"""The ``image-folder`` task: the user's own images, one sub-folder per class.

Layout, at any root (class names are the folder names, labels their a-z order)::

    ROOT/<class>/<image>                         # or, pooled like the MRI tasks:
    ROOT/train/<class>/<image>  ROOT/test/<class>/<image>

Any file Pillow reads by its extension (PNG, JPEG, TIFF, BMP, ...; grey, RGB or 16-bit), hidden files
skipped. Reading is the MRI reader's (:func:`fedsafe.data.mri.read_image_files`): unreadable files reported
(entries named like images that are no regular file too, never opened),
exact duplicates removed, near-duplicates grouped, through the cache.

A *sites CSV* (``task.sites_csv``) names each image's hospital, and optionally its patient, by its path
relative to ROOT (``/`` separators)::

    file,site,patient
    train/tumour/a.png,hospital-A,P001

With it the federation is partitioned by site (client i = the i-th site, a-z; ``splits.py``'s per-site
splits in ``sites.py``) instead of a synthetic split, and the images of one patient (of one site) form one
group, kept in one set like a near-duplicate group. Every image must have a row; rows for files that are not
there are an error, for unreadable or duplicate files a note.

Example::

    table, report = read_image_folder(root, size=64, channels=1, sites_csv=root / "sites.csv")
    table.class_names, table.sites[:2]        # ('benign', 'malignant'), ('hospital-A', 'hospital-A')
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ..progress import Progress
from .decode import check_size_channels
from .mri import MriFile, hash_listed, read_image_files, skip_not_a_file
from .neardup import NearDuplicateSettings
from .scans import ScanSettings
from .types import DataReport, ImageTable

__all__ = ["FOLDER_SPLITS", "SiteTable", "folder_classes", "list_folder_files", "read_image_folder",
           "read_sites_csv", "site_summary"]

log = logging.getLogger(__name__)

FOLDER_SPLITS: dict[str, str] = {"train": "train", "test": "test"}
"""Optional split folders above the class folders -> origin; without them every image has origin "folder"."""


def _suffixes() -> frozenset[str]:
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _split_dirs(root: Path) -> list[tuple[Path, str]]:
    """(folder holding the class folders, origin) pairs of ``root``."""
    if not root.is_dir():
        raise ValueError(f"image folder not found: {root}")
    splits = [(root / s, o) for s, o in FOLDER_SPLITS.items() if (root / s).is_dir()]
    return splits or [(root, "folder")]


def folder_classes(root: Path | str) -> tuple[str, ...]:
    """The class names of an image folder (its class folders' names, a-z, over train/ and test/).

    Raises ValueError (one line, naming the root) when there are fewer than two."""
    root = Path(root)
    names = sorted({d.name for base, _ in _split_dirs(root) for d in _visible_dirs(base)})
    if len(names) < 2:
        where = " or ".join(str(b) for b, _ in _split_dirs(root))
        found = f"only {names[0]!r}" if names else "none"
        raise ValueError(f"{root}: an image-folder task needs one sub-folder per class, at least two, in {where}; "
                         f"found {found}")
    return tuple(names)


def list_folder_files(root: Path | str, *, progress: Progress | None = None,
                      not_files: list[dict[str, str]] | None = None) -> list[MriFile]:
    """List and hash the images of an image folder: split (train before test), class a-z, file name.

    Files in sub-folders of a class folder belong to that class. An entry named like an image that is neither a
    regular file nor a folder (a FIFO, a device, a broken link) is never opened: as in
    :func:`fedsafe.data.mri.list_mri_files`, it is appended to ``not_files`` when given (``{"file", "error",
    "origin", "class_name"}``) and logged. Raises ValueError for a missing root, fewer than two class folders, or
    a class without any image file."""
    root = Path(root)
    classes = folder_classes(root)
    suffixes = _suffixes()
    listed: list[tuple[Path, str, str, int]] = []
    for base, origin in _split_dirs(root):
        for label, cls in enumerate(classes):
            if not (base / cls).is_dir():
                continue
            for path in sorted((base / cls).rglob("*"), key=lambda p: p.relative_to(base / cls).as_posix()):
                rel = path.relative_to(base / cls).parts
                if any(p.startswith(".") for p in rel) or path.suffix.lower() not in suffixes or path.is_dir():
                    continue  # a folder named like an image is one more sub-folder of the class
                if path.is_file():
                    listed.append((path, origin, cls, label))
                    continue
                skip_not_a_file(path, origin, cls, not_files)
    for cls in classes:
        if not any(p[2] == cls for p in listed):
            raise ValueError(f"{root}: class folder {cls!r} holds no image file")
    return hash_listed(listed, progress)


@dataclasses.dataclass(frozen=True)
class SiteTable:
    """The rows of a sites CSV: relative file path -> site, -> patient ("" when not given), and -> the line of
    the CSV that names it (for the errors)."""

    site: dict[str, str]
    patient: dict[str, str]
    line: dict[str, int] = dataclasses.field(default_factory=dict)


def read_sites_csv(path: Path | str) -> SiteTable:
    """Read a sites CSV (columns ``file``, ``site`` and optionally ``patient``; other columns ignored).

    Raises ValueError (one line naming the file, line or column) for a missing file or column, an empty file or
    site, a file named twice, text that is not UTF-8 or a line the CSV reader rejects."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sites CSV not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    site: dict[str, str] = {}
    patient: dict[str, str] = {}
    where: dict[str, int] = {}
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    line = 1  # the header's
    try:
        columns = [c.strip() for c in reader.fieldnames or []]
        for need in ("file", "site"):
            if need not in columns:
                raise ValueError(f"{path}: no {need!r} column (columns: {', '.join(columns) or 'none'}); "
                                 "expected file,site[,patient]")
        for row in reader:
            line = reader.line_num  # the file's line (blank lines counted) where the row ends
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str | None)}
            name = row.get("file", "").replace("\\", "/").removeprefix("./")
            if not name or not row.get("site"):
                raise ValueError(f"{path}, line {line}: empty {'file' if not name else 'site'}")
            if name in site:
                raise ValueError(f"{path}, line {line}: {name!r} is named twice (first on line {where[name]})")
            site[name], patient[name], where[name] = row["site"], row.get("patient", ""), line
    except csv.Error as exc:
        # the row after the last one read (the reader's own count is not always there yet when it fails)
        raise ValueError(f"{path}, line {line + 1}: {' '.join(str(exc).split())}") from None
    if not site:
        raise ValueError(f"{path}: no rows")
    return SiteTable(site=site, patient=patient, line=where)


def site_summary(sites: tuple[str, ...], patients: list[str], labels: np.ndarray, class_names: tuple[str, ...],
                 groups: np.ndarray) -> dict[str, object]:
    """What ``fedsafe data check`` shows of a sites CSV (and ``DataReport.sites`` holds): per site its images,
    images per class, patients named and images without a patient; over all sites the patients (a patient is a
    site's patient id: one id at two sites is two patients, counted in ``patient_ids_at_two_sites``), the most
    images of one patient, and the split groups left after joining patients and near-duplicates.

    >>> s = site_summary(("A", "A", "B"), ["p", "p", ""], np.array([0, 1, 1]), ("x", "y"), np.array([0, 0, 1]))
    >>> s["sites"]["A"], s["patients"], s["largest_patient"], s["split_groups"]
    ({'images': 2, 'classes': {'x': 1, 'y': 1}, 'patients': 1, 'images_without_patient': 0}, 1, 2, 2)
    """
    per: dict[str, dict[str, object]] = {}
    for name in sorted(set(sites)):
        idx = [i for i, s in enumerate(sites) if s == name]
        counts = np.bincount(np.asarray(labels)[idx], minlength=len(class_names))
        per[name] = {"images": len(idx), "classes": {c: int(k) for c, k in zip(class_names, counts, strict=True)},
                     "patients": len({patients[i] for i in idx if patients[i]}),
                     "images_without_patient": sum(1 for i in idx if not patients[i])}
    sizes = Counter((s, p) for s, p in zip(sites, patients, strict=True) if p)
    ids_at = Counter(p for _, p in sizes)
    return {"sites": per, "patients": len(sizes), "largest_patient": max(sizes.values(), default=0),
            "patient_ids_at_two_sites": sum(n > 1 for n in ids_at.values()),
            "split_groups": len(set(np.asarray(groups).tolist()))}


def _join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of two groupings of the same items (items sharing a group in a or b are joined),
    numbered 0.. in order of first appearance."""
    parent = list(range(len(a)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for g in (a, b):
        first: dict[int, int] = {}
        for i, key in enumerate(g.tolist()):
            j = first.setdefault(key, i)
            parent[find(i)] = find(j)
    roots = [find(i) for i in range(len(a))]
    number: dict[int, int] = {}
    return np.array([number.setdefault(r, len(number)) for r in roots], dtype=np.int64)


def _apply_sites(table: ImageTable, report_: DataReport, kept: list[MriFile], root: Path, csv_path: Path,
                 listed: list[MriFile]) -> ImageTable:
    sites = read_sites_csv(csv_path)
    rel = [f.path.relative_to(root).as_posix() for f in kept]
    missing = [r for r in rel if r not in sites.site]
    if missing:
        raise ValueError(f"{csv_path}: {len(missing)} image(s) have no row, e.g. {missing[0]!r} (file paths are "
                         f"relative to {root})")
    all_rel = {f.path.relative_to(root).as_posix() for f in listed}
    absent = [r for r in sites.site if r not in all_rel]
    if absent:
        raise ValueError(f"{csv_path}, line {sites.line[absent[0]]}: {len(absent)} row(s) name files that are not "
                         f"images under {root}, e.g. {absent[0]!r}")
    unused = len(sites.site) - len(rel)
    site_of = tuple(sites.site[r] for r in rel)
    pid = [f"{s}\x00{sites.patient[r]}" if sites.patient[r] else f"\x01{i}" for i, (s, r) in
           enumerate(zip(site_of, rel, strict=True))]
    patient_groups = np.unique(np.array(pid, dtype=object), return_inverse=True)[1].reshape(-1).astype(np.int64)
    groups = _join(np.asarray(table.groups), patient_groups)
    n_sites = len(set(site_of))
    patients = len({p for p in pid if not p.startswith("\x01")})
    per_site = ", ".join(f"{s} {site_of.count(s)}" for s in sorted(set(site_of)))
    report_.notes.append(f"sites from {csv_path}: {n_sites} site(s) (images: {per_site}), one "
                         f"client each; {patients} patient(s) named, each patient's images kept in one set "
                         f"({len(set(groups.tolist()))} split groups after joining patients and near-duplicates)"
                         + (f"; {unused} row(s) for unreadable or duplicate files unused" if unused else ""))
    report_.sites = {"csv": str(csv_path), **site_summary(site_of, [sites.patient[r] for r in rel], table.labels,
                                                           table.class_names, groups), "unused_rows": unused}
    return dataclasses.replace(table, groups=groups, sites=site_of)


def read_image_folder(
    root: Path | str, *, size: int, channels: int, cache_dir: Path | None = None, strict: bool = False,
    drop_conflicts: bool = False, near_duplicates: NearDuplicateSettings | None = NearDuplicateSettings(),
    same_scan: ScanSettings | None = None, sites_csv: Path | str | None = None, progress: Progress | None = None,
) -> tuple[ImageTable, DataReport]:
    """Read an image folder (module docstring): its ImageTable (classes from the folders; ``sites`` from the
    sites CSV, patients joined into the groups) and DataReport. ``same_scan`` (adjacent slices of one scan,
    ``scans.py``) is off by default: it reads the Kaggle MRI file names. Raises ValueError (one line) as
    :func:`list_folder_files`, :func:`read_sites_csv` and :func:`fedsafe.data.mri.read_image_files` do, and
    for a sites CSV that misses an image or names a file that is not there."""
    root = Path(root)
    check_size_channels(size, channels)
    classes = folder_classes(root)
    not_files: list[dict[str, str]] = []
    files = list_folder_files(root, progress=progress, not_files=not_files)
    origins = sorted({f.origin for f in files})
    pooled = ("train and test pooled (design §1.6); origin tells where each kept file came from"
              if origins != ["folder"] else "one pool of images (no train/ or test/ folder)")
    table, report_, kept = read_image_files(
        files, root=root, task="image-folder", classes=classes, size=size, channels=channels, cache_dir=cache_dir,
        strict=strict, drop_conflicts=drop_conflicts, near_duplicates=near_duplicates, same_scan=same_scan,
        progress=progress, pooled_note=pooled, not_files=not_files)
    if sites_csv is not None:
        table = _apply_sites(table, report_, kept, root, Path(sites_csv), files)
    log.info("image-folder %s: %d images of %d classes", root, len(table), len(classes))
    return table, report_
