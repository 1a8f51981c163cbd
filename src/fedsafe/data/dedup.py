"""Exact de-duplication by content hash, with a deterministic choice of the copy kept.

Items with the same content hash form a group. One copy of each group is kept: the first in
``origin_priority`` order ("train" before "val" before "test"), ties broken by input order; so when
Training and Testing are pooled, a file present in both is kept as its Training copy. A group whose
copies carry different labels is an error (``ValueError`` naming the files and the setting
``task.label_conflicts=drop``); with ``drop_conflicts=True`` every copy of such a group is dropped
instead, and the result says so. Callers remove unreadable files first, so that two empty files (or two
error pages saved as .jpg) in two class folders are not taken for one image with two labels.

Counts reported (design §1; the shared brain-tumour copy, all four classes, gives 88 / 93 / 80):

* ``test_copies_of_train``: files of origin "test" whose content also occurs in "train" (in general
  ``<later>_copies_of_<earlier>`` for every pair of origins in priority order);
* ``extra_copies_<origin>``: files of an origin minus the distinct contents in it;
* ``groups`` / ``files_in_groups``: groups with more than one file, and their files;
* ``removed``: items not kept; ``label_conflicts``: groups whose copies disagree on the label.

Example::

    result = deduplicate(hashes, labels, origins)
    table = table.subset(result.keep)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ORIGIN_PRIORITY", "DedupResult", "deduplicate"]

log = logging.getLogger(__name__)

ORIGIN_PRIORITY: tuple[str, ...] = ("train", "val", "test")
CONFLICTS_SHOWN = 3
"""Conflicting groups named in the error message."""


@dataclass(frozen=True)
class DedupResult:
    """The outcome of :func:`deduplicate`.

    keep: (K,) int64 indices into the input, increasing; one per distinct content (minus dropped groups).
    counts: named duplicate counts (see the module docstring), ready for ``DataReport.duplicates``.
    conflicts: one entry per label-conflicting group: the names (or indices) and labels of its copies.
    """

    keep: np.ndarray
    counts: dict[str, int]
    conflicts: list[dict[str, list[str]]] = field(default_factory=list)


def _rank(origin: str, priority: Sequence[str]) -> int:
    return priority.index(origin) if origin in priority else len(priority)


def deduplicate(
    hashes: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    origins: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    drop_conflicts: bool = False,
    origin_priority: Sequence[str] = ORIGIN_PRIORITY,
) -> DedupResult:
    """Keep one item per content hash.

    hashes, labels, origins (and names, used in messages): (N,) per item.
    Returns a :class:`DedupResult`. Raises ValueError on label conflicts unless ``drop_conflicts``.
    """
    n = len(hashes)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != n or len(origins) != n or (names is not None and len(names) != n):
        raise ValueError("hashes, labels, origins and names must have the same length")
    label_of = [str(i) for i in range(n)] if names is None else [str(s) for s in names]

    groups: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        groups.setdefault(h, []).append(i)

    keep: list[int] = []
    conflicts: list[dict[str, list[str]]] = []
    for members in groups.values():
        member_labels = {int(labels[i]) for i in members}
        if len(member_labels) > 1:
            conflicts.append({"files": [label_of[i] for i in members],
                              "labels": [str(int(labels[i])) for i in members]})
            continue
        keep.append(min(members, key=lambda i: (_rank(origins[i], origin_priority), i)))
    if conflicts and not drop_conflicts:
        shown = "; ".join(
            ", ".join(f"{f} (label {lab})" for f, lab in zip(c["files"], c["labels"], strict=True))
            for c in conflicts[:CONFLICTS_SHOWN]
        )
        more = f" and {len(conflicts) - CONFLICTS_SHOWN} more" if len(conflicts) > CONFLICTS_SHOWN else ""
        raise ValueError(
            f"{len(conflicts)} group(s) of identical images carry different labels: {shown}{more}; to drop every "
            "copy of such groups, set task.label_conflicts=drop (commands with --set: "
            "--set task.label_conflicts=drop; fedsafe data check: --drop-conflicts)"
        )
    if conflicts:
        log.warning("dropped %d duplicate group(s) with conflicting labels", len(conflicts))

    present = [o for o in origin_priority if o in set(origins)]
    present += sorted(set(origins) - set(present))
    counts: dict[str, int] = {}
    contents_of = {o: {h for h, oi in zip(hashes, origins, strict=True) if oi == o} for o in present}
    for later_i, later in enumerate(present):
        for earlier in present[:later_i]:
            counts[f"{later}_copies_of_{earlier}"] = sum(
                1 for h, o in zip(hashes, origins, strict=True) if o == later and h in contents_of[earlier]
            )
    for o in present:
        counts[f"extra_copies_{o}"] = sum(1 for oi in origins if oi == o) - len(contents_of[o])
    multi = [m for m in groups.values() if len(m) > 1]
    counts["groups"] = len(multi)
    counts["files_in_groups"] = sum(len(m) for m in multi)
    counts["label_conflicts"] = len(conflicts)
    counts["removed"] = n - len(keep)
    return DedupResult(keep=np.array(sorted(keep), dtype=np.int64), counts=counts, conflicts=conflicts)
