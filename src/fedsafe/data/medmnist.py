"""MedMNIST v2 (Yang et al., Scientific Data 2023): read a 2D ``.npz`` into one pooled ImageTable.

File layout (numpy ``.npz``): ``{train,val,test}_images`` (N, H, W) grey or (N, H, W, 3) RGB uint8 and
``{train,val,test}_labels`` (N,) or (N, 1) integers. The official splits are pooled into one table;
``origin`` keeps each image's official split ("train", "val", "test"), so a caller can rebuild them.
Multi-label sets (ChestMNIST, labels (N, 14)) do not fit a single-label table and are refused.

Exact duplicates (identical pixel arrays) are removed as for the MRI files, the "train" copy kept
(then "val", then "test"). The shared BreastMNIST copy holds one such pair, and it carries two labels
(train[115] malignant, test[76] normal+benign): with ``drop_conflicts=True`` both copies go.

Near-duplicates (``neardup.py``) are grouped on the kept source arrays, in grey at their own size (sets
above ``neardup.MAX_IMAGES`` images are not searched: every image its own group, with a note).

Example::

    table, report = read_medmnist("breastmnist.npz", size=28, channels=1, drop_conflicts=True)
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..progress import Progress
from .decode import RESAMPLE_NAME, check_size_channels, resize_images
from .dedup import deduplicate
from .neardup import NearDuplicateSettings, group_arrays
from .types import DataReport, ImageTable

__all__ = [
    "MEDMNIST_SPLITS", "MEDMNIST_CLASSES", "find_medmnist_file", "not_npz_reason", "npz_load_error",
    "load_npz_arrays", "read_medmnist",
]

log = logging.getLogger(__name__)

MEDMNIST_SPLITS: tuple[str, ...] = ("train", "val", "test")

_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
           "lung-right", "pancreas", "spleen")
MEDMNIST_CLASSES: dict[str, tuple[str, ...]] = {
    "breastmnist": ("malignant", "normal+benign"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "pathmnist": ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
    "dermamnist": ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "retinamnist": ("0", "1", "2", "3", "4"),
    "bloodmnist": ("basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte", "monocyte",
                   "neutrophil", "platelet"),
    "tissuemnist": ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                    "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"),
    "organamnist": _ORGANS,
    "organcmnist": _ORGANS,
    "organsmnist": _ORGANS,
}
"""Class names of the single-label 2D MedMNIST sets (label index order, from the medmnist INFO table)."""


def find_medmnist_file(path: Path | str, name: str) -> Path:
    """``path`` itself if it is a file, else ``path/<name>.npz``. Raises ValueError naming what is missing."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / f"{name}.npz"
        if candidate.is_file():
            return candidate
        raise ValueError(f"{path}: no {name}.npz in this folder")
    raise ValueError(f"MedMNIST file or folder not found: {path}")


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<!--", b"<meta", b"<title")


def not_npz_reason(path: Path) -> str | None:
    """Why ``path`` is not an npz archive, judged from its first bytes; None when it starts like one (a zip).

    Names the usual culprits: an HTML page (a login, error or redirect page saved under the data's name),
    an empty file, a single .npy array, a gzip file.
    """
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(_ZIP_MAGIC):
        return None
    text = head.lstrip().lower()
    if not head:
        return "the file is empty, not an npz archive"
    if text.startswith(_HTML_STARTS) or b"<html" in text:
        return ("the file is an HTML page, not an npz archive (a login, error or redirect page saved in place of "
                "the data?)")
    if head.startswith(b"\x93NUMPY"):
        return "the file is a single .npy array, not an npz archive of named arrays"
    if head.startswith(b"\x1f\x8b"):
        return "the file is gzip-compressed, not an npz archive (gunzip it first?)"
    return f"the file is not an npz (zip) archive (it starts with {head[:12]!r})"


def npz_load_error(path: Path, exc: BaseException) -> str:
    """A one-line reason why ``np.load(path, allow_pickle=False)`` failed, that never suggests allowing pickles."""
    try:
        reason = not_npz_reason(path)
    except OSError as os_exc:
        return f"cannot read the file ({os_exc.strerror or os_exc})"
    if reason is not None:
        return reason
    if "pickle" in str(exc):
        return "it holds pickled Python objects (object arrays), which are never loaded; MedMNIST npz files hold " \
               "plain uint8 and integer arrays"
    return f"not a readable npz archive ({type(exc).__name__}: {exc})"


def _name_from_file(path: Path) -> str:
    return re.sub(r"_\d+$", "", path.stem).lower()


def load_npz_arrays(
    path: Path, splits: Sequence[str] = MEDMNIST_SPLITS, *, max_per_split: int | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (images (N,H,W) or (N,H,W,3) uint8, labels (N,) int64), checked.

    Raises ValueError (one line, naming the file and the key) for a missing key, a bad shape or dtype,
    multi-label labels, or images and labels of different lengths.
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: {npz_load_error(path, exc)}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: {not_npz_reason(path) or 'not an npz archive of named arrays'}")
    with data:
        for split in splits:
            arrays = []
            for key in (f"{split}_images", f"{split}_labels"):
                if key not in data.files:
                    raise ValueError(f"{path}: missing key {key!r} (has {', '.join(sorted(data.files))})")
                arrays.append(data[key])
            images, labels = arrays
            if images.ndim == 4 and images.shape[-1] == 1:
                images = images[..., 0]
            if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
                raise ValueError(f"{path}: key '{split}_images' must be (N,H,W) or (N,H,W,3) uint8, "
                                 f"got {images.shape} {images.dtype}")
            if labels.ndim == 2 and labels.shape[1] != 1:
                raise ValueError(f"{path}: key '{split}_labels' is multi-label {labels.shape}; only single-label "
                                 "MedMNIST sets are supported")
            if labels.ndim not in (1, 2) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"{path}: key '{split}_labels' must be (N,) or (N,1) integers, "
                                 f"got {labels.shape} {labels.dtype}")
            labels = labels.reshape(-1).astype(np.int64)
            if len(labels) != len(images):
                raise ValueError(f"{path}: '{split}_images' has {len(images)} rows but '{split}_labels' "
                                 f"has {len(labels)}")
            if max_per_split is not None:
                images, labels = images[:max_per_split], labels[:max_per_split]
            out[split] = (images, labels)
    return out


def read_medmnist(
    path: Path | str, *, size: int, channels: int, name: str | None = None,
    splits: Sequence[str] = MEDMNIST_SPLITS, max_per_split: int | None = None, deduplicate_images: bool = True,
    drop_conflicts: bool = False, near_duplicates: NearDuplicateSettings | None = NearDuplicateSettings(),
    progress: Progress | None = None,
) -> tuple[ImageTable, DataReport]:
    """Read a MedMNIST npz (or the folder holding ``<name>.npz``) into a pooled ImageTable.

    Returns images (K, size, size, channels) uint8, labels (K,), ids "<name>:<split>:<index>" (index in
    the official split) and origin = official split; and the DataReport. ``name`` defaults to the file
    name without a size suffix ("breastmnist_64.npz" -> "breastmnist"); unknown names get classes "0".."k-1".
    """
    check_size_channels(size, channels)
    if max_per_split is not None and max_per_split < 1:
        raise ValueError(f"max_per_split must be >= 1, got {max_per_split}")
    if name is None:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder: name the MedMNIST set (e.g. breastmnist) to find its npz")
        name = _name_from_file(path)
    file = find_medmnist_file(path, name)
    arrays = load_npz_arrays(file, splits, max_per_split=max_per_split)

    max_label = max((int(lab.max()) for _, lab in arrays.values() if len(lab)), default=-1)
    class_names = MEDMNIST_CLASSES.get(name, tuple(str(i) for i in range(max_label + 1)))
    for split, (_, lab) in arrays.items():
        if len(lab) and (lab.min() < 0 or lab.max() >= len(class_names)):
            raise ValueError(f"{file}: key '{split}_labels' has labels outside [0, {len(class_names)}) "
                             f"for {name} ({', '.join(class_names)})")

    origins = [s for s, (_, lab) in arrays.items() for _ in range(len(lab))]
    index = [i for _, lab in arrays.values() for i in range(len(lab))]
    labels = np.concatenate([lab for _, lab in arrays.values()]) if arrays else np.zeros(0, np.int64)
    sizes = Counter(f"{im.shape[2]}x{im.shape[1]}" for im, _ in arrays.values() for _ in range(len(im)))
    raw = [im[i] for im, _ in arrays.values() for i in range(len(im))]
    ids = [f"{name}:{o}:{i}" for o, i in zip(origins, index, strict=True)]
    duplicates: dict[str, int] = {}
    notes = [f"official splits {', '.join(arrays)} pooled; origin keeps each image's split"]
    keep = np.arange(len(labels))
    if deduplicate_images:
        hashes = [hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in raw]
        dd = deduplicate(hashes, labels, origins, names=ids, drop_conflicts=drop_conflicts)
        keep, duplicates = dd.keep, dict(dd.counts)
        notes.append(f"exact duplicates (identical pixels) removed: {dd.counts['removed']} of {len(labels)}; "
                     "the train copy is kept")
        for c in dd.conflicts:
            notes.append(f"duplicate with conflicting labels dropped: {', '.join(c['files'])} "
                         f"(labels {', '.join(c['labels'])})")
    images = _resize_list([raw[i] for i in keep], size=size, channels=channels, progress=progress)
    sources = np.stack([raw[i] for i in keep]) if len(keep) else np.zeros((0, size, size), np.uint8)
    near = group_arrays(sources, near_duplicates, progress=progress)
    table = ImageTable(images=images, labels=labels[keep], class_names=class_names,
                       ids=tuple(ids[i] for i in keep), origin=tuple(origins[i] for i in keep), name=name,
                       groups=near.groups)
    near_summary = near.summary(table.labels, table.ids)
    notes.append(near.note or f"near-duplicates: {near.counts['groups']} group(s) hold "
                              f"{near.counts['images_in_groups']} of {len(table)} images "
                              f"({near_summary['mixed_label_groups']} with mixed labels); splits keep each group "
                              "inside one set")
    for label, cls in enumerate(class_names):
        if not np.any(table.labels == label):
            log.warning("%s: class %r has no images", file, cls)
    counts = {s: {c: int(k) for c, k in zip(class_names, np.bincount(lab, minlength=len(class_names)), strict=True)}
              for s, (_, lab) in arrays.items()}
    report = DataReport(
        task=name, source=str(file), counts=counts, sizes=dict(sizes.most_common()), duplicates=duplicates,
        kept=table.class_counts(), notes=notes,
        preprocessing={"size": size, "channels": channels, "resample": RESAMPLE_NAME,
                       "colour": "L (ITU-R 601-2 luma)" if channels == 1 else "RGB",
                       "pooled": list(arrays), "deduplicated": deduplicate_images,
                       "max_per_split": max_per_split},
        near_duplicates=near_summary,
    )
    return table, report


def _resize_list(images: list[np.ndarray], *, size: int, channels: int, progress: Progress | None) -> np.ndarray:
    if not images:
        return np.zeros((0, size, size, channels), dtype=np.uint8)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images of different shapes across splits: {sorted(shapes)}")
    return resize_images(np.stack(images), size=size, channels=channels, progress=progress)
