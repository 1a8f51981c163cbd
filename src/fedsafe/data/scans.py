"""Same-scan grouping: adjacent slices of one MRI scan (design §1.4).

A brain MRI scan is many slices; neighbouring slices look nearly alike, so one in a test set and its neighbour
in training data is a leak, although the two files are neither byte-identical (``dedup.py``) nor one picture
re-encoded (``neardup.py``). The pairs found here are joined with the near-duplicate pairs (union-find,
``grouping.py``) and every resulting group stays inside one split.

Method, on the grey reference images of ``neardup.py`` (256x256, the same decode as training):

1. scan image: each reference image halved to ``SCAN_SIZE`` (128) by 2x2 block means (kept as exact integer
   block sums); the difference of two images is the mean |a - b| over the 128x128 pixels, in [0, 1] units;
2. search: every pair whose difference is below ``loose_threshold``, found exactly, not sampled
   (:func:`close_pairs`: block sums at coarser sizes bound the difference from below, so pairs are ruled out
   at 4x4, 8x8 and 32x32 and only the rest are compared at full size);
3. same scan: a pair whose difference is below ``threshold`` (whatever its pHash), or below ``loose_threshold``
   with 64-bit pHashes (``neardup.phashes``) at most ``hash_distance`` bits apart.

The defaults come from the distribution measured on both brain-tumour tasks (``docs/results/scan-groups.md``;
``benchmarks/scan_pairs.py`` reproduces it): below 0.025 at 128 px (0.022-0.025 at 256 px, the leaking slices
first found) pairs are mostly consecutive files; between 0.025 and 0.035, pairs with close pHashes are (70-80% have
file numbers at most 2 apart) and pairs with far pHashes are mostly unrelated dark images (7-25%).

Example::

    scans = find_same_scan(grey, hashes)           # grey: (N, 256, 256) uint8, hashes: (N,) uint64 pHashes
    scans.pairs, scans.differences, scans.hash_distances
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..progress import Progress, report
from .neardup import connected_groups, hamming

__all__ = [
    "SCAN_SIZE", "DEFAULT_SCAN_THRESHOLD", "DEFAULT_SCAN_LOOSE_THRESHOLD", "DEFAULT_SCAN_HASH_DISTANCE",
    "ScanSettings", "ScanPairs", "half_size", "close_pairs", "find_same_scan",
]

SCAN_SIZE = 128
DEFAULT_SCAN_THRESHOLD = 0.025
DEFAULT_SCAN_LOOSE_THRESHOLD = 0.035
DEFAULT_SCAN_HASH_DISTANCE = 10
_EXAMPLES = 6
_BLOCK_ELEMENTS = 1 << 22
"""Elements of one block of the all-pairs pass (rows x images x coarse pixels), about 32 MB of int64."""


@dataclass(frozen=True)
class ScanSettings:
    """Same scan: difference < ``threshold``, or < ``loose_threshold`` with pHashes <= ``hash_distance`` bits
    apart (differences: mean |a - b| in [0, 1] at 128x128 grey)."""

    threshold: float = DEFAULT_SCAN_THRESHOLD
    loose_threshold: float = DEFAULT_SCAN_LOOSE_THRESHOLD
    hash_distance: int = DEFAULT_SCAN_HASH_DISTANCE

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"same-scan threshold must lie in (0, 1], got {self.threshold!r}")
        if not float(self.threshold) <= float(self.loose_threshold) <= 1.0:
            raise ValueError(f"same-scan loose threshold must lie in [threshold, 1] = [{self.threshold}, 1], got "
                             f"{self.loose_threshold!r}")
        if isinstance(self.hash_distance, bool) or not 0 <= int(self.hash_distance) <= 64:
            raise ValueError(f"same-scan hash distance must be an integer in [0, 64], got {self.hash_distance!r}")

    def method(self) -> str:
        return (f"mean |difference| < {self.threshold:g} in [0, 1] at {SCAN_SIZE}x{SCAN_SIZE} grey (all pairs), or < "
                f"{self.loose_threshold:g} with pHash distance <= {self.hash_distance} bits")


@dataclass(frozen=True)
class ScanPairs:
    """Same-scan pairs among N images: pairs (P, 2) int64 (i < j, sorted), their differences (P,) in [0, 1] at
    128 px, their pHash distances (P,); ``candidates``: pairs below the loose threshold by pixels alone."""

    n: int
    pairs: np.ndarray
    differences: np.ndarray
    hash_distances: np.ndarray
    candidates: int
    settings: ScanSettings
    counts: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        groups = connected_groups(self.n, self.pairs)
        sizes = np.bincount(groups, minlength=self.n)
        multi = sizes[sizes > 1]
        self.counts.update({
            "groups": int(len(multi)), "images_in_groups": int(multi.sum()),
            "largest_group": int(multi.max()) if len(multi) else 1 if self.n else 0,
            "candidate_pairs": int(self.candidates), "confirmed_pairs": int(len(self.pairs)),
        })

    def summary(self, names: Sequence[str], *, examples: int = _EXAMPLES,
                new: np.ndarray | None = None) -> dict[str, object]:
        """Counts (of the same-scan pairs alone), the rule, and example pairs spread over the differences.

        new: (P,) bool, the pairs that another grouping has not joined already (e.g. not re-encoded copies): they
        are counted (``pairs_beyond_near_duplicates``) and the examples are drawn from them."""
        out: dict[str, object] = {
            "method": self.settings.method(), "threshold": float(self.settings.threshold),
            "loose_threshold": float(self.settings.loose_threshold), "hash_distance": int(self.settings.hash_distance),
            "size": SCAN_SIZE, **self.counts,
        }
        shown = np.ones(len(self.pairs), bool) if new is None else np.asarray(new, bool)
        if new is not None:
            out["pairs_beyond_near_duplicates"] = int(shown.sum())
        order = np.flatnonzero(shown)[np.argsort(self.differences[shown], kind="stable")]
        picks = sorted({int(order[round(k)]) for k in np.linspace(0, len(order) - 1, min(examples, len(order)))})
        out["examples"] = [
            {"a": str(names[self.pairs[p, 0]]), "b": str(names[self.pairs[p, 1]]),
             "difference": round(float(self.differences[p]), 4), "hash_distance": int(self.hash_distances[p])}
            for p in sorted(picks, key=lambda p: float(self.differences[p]))
        ]
        return out


def half_size(images: np.ndarray) -> np.ndarray:
    """2x2 block sums of grey images (N, S, S) uint8 with S even: (N, S/2, S/2) int32, each in [0, 1020]."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1] != images.shape[2] or images.shape[1] % 2:
        raise ValueError(f"scan images must be (N, S, S) uint8 with S even, got {images.shape} {images.dtype}")
    out = images[:, 0::2, 0::2].astype(np.int32)
    out += images[:, 1::2, 0::2]
    out += images[:, 0::2, 1::2]
    out += images[:, 1::2, 1::2]
    return out


def _pool(x: np.ndarray, f: int) -> np.ndarray:
    n, s = len(x), x.shape[1]
    return x.reshape(n, s // f, f, s // f, f).sum(axis=(2, 4), dtype=np.int64).reshape(n, -1)


def _refine(flat: np.ndarray, i: np.ndarray, j: np.ndarray, limit: float, chunk: int = 2048):
    totals = np.concatenate([np.abs(flat[i[c:c + chunk]] - flat[j[c:c + chunk]]).sum(axis=1, dtype=np.int64)
                             for c in range(0, len(i), chunk)]) if len(i) else np.zeros(0, np.int64)
    keep = totals < limit
    return i[keep], j[keep], totals[keep]


def close_pairs(
    images: np.ndarray, max_difference: float, *, peak: int = 255, progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of images (N, S, S) (integers in [0, peak]) whose mean |a - b| / peak < max_difference.

    Exact: a block sum's |difference| is at most the sum of its pixels' |differences| (triangle inequality), so
    the total |difference| of block sums at a coarser size is a lower bound of the full one, and a pair at or above
    the limit there is above it at full size. All pairs are compared at the coarsest size (S / 32, at least 1
    pixel), the survivors at S / 16, S / 8 and S / 4, then at full size. Returns (pairs (P, 2) int64 in (i, j) order,
    differences (P,) float64).
    """
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1] != x.shape[2] or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"images must be (N, S, S) integers, got {x.shape} {x.dtype}")
    if x.dtype.itemsize < 4 or np.issubdtype(x.dtype, np.unsignedinteger):
        x = x.astype(np.int64)  # differences of unsigned or narrow integers would wrap around
    n, s = len(x), x.shape[1]
    limit = float(max_difference) * peak * s * s
    factors = [f for f in (32, 16, 8, 4) if s % f == 0] or [s]
    coarse = _pool(x, factors[0])
    rows = max(1, _BLOCK_ELEMENTS // max(1, n * coarse.shape[1]))
    found_i, found_j = [], []
    for start in range(0, n, rows):
        totals = np.abs(coarse[start:start + rows, None, :] - coarse[None, :, :]).sum(axis=2)
        i, j = np.nonzero(totals < limit)
        keep = j > i + start
        found_i.append(i[keep] + start)
        found_j.append(j[keep])
        report(progress, "searching same-scan pairs", min(n, start + rows), n)
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    for f in factors[1:]:
        i, j, _ = _refine(_pool(x, f), i, j, limit)
    i, j, totals = _refine(x.reshape(n, -1), i, j, limit)
    order = np.lexsort((j, i))
    pairs = np.stack([i[order], j[order]], axis=1).astype(np.int64).reshape(-1, 2)
    return pairs, totals[order] / (peak * s * s)


def find_same_scan(
    images: np.ndarray, hashes: np.ndarray, settings: ScanSettings = ScanSettings(), *,
    progress: Progress | None = None,
) -> ScanPairs:
    """Same-scan pairs among grey reference images (N, S, S) uint8 (S even; 256 gives the 128 px comparison)
    with their 64-bit pHashes (N,) uint64 (method in the module docstring)."""
    sums = half_size(images)
    hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1)
    if len(hashes) != len(sums):
        raise ValueError(f"{len(hashes)} hashes for {len(sums)} images")
    pairs, diff = close_pairs(sums, settings.loose_threshold, peak=4 * 255, progress=progress)
    bits = hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]]) if len(pairs) else np.zeros(0, np.int64)
    same = (diff < settings.threshold) | (bits <= settings.hash_distance)
    return ScanPairs(n=len(sums), pairs=pairs[same], differences=diff[same], hash_distances=bits[same],
                     candidates=len(pairs), settings=settings)
