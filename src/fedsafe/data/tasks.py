"""The tasks by name: one explicit registry, ``TASKS``, and :func:`load_task`.

===================  ===============================================  ==========================
task                 data_root                                        classes (label order)
===================  ===============================================  ==========================
meningioma           the brain-tumor-mri folder (or its parent)       no_tumor, meningioma_tumor
glioma               the brain-tumor-mri folder                       no_tumor, glioma_tumor
brain-tumor-4class   the brain-tumor-mri folder                       the four folders, a-z
breastmnist          breastmnist.npz, or a folder holding it          malignant, normal+benign
pcam                 the folder of the official PCam .h5 files        normal, tumor
synthetic            none (embedded generator)                        no_tumor, tumor
image-folder         a folder with one sub-folder per class           the class folders, a-z
===================  ===============================================  ==========================

``image-folder`` (``folder.py``) reads the user's own images, optionally with a sites CSV (``sites_csv``:
file,site[,patient]; a relative path is read from the data root) that partitions the federation by hospital.

Every real task pools its source's splits, skips unreadable files, removes exact duplicates (keeping the
train copy) and groups near-duplicates (``table.groups``; ``neardup.py``); ``origin`` in the table says
where each image came from. Splitting into client, server and test sets is done elsewhere, by seed
(``make_splits(..., groups=table.groups)`` keeps each group in one set).

Identical files with different labels (label conflicts) stop the read unless ``label_conflicts="drop"``
(config: ``task.label_conflicts``); the default is the task's own (``TaskSpec.drop_conflicts``).

Example::

    table, report = load_task("meningioma", data_root=root, image_size=64, channels=1, cache_dir=tmp)
    table, report = load_task(cfg.task.name, data_root=root, seed=cfg.seed, **load_task_kwargs(cfg.task))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..progress import Progress
from .cache import default_cache_dir
from .folder import folder_classes, read_image_folder
from .medmnist import MEDMNIST_CLASSES, read_medmnist
from .mri import MRI_SPLITS, MRI_TASKS, read_mri
from .neardup import NearDuplicateSettings
from .pcam import PCAM_CLASSES, read_pcam
from .scans import ScanSettings
from .synthetic import SYNTHETIC_CLASSES, make_synthetic
from .types import DataReport, ImageTable

if TYPE_CHECKING:
    from ..config import TaskConfig

__all__ = ["TaskSpec", "TASKS", "load_task", "load_task_kwargs", "resolve_drop_conflicts", "task_class_names"]

log = logging.getLogger(__name__)

_Loaded = tuple[ImageTable, DataReport]


@dataclass(frozen=True)
class TaskSpec:
    """A task: where its data comes from and what its labels mean.

    source: the reader ("brain-tumor-mri", "medmnist", "pcam", "synthetic"); data_root: what the user must
    point at (None for the embedded task); paper_size: the papers' input size, if the papers used the task;
    drop_conflicts: default for duplicates carrying different labels (see ``dedup.py``).
    """

    name: str
    source: str
    class_names: tuple[str, ...]
    description: str
    data_root: str | None
    paper_size: int | None = None
    drop_conflicts: bool = False


TASKS: dict[str, TaskSpec] = {
    "meningioma": TaskSpec("meningioma", "brain-tumor-mri", MRI_TASKS["meningioma"],
                           "brain MRI, meningioma vs no tumour (papers: 1437 images; 1279 after de-duplication)",
                           "the brain-tumor-mri folder", paper_size=100),
    "glioma": TaskSpec("glioma", "brain-tumor-mri", MRI_TASKS["glioma"],
                       "brain MRI, glioma vs no tumour (papers: 1426 images; 1254 after de-duplication)",
                       "the brain-tumor-mri folder", paper_size=100),
    "brain-tumor-4class": TaskSpec("brain-tumor-4class", "brain-tumor-mri", MRI_TASKS["brain-tumor-4class"],
                                   "brain MRI, four classes (3264 files; 3027 after de-duplication)",
                                   "the brain-tumor-mri folder"),
    "breastmnist": TaskSpec("breastmnist", "medmnist", MEDMNIST_CLASSES["breastmnist"],
                            "breast ultrasound, MedMNIST v2, 28x28 grey (one duplicate pair with two labels is "
                            "dropped by default)", "breastmnist.npz or a folder holding it", drop_conflicts=True),
    "pcam": TaskSpec("pcam", "pcam", PCAM_CLASSES, "PatchCamelyon pathology patches, 96x96 RGB",
                     "the folder of camelyonpatch_level_2_split_*_{x,y}.h5", paper_size=96),
    "synthetic": TaskSpec("synthetic", "synthetic", SYNTHETIC_CLASSES,
                          "embedded procedurally generated MRI-like slices (not real data)", None),
    "image-folder": TaskSpec("image-folder", "image-folder", (),
                             "your own images: one sub-folder per class (optionally under train/ and test/)",
                             "a folder with one sub-folder per class"),
}
"""Tasks by name. ``class_names`` is empty for ``image-folder``: its classes are its folders
(:func:`task_class_names`)."""


def task_class_names(name: str, data_root: Path | str | None) -> tuple[str, ...]:
    """The class names of task ``name`` without reading its images (an image folder's are its class folders).
    Raises ValueError for an unknown task or an image folder without two class folders."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    if TASKS[name].source != "image-folder":
        return TASKS[name].class_names
    if data_root is None:
        raise ValueError(f"task {name!r} needs data_root: {TASKS[name].data_root}")
    return folder_classes(Path(data_root).expanduser())


def resolve_drop_conflicts(
    spec: TaskSpec, label_conflicts: Literal["error", "drop"] | None = None, drop_conflicts: bool | None = None,
) -> bool:
    """Whether label conflicts are dropped: ``label_conflicts`` ("error" / "drop"), else the older boolean
    ``drop_conflicts``, else the task's default. Raises ValueError on an unknown value or when both are
    given and disagree."""
    if label_conflicts is not None and label_conflicts not in ("error", "drop"):
        raise ValueError(f"label_conflicts must be 'error' or 'drop', got {label_conflicts!r}")
    if label_conflicts is not None and drop_conflicts is not None and (label_conflicts == "drop") != drop_conflicts:
        raise ValueError(f"label_conflicts={label_conflicts!r} and drop_conflicts={drop_conflicts!r} disagree; "
                         "give one of them")
    if label_conflicts is not None:
        return label_conflicts == "drop"
    return spec.drop_conflicts if drop_conflicts is None else bool(drop_conflicts)


def load_task_kwargs(task: TaskConfig) -> dict[str, Any]:
    """The :func:`load_task` keyword arguments a ``TaskConfig`` sets (all but ``data_root`` and ``seed``):
    image size, channels, cache folder, strictness, synthetic size, label conflicts, near-duplicates."""
    return {
        "image_size": task.image_size, "channels": task.channels,
        "cache_dir": Path(task.cache_dir) if task.cache_dir else None, "strict": task.strict,
        "n_synthetic": task.synthetic_size, "label_conflicts": task.label_conflicts,
        "near_duplicates": task.near_duplicates, "near_duplicate_threshold": task.near_duplicate_threshold,
        "near_duplicate_hash_distance": task.near_duplicate_hash_distance, "sites_csv": task.sites_csv,
        "same_scan": ScanSettings(threshold=task.same_scan_threshold, loose_threshold=task.same_scan_loose_threshold,
                                  hash_distance=task.same_scan_hash_distance) if task.same_scan else None,
    }


def load_task(
    name: str, *, data_root: Path | str | None = None, image_size: int, channels: int,
    cache_dir: Path | str | None = None, strict: bool = False, seed: int = 0, n_synthetic: int = 1200,
    progress: Progress | None = None, max_per_split: int | None = None, drop_conflicts: bool | None = None,
    use_cache: bool = True, label_conflicts: Literal["error", "drop"] | None = None, near_duplicates: bool = True,
    near_duplicate_threshold: float = NearDuplicateSettings.threshold,
    near_duplicate_hash_distance: int = NearDuplicateSettings.hash_distance, sites_csv: Path | str | None = None,
    same_scan: ScanSettings | None = ScanSettings(),
) -> tuple[ImageTable, DataReport]:
    """Read task ``name``: images (N, image_size, image_size, channels) uint8, labels (N,), near-duplicate
    groups (N,), and its DataReport.

    cache_dir: where decoded MRI images (and their near-duplicate grouping) are cached (None:
    ``default_cache_dir()``); ``use_cache=False`` decodes every time. strict: an unreadable file raises
    instead of being skipped. seed, n_synthetic: the synthetic task only. max_per_split: read at most this
    many images of each official split (breastmnist, pcam). label_conflicts: "error" or "drop" (None: the
    task's default; ``drop_conflicts=True/False`` is the older spelling). near_duplicates: group
    near-duplicates with these thresholds (False: every image its own group). same_scan: also join adjacent slices
    of one scan (MRI and image-folder; None: no such grouping). sites_csv: image-folder only, its
    CSV of file,site[,patient] (relative: read from the data root).

    Raises ValueError for an unknown task (listing the known ones), a missing data_root (naming the path),
    and whatever the reader rejects (a one-line message naming the file or key).
    """
    try:
        spec = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None
    if sites_csv is not None and spec.source != "image-folder":
        raise ValueError(f"task.sites_csv applies to the image-folder task, not {name!r}")
    if max_per_split is not None and spec.source not in ("medmnist", "pcam"):
        raise ValueError(f"max_per_split applies to tasks with official splits (breastmnist, pcam), not {name!r}")
    drop = resolve_drop_conflicts(spec, label_conflicts, drop_conflicts)
    near = NearDuplicateSettings(threshold=near_duplicate_threshold, hash_distance=near_duplicate_hash_distance) \
        if near_duplicates else None
    if spec.source == "synthetic":
        if data_root is not None:
            log.info("task synthetic ignores data_root %s", data_root)
        return make_synthetic(n_synthetic, size=image_size, channels=channels, seed=seed, progress=progress)

    if data_root is None:
        raise ValueError(f"task {name!r} needs data_root: {spec.data_root}")
    root = Path(data_root).expanduser()
    if not root.exists():
        raise ValueError(f"data root not found: {root}")
    if spec.source == "image-folder":
        csv_path = None if sites_csv is None else Path(sites_csv).expanduser()
        if csv_path is not None and not csv_path.is_absolute():
            csv_path = root / csv_path
        return read_image_folder(root, size=image_size, channels=channels, cache_dir=None if not use_cache else
                                 Path(cache_dir) if cache_dir is not None else default_cache_dir(), strict=strict,
                                 drop_conflicts=drop, near_duplicates=near, same_scan=same_scan, sites_csv=csv_path,
                                 progress=progress)
    cache = None if not use_cache else Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if spec.source == "brain-tumor-mri":
        return _load_mri(spec, root, size=image_size, channels=channels, cache_dir=cache, strict=strict,
                         drop_conflicts=drop, near_duplicates=near, same_scan=same_scan, progress=progress)
    loader = _LOADERS[spec.source]
    return loader(spec, root, size=image_size, channels=channels, cache_dir=cache, strict=strict,
                  max_per_split=max_per_split, drop_conflicts=drop, near_duplicates=near, progress=progress)


def _load_mri(spec: TaskSpec, root: Path, *, size: int, channels: int, cache_dir: Path | None, strict: bool,
              drop_conflicts: bool, near_duplicates: NearDuplicateSettings | None, same_scan: ScanSettings | None,
              progress: Progress | None) -> _Loaded:
    # accept the folder ``fedsafe data download brain-tumor-mri -o DIR`` wrote into, as for the npz sets
    if not any((root / s).is_dir() for s in MRI_SPLITS) and (root / "brain-tumor-mri").is_dir():
        root = root / "brain-tumor-mri"
    return read_mri(root, spec.name, size=size, channels=channels, cache_dir=cache_dir, strict=strict,
                    drop_conflicts=drop_conflicts, near_duplicates=near_duplicates, same_scan=same_scan,
                    progress=progress)


def _load_medmnist(spec: TaskSpec, root: Path, *, size: int, channels: int, cache_dir: Path | None, strict: bool,
                   max_per_split: int | None, drop_conflicts: bool, near_duplicates: NearDuplicateSettings | None,
                   progress: Progress | None) -> _Loaded:
    return read_medmnist(root, size=size, channels=channels, name=spec.name, max_per_split=max_per_split,
                         drop_conflicts=drop_conflicts, near_duplicates=near_duplicates, progress=progress)


def _load_pcam(spec: TaskSpec, root: Path, *, size: int, channels: int, cache_dir: Path | None, strict: bool,
               max_per_split: int | None, drop_conflicts: bool, near_duplicates: NearDuplicateSettings | None,
               progress: Progress | None) -> _Loaded:
    return read_pcam(root, size=size, channels=channels, max_per_split=max_per_split,
                     drop_conflicts=drop_conflicts, near_duplicates=near_duplicates, progress=progress)


_LOADERS: dict[str, Callable[..., _Loaded]] = {  # brain-tumor-mri: _load_mri, which also groups slices
    "medmnist": _load_medmnist,
    "pcam": _load_pcam,
}
