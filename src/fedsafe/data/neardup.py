"""Near-duplicate grouping: the same picture saved twice with another encoding (design §1).

Exact de-duplication (``dedup.py``) compares file bytes, so a scan saved twice with another JPEG encoding
survives it and can land in a training set and a test set at once. The grouping here finds such copies:

1. reference image: grey (ITU-R 601-2 luma) at ``REFERENCE_SIZE`` x ``REFERENCE_SIZE`` (256; PIL bilinear,
   antialiased), decoded by the same rules as the training images (``decode.py``); array sources smaller
   than 256 (MedMNIST, 28x28) are compared at their own size;
2. candidates: pairs whose 64-bit perceptual hashes (``imagehash.phash``: DCT of the 32x32 image, low
   8x8 frequencies against their median; Zauner 2010) differ in at most ``hash_distance`` bits;
3. confirmation: the mean absolute difference of the two reference images, in [0, 1] pixel units, is
   below ``threshold`` (default 0.02, design §1.3's measure);
4. groups: the connected components of the confirmed pairs. A group's id is the smallest table index
   among its members, so an image alone keeps its own index as id.

Adjacent slices of one scan are a looser kind of pair, found by ``scans.py``; ``grouping.py`` joins both
kinds (and caches them: ``cached_groups``) into the groups the splits keep whole.

Labels and source sizes are not compared: a group whose members carry different labels is counted
(``mixed_label_groups``) and kept together like any other.

Measured on the shared brain-tumour data (after exact de-duplication, 256x256, threshold 0.02): every
confirmed meningioma pair has a pHash distance <= 2, while glioma pairs reach 14 (adjacent slices of one
dark scan pass the pixel test); ``DEFAULT_HASH_DISTANCE = 14`` finds all of them.

Example::

    found = find_near_duplicates(grey)          # grey: (N, 256, 256) uint8
    table = dataclasses.replace(table, groups=found.groups)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import imagehash
import numpy as np
from PIL import Image

from ..progress import Progress, report
from .cache import READER_VERSION
from .decode import resize_images

__all__ = [
    "REFERENCE_SIZE", "DEFAULT_THRESHOLD", "DEFAULT_HASH_DISTANCE", "MAX_IMAGES", "NEAR_DUP_VERSION",
    "NearDuplicateSettings", "NearDuplicates", "phashes", "hamming", "candidate_pairs", "mean_abs_difference",
    "connected_groups", "find_near_duplicates", "singletons", "group_arrays", "near_duplicate_key",
    "OFF_NOTE",
]

log = logging.getLogger(__name__)

REFERENCE_SIZE = 256
DEFAULT_THRESHOLD = 0.02
DEFAULT_HASH_DISTANCE = 14
MAX_IMAGES = 10_000
"""Above this many images (PCam, the large MedMNIST sets) readers skip the all-pairs search (groups stay
singletons, with a note): the pairwise hash comparison grows as N^2."""
NEAR_DUP_VERSION = 1
"""Bump when the method changes, so cached groupings are not reused."""
_EXAMPLES = 6
OFF_NOTE = "near-duplicate grouping switched off (task.near_duplicates: false): every image is its own group"


@dataclass(frozen=True)
class NearDuplicateSettings:
    """Thresholds of the grouping: ``threshold`` on the mean |difference| in [0, 1], ``hash_distance`` in bits."""

    threshold: float = DEFAULT_THRESHOLD
    hash_distance: int = DEFAULT_HASH_DISTANCE

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"near-duplicate threshold must lie in (0, 1], got {self.threshold!r}")
        if isinstance(self.hash_distance, bool) or not 0 <= int(self.hash_distance) <= 64:
            raise ValueError(f"near-duplicate hash distance must be an integer in [0, 64], got {self.hash_distance!r}")


@dataclass(frozen=True)
class NearDuplicates:
    """The outcome of a grouping over N images.

    groups: (N,) int64 group id per image (smallest index of its group). pairs: (P, 2) int64 confirmed pairs
    (i < j, sorted); differences: (P,) their mean |difference| in [0, 1]; hash_distances: (P,) their pHash
    distances; candidates: pairs the hash proposed. settings None and a note when the search was skipped.
    """

    groups: np.ndarray
    pairs: np.ndarray
    differences: np.ndarray
    hash_distances: np.ndarray
    candidates: int
    settings: NearDuplicateSettings | None
    reference_size: int | None = None
    note: str = ""
    cached: bool = False
    counts: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        sizes = np.bincount(np.unique(self.groups, return_inverse=True)[1]) if len(self.groups) else np.zeros(0, int)
        multi = sizes[sizes > 1]
        self.counts.update({
            "groups": int(len(multi)), "images_in_groups": int(multi.sum()),
            "largest_group": int(multi.max()) if len(multi) else 1 if len(self.groups) else 0,
            "candidate_pairs": int(self.candidates), "confirmed_pairs": int(len(self.pairs)),
        })

    def mixed_label_groups(self, labels: np.ndarray) -> int:
        """Groups whose members carry more than one label."""
        labels = np.asarray(labels)
        pairs = np.unique(np.stack([self.groups, labels], axis=1), axis=0) if len(labels) else np.zeros((0, 2))
        _, per_group = np.unique(pairs[:, 0], return_counts=True)
        return int(np.sum(per_group > 1))

    def summary(self, labels: np.ndarray, names: Sequence[str], *, examples: int = _EXAMPLES) -> dict[str, object]:
        """The ``DataReport.near_duplicates`` entry: counts, thresholds, and example pairs spread over the range
        of differences (smallest to largest), each with its two names, difference and hash distance."""
        out: dict[str, object] = {"computed": self.settings is not None}
        if self.settings is not None:
            out.update({
                "method": f"pHash distance <= {self.settings.hash_distance} bits, then mean |difference| < "
                          f"{self.settings.threshold:g} in [0, 1] at {self.reference_size}x{self.reference_size} grey",
                "threshold": float(self.settings.threshold), "hash_distance": int(self.settings.hash_distance),
                "reference_size": self.reference_size,
            })
        out.update(self.counts)
        out["mixed_label_groups"] = self.mixed_label_groups(labels)
        order = np.argsort(self.differences, kind="stable")
        picks = sorted({int(order[round(k)]) for k in np.linspace(0, len(order) - 1, min(examples, len(order)))})
        out["examples"] = [
            {"a": str(names[self.pairs[p, 0]]), "b": str(names[self.pairs[p, 1]]),
             "difference": round(float(self.differences[p]), 4), "hash_distance": int(self.hash_distances[p])}
            for p in sorted(picks, key=lambda p: float(self.differences[p]))
        ]
        if self.note:
            out["note"] = self.note
        return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[np.ascontiguousarray(x, dtype=np.uint64).view(np.uint8).reshape(*x.shape, 8)].sum(-1)


def phashes(images: np.ndarray, *, progress: Progress | None = None) -> np.ndarray:
    """64-bit pHash of each grey image. images: (N, S, S) or (N, S, S, 1) uint8. Returns (N,) uint64."""
    images = _grey_stack(images)
    out = np.empty(len(images), dtype=np.uint64)
    for i, image in enumerate(images):
        bits = imagehash.phash(Image.fromarray(image)).hash.reshape(-1)
        out[i] = np.packbits(bits).view(">u8")[0]
        if (i + 1) % 256 == 0 or i + 1 == len(images):
            report(progress, "hashing images (pHash)", i + 1, len(images))
    return out


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bits that differ between 64-bit hashes (broadcasting)."""
    return _popcount(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def candidate_pairs(hashes: np.ndarray, max_distance: int, *, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) whose hashes differ in at most ``max_distance`` bits, in (i, j) order.

    hashes: (N,) uint64. Returns (pairs (P, 2) int64, distances (P,) int64). Cost N^2 / 2 XOR-popcounts.
    """
    hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1)
    found_i, found_j, found_d = [], [], []
    for start in range(0, len(hashes), block):
        rows = hashes[start:start + block]
        d = hamming(rows[:, None], hashes[None, :])
        i, j = np.nonzero(d <= max_distance)
        i = i + start
        keep = j > i
        found_i.append(i[keep])
        found_j.append(j[keep])
        found_d.append(d[i[keep] - start, j[keep]])
    if not found_i:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    pairs = np.stack([np.concatenate(found_i), np.concatenate(found_j)], axis=1).astype(np.int64)
    return pairs, np.concatenate(found_d).astype(np.int64)


def mean_abs_difference(images: np.ndarray, pairs: np.ndarray, *, chunk: int = 128) -> np.ndarray:
    """Mean |a - b| in [0, 1] units of each pair of images. images: (N, ...) uint8; pairs: (P, 2). Returns (P,)."""
    flat = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), chunk):
        a, b = flat[pairs[start:start + chunk, 0]], flat[pairs[start:start + chunk, 1]]
        total = (np.maximum(a, b) - np.minimum(a, b)).sum(axis=1, dtype=np.uint64)  # |a - b| without overflow
        out[start:start + chunk] = total / (255.0 * flat.shape[1])
    return out


def connected_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of ``pairs`` over n items: (n,) int64, each the smallest index of its component."""
    parent = np.arange(n, dtype=np.int64)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for i, j in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        a, b = root(int(i)), root(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)  # the root is always the smallest index of its component
    return np.array([root(i) for i in range(n)], dtype=np.int64)


def singletons(n: int, note: str) -> NearDuplicates:
    """No search: every image its own group (``note`` says why, for the report)."""
    return NearDuplicates(groups=np.arange(n, dtype=np.int64), pairs=np.zeros((0, 2), np.int64),
                          differences=np.zeros(0), hash_distances=np.zeros(0, np.int64), candidates=0, settings=None,
                          note=note)


def _grey_stack(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"reference images must be (N, S, S) or (N, S, S, 1) uint8, got {images.shape} "
                         f"{images.dtype}")
    return images


def find_near_duplicates(
    images: np.ndarray, settings: NearDuplicateSettings = NearDuplicateSettings(), *,
    hashes: np.ndarray | None = None, progress: Progress | None = None,
) -> NearDuplicates:
    """Group near-duplicates among grey reference images (N, S, S) uint8 (method in the module docstring).

    ``hashes`` (N,) uint64 pHashes may be given when already known. Returns a :class:`NearDuplicates`.
    """
    images = _grey_stack(images)
    n = len(images)
    hashes = phashes(images, progress=progress) if hashes is None else np.asarray(hashes, dtype=np.uint64)
    candidates, distances = candidate_pairs(hashes, settings.hash_distance)
    report(progress, "comparing near-duplicate candidates", 0, len(candidates))
    diff = mean_abs_difference(images, candidates)
    report(progress, "comparing near-duplicate candidates", len(candidates), len(candidates))
    confirmed = diff < settings.threshold
    pairs = candidates[confirmed]
    found = NearDuplicates(groups=connected_groups(n, pairs), pairs=pairs, differences=diff[confirmed],
                           hash_distances=distances[confirmed], candidates=len(candidates), settings=settings,
                           reference_size=int(images.shape[1]) if n else REFERENCE_SIZE)
    log.info("near-duplicates: %d candidate pairs, %d confirmed, %d groups holding %d images", len(candidates),
             len(pairs), found.counts["groups"], found.counts["images_in_groups"])
    return found


def group_arrays(
    images: np.ndarray, settings: NearDuplicateSettings | None, *, progress: Progress | None = None,
) -> NearDuplicates:
    """Group in-memory images (N, H, W) or (N, H, W, C) uint8 (MedMNIST, PCam), compared in grey at
    min(256, H). ``settings=None``: no grouping; above ``MAX_IMAGES`` images: none either, with a note."""
    n = len(images)
    if settings is None:
        return singletons(n, OFF_NOTE)
    if n > MAX_IMAGES:
        return singletons(n, f"near-duplicate grouping skipped: {n} images exceed {MAX_IMAGES} (the all-pairs hash "
                             "search grows as N^2); every image is its own group")
    side = min(REFERENCE_SIZE, int(images.shape[1])) if n else REFERENCE_SIZE
    grey = resize_images(images, size=side, channels=1, progress=progress)
    return find_near_duplicates(grey, settings, progress=progress)


def near_duplicate_key(content_hashes: Sequence[str], settings: NearDuplicateSettings, *,
                       reference_size: int = REFERENCE_SIZE) -> str:
    """sha256 over (sorted content hashes, thresholds, reference size, method and reader versions)."""
    payload = json.dumps(
        {"hashes": sorted(content_hashes), "threshold": float(settings.threshold),
         "hash_distance": int(settings.hash_distance), "reference_size": reference_size,
         "near_dup_version": NEAR_DUP_VERSION, "reader_version": READER_VERSION},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()
