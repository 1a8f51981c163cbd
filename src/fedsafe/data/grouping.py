"""Split groups: re-encoded copies (``neardup.py``) and adjacent slices of one scan (``scans.py``) joined, so a
split can keep each group whole (design §§1.3-1.4).

The groups are the connected components (union-find) of both kinds of edge: two images are in one group when a
chain of near-duplicate or same-scan pairs links them. ``make_splits(..., groups=table.groups)`` then puts every
group in one set (client training, attack/test sets, server set, global test).

Both searches run on the same decode (256x256 grey, ``neardup.REFERENCE_SIZE``) and their pairs are cached
together (:func:`cached_groups`): the entry's key covers the files' contents, both settings and both methods'
versions, so another threshold or method never reuses a stale grouping.

Example::

    found = cached_groups(paths, hashes, NearDuplicateSettings(), ScanSettings(), cache_dir=d, task="glioma")
    table = ImageTable(..., groups=found.groups); report.near_duplicates = found.summary(labels, names)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..progress import Progress
from .cache import cache_path, load_entry, save_entry
from .decode import decode_files
from .neardup import (
    REFERENCE_SIZE,
    NearDuplicates,
    NearDuplicateSettings,
    connected_groups,
    find_near_duplicates,
    near_duplicate_key,
    phashes,
)
from .scans import ScanPairs, ScanSettings, find_same_scan

__all__ = ["SCAN_VERSION", "SplitGroups", "join_groups", "grouping_key", "cached_groups", "group_counts"]

log = logging.getLogger(__name__)

SCAN_VERSION = 1
"""Bump when the same-scan method changes, so cached groupings are not reused."""
_NEAR_KEYS = ("hashes", "pairs", "differences", "hash_distances", "candidates")
_SCAN_KEYS = ("scan_pairs", "scan_differences", "scan_hash_distances", "scan_candidates")


def group_counts(groups: np.ndarray, labels: np.ndarray | None = None) -> dict[str, int]:
    """Groups of more than one image, the images they hold, the largest group, and (with labels) the groups
    whose members carry more than one label."""
    groups = np.asarray(groups)
    sizes = np.bincount(np.unique(groups, return_inverse=True)[1]) if len(groups) else np.zeros(0, np.int64)
    multi = sizes[sizes > 1]
    out = {"groups": int(len(multi)), "images_in_groups": int(multi.sum()),
           "largest_group": int(multi.max()) if len(multi) else 1 if len(groups) else 0}
    if labels is not None:
        pairs = np.unique(np.stack([groups, np.asarray(labels)], axis=1), axis=0) if len(groups) else np.zeros((0, 2))
        out["mixed_label_groups"] = int(np.sum(np.unique(pairs[:, 0], return_counts=True)[1] > 1))
    return out


@dataclass(frozen=True)
class SplitGroups:
    """The near-duplicates, the same-scan pairs (None: not searched) and ``groups`` (N,) int64: the components of
    both kinds of pair, each id the smallest index of its group (what ``ImageTable.groups`` holds)."""

    near: NearDuplicates
    scans: ScanPairs | None
    groups: np.ndarray
    cached: bool = False
    counts: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.counts.update(group_counts(self.groups))

    def summary(self, labels: np.ndarray, names: Sequence[str]) -> dict[str, object]:
        """The ``DataReport.near_duplicates`` entry: the near-duplicates' own summary, ``same_scan`` (the
        same-scan pairs' counts, rule, ``pairs_beyond_near_duplicates``: those not inside a near-duplicate group,
        and examples of them) and ``split_groups`` (the joined groups the splits keep whole)."""
        out = self.near.summary(labels, names)
        if self.scans is None:
            out["same_scan"] = {"computed": False}
        else:
            a, b = self.scans.pairs[:, 0], self.scans.pairs[:, 1]
            new = self.near.groups[a] != self.near.groups[b]  # not two re-encodings of one picture
            out["same_scan"] = {"computed": True, **self.scans.summary(names, new=new)}
        out["split_groups"] = group_counts(self.groups, labels)
        return out


def join_groups(near: NearDuplicates, scans: ScanPairs | None, *, cached: bool = False) -> SplitGroups:
    """Union-find over the near-duplicate pairs and the same-scan pairs."""
    pairs = near.pairs if scans is None else np.concatenate([near.pairs, scans.pairs]).reshape(-1, 2)
    return SplitGroups(near=near, scans=scans, groups=connected_groups(len(near.groups), pairs), cached=cached)


def grouping_key(content_hashes: Sequence[str], near: NearDuplicateSettings, scans: ScanSettings | None) -> str:
    """sha256 over the near-duplicate key (contents, thresholds, versions) and the same-scan settings."""
    payload = json.dumps(
        {"near": near_duplicate_key(content_hashes, near), "scan_version": SCAN_VERSION,
         "scans": None if scans is None else [float(scans.threshold), float(scans.loose_threshold),
                                              int(scans.hash_distance)]},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _pairs_from_entry(entry: dict[str, np.ndarray], to_current: np.ndarray, prefix: str) -> tuple[np.ndarray, ...]:
    pairs = np.sort(to_current[entry[f"{prefix}pairs"].astype(np.int64).reshape(-1, 2)], axis=1)
    order = np.lexsort((pairs[:, 1], pairs[:, 0])) if len(pairs) else np.zeros(0, np.int64)
    return pairs[order], entry[f"{prefix}differences"][order], entry[f"{prefix}hash_distances"][order]


def cached_groups(
    paths: Sequence[Path], content_hashes: Sequence[str], near: NearDuplicateSettings,
    scans: ScanSettings | None = ScanSettings(), *, cache_dir: Path | None, task: str = "data",
    progress: Progress | None = None,
) -> SplitGroups:
    """Group the files ``paths`` (distinct contents ``content_hashes``), through the cache when ``cache_dir``.

    The entry (``<task>-near-<key>.npz``) stores the pairs by content hash, so it serves any order of the same
    files. On a miss every file is decoded at 256x256 grey (``decode.decode_files``); a file that does not decode
    here raises ValueError (callers pass files that decoded already). ``scans=None``: no same-scan search.
    """
    if len(paths) != len(content_hashes):
        raise ValueError("paths and content hashes differ in length")
    key = grouping_key(content_hashes, near, scans)
    entry_path = None if cache_dir is None else cache_path(Path(cache_dir), key, task=f"{task}-near")
    entry = None if entry_path is None else load_entry(entry_path)
    position = {h: i for i, h in enumerate(content_hashes)}
    needed = set(_NEAR_KEYS) | (set() if scans is None else set(_SCAN_KEYS))
    if entry is not None and needed <= set(entry) and set(entry["hashes"].tolist()) == set(position):
        to_current = np.array([position[h] for h in entry["hashes"].tolist()], dtype=np.int64)
        pairs, diff, bits = _pairs_from_entry(entry, to_current, "")
        found = NearDuplicates(groups=connected_groups(len(paths), pairs), pairs=pairs, differences=diff,
                               hash_distances=bits, candidates=int(entry["candidates"]), settings=near,
                               reference_size=REFERENCE_SIZE, cached=True)
        same = None
        if scans is not None:
            pairs, diff, bits = _pairs_from_entry(entry, to_current, "scan_")
            same = ScanPairs(n=len(paths), pairs=pairs, differences=diff, hash_distances=bits,
                             candidates=int(entry["scan_candidates"]), settings=scans)
        log.info("grouping cache hit %s", entry_path)
        return join_groups(found, same, cached=True)
    decoded = decode_files(paths, size=REFERENCE_SIZE, channels=1, strict=True, progress=progress)
    grey = decoded.images[..., 0]
    hashes = phashes(grey, progress=progress)
    found = find_near_duplicates(grey, near, hashes=hashes, progress=progress)
    same = None if scans is None else find_same_scan(grey, hashes, scans, progress=progress)
    if entry_path is not None:
        arrays = {"hashes": np.array(list(content_hashes), dtype=str), "pairs": found.pairs,
                  "differences": found.differences, "hash_distances": found.hash_distances,
                  "candidates": np.array(found.candidates, dtype=np.int64)}
        if same is not None:
            arrays.update({"scan_pairs": same.pairs, "scan_differences": same.differences,
                           "scan_hash_distances": same.hash_distances,
                           "scan_candidates": np.array(same.candidates, dtype=np.int64)})
        save_entry(entry_path, arrays)
    return join_groups(found, same)
