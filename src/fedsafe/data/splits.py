"""Disjoint splits of one pooled, de-duplicated task: global test, server, client test and client train sets.

Design §1.6 ("Splits"): the papers count all images of a task, so Training and Testing are pooled and
de-duplicated first; then, by seed, four kinds of disjoint sets are drawn from that pool:

1. a held-out global test set (stratified by class);
2. the server data set used by the defenses (stratified; disjoint from every attack set, unlike the
   authors' code, which drew it from the test split);
3. one attack/test set per client (paper: 100 images each; stratified);
4. the rest: client training data, split over the clients by a partition of :mod:`fedsafe.data.partition`.

All indices are positions in the pooled ``labels`` array.

Groups (design §1; ``groups=``, e.g. ``ImageTable.groups``: re-encoded copies and adjacent slices of one
scan joined, ``data/grouping.py``): every group lands whole in one set, so no held-out image has a copy or a
neighbouring slice in training data, in the server set or in another client's set.
Sets are then filled with whole groups: a group that would overshoot a class's count is passed over (it
stays in line for the next sets, and otherwise ends in the training data), so sizes stay exact while
enough groups fit; a set that whole groups cannot fill exactly is named in ``notes``.
:func:`straddling_groups` counts the groups that a ``Splits`` cuts (0 for splits made with those groups).

Example::

    >>> import numpy as np
    >>> labels = np.repeat([0, 1], [352, 927])      # de-duplicated meningioma task
    >>> s = make_splits(labels, num_clients=3, server_size=0.1, global_test_size=0.1,
    ...                 rng=np.random.default_rng(0))
    >>> len(s.global_test), len(s.server), [len(t) for t in s.client_test]
    (128, 128, [100, 100, 100])
    >>> s.check_disjoint(); len(s.all_indices()) == len(labels)
    True
    >>> groups = np.arange(len(labels)); groups[1] = 0          # items 0 and 1: one picture twice
    >>> g = make_splits(labels, num_clients=3, server_size=0.1, global_test_size=0.1, groups=groups,
    ...                 rng=np.random.default_rng(0))
    >>> straddling_groups(g, groups)
    0
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsafe.data.partition import AUTHORS_NUM_SHARDS, PARTITIONS, group_numbers
from fedsafe.data.partition import partition as run_partition
from fedsafe.data.stratify import stratified_counts

__all__ = [
    "Size", "Splits", "make_splits", "straddling_groups", "twins_elsewhere",
]

logger = logging.getLogger(__name__)

Size = int | float
"""A set size: an int is a count, a float in [0, 1] a fraction of the whole pool (rounded)."""


def _frozen_index(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.int64).reshape(-1)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Splits:
    """Disjoint index sets over the pooled labels (positions in that array), plus notes on any shrinking.

    ``client_test[i]`` is client i's attack/test set and ``client_train[i]`` its training data; both are
    tuples with one read-only, sorted int64 array per client.
    """

    global_test: np.ndarray
    server: np.ndarray
    client_test: tuple[np.ndarray, ...]
    client_train: tuple[np.ndarray, ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.client_test) != len(self.client_train):
            raise ValueError(
                f"client_test has {len(self.client_test)} sets but client_train {len(self.client_train)}."
            )
        object.__setattr__(self, "global_test", _frozen_index(self.global_test))
        object.__setattr__(self, "server", _frozen_index(self.server))
        object.__setattr__(self, "client_test", tuple(_frozen_index(a) for a in self.client_test))
        object.__setattr__(self, "client_train", tuple(_frozen_index(a) for a in self.client_train))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def num_clients(self) -> int:
        return len(self.client_train)

    def named_sets(self) -> dict[str, np.ndarray]:
        """Every set by name: ``global_test``, ``server``, ``client{i}_test``, ``client{i}_train``."""
        sets = {"global_test": self.global_test, "server": self.server}
        sets.update({f"client{i}_test": a for i, a in enumerate(self.client_test)})
        sets.update({f"client{i}_train": a for i, a in enumerate(self.client_train)})
        return sets

    def all_indices(self) -> np.ndarray:
        """All indices of all sets, sorted (equals ``arange(len(pool))`` for splits from ``make_splits``)."""
        return np.sort(np.concatenate(list(self.named_sets().values())))

    def check_disjoint(self) -> None:
        """Raise ``ValueError`` naming the sets if any index appears twice (within or across sets)."""
        sets = self.named_sets()
        names = list(sets)
        flat = np.concatenate(list(sets.values()))
        owner = np.repeat(np.arange(len(names)), [len(a) for a in sets.values()])
        order = np.argsort(flat, kind="stable")
        flat, owner = flat[order], owner[order]
        dup = np.flatnonzero(flat[1:] == flat[:-1])
        if dup.size:
            index = int(flat[dup[0]])
            holders = sorted({names[o] for o in owner[flat == index]})
            raise ValueError(
                f"Splits overlap: {dup.size} repeated indices; index {index} is in {', '.join(holders)}"
                + (" (twice)." if len(holders) == 1 else ".")
            )

    def to_report(self, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, int]]:
        """Class counts per set (set name -> class name -> count), the ``splits`` of a ``DataReport``."""
        labels = np.asarray(labels)
        report = {}
        for name, idx in self.named_sets().items():
            counts = np.bincount(labels[idx], minlength=len(class_names))
            report[name] = {c: int(k) for c, k in zip(class_names, counts, strict=True)}
        return report


def _resolve_size(name: str, size: Size, n: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be an int count or a float fraction, got {size!r}.")
    if isinstance(size, float | np.floating):
        if not 0.0 <= size <= 1.0:
            raise ValueError(f"{name} as a fraction must lie in [0, 1], got {size}.")
        return round(float(size) * n)
    if size < 0:
        raise ValueError(f"{name} must be >= 0, got {size}.")
    return int(size)


def _min_train(partition: str, num_clients: int, kwargs: Mapping[str, Any]) -> int:
    """Fewest training items the partition accepts (so that no client or shard is empty)."""
    if partition == "shards":
        return max(num_clients, int(kwargs["num_shards"]))
    if partition == "dirichlet":
        return num_clients * max(1, int(kwargs.get("min_size", 1)))
    return num_clients


def make_splits(
    labels: np.ndarray,
    *,
    num_clients: int,
    client_test_size: Size = 100,
    server_size: Size,
    global_test_size: Size,
    partition: str = "shards",
    partition_kwargs: Mapping[str, Any] | None = None,
    rng: np.random.Generator,
    groups: np.ndarray | None = None,
) -> Splits:
    """Split a pooled, de-duplicated task into disjoint global test, server, client test and train sets.

    Sizes are int counts or float fractions of the whole pool. Each class's positions are shuffled once
    with ``rng``; the global test set, the server set and then client 0, 1, ... test sets take their
    stratified share (``stratified_counts`` against the whole pool's class proportions, so within +-1 of
    proportional per class) from the front of those queues. What remains is the training data, split
    over the clients by ``PARTITIONS[partition]`` with ``partition_kwargs`` and the same ``rng``
    (``"shards"`` defaults to the authors' ``num_shards=15``).

    Shrinking: if the held-out sets do not fit while leaving the partition its minimum (S items for
    shards, N for iid, N * min_size for dirichlet), every held-out size is scaled by the same factor
    ``budget / requested`` (rounded down) and a note says so. Sets never overlap.

    Because the global test set is drawn first from per-class queues, it depends only on the seed and its
    own size, not on the number of clients or the other sizes.

    groups: (n,) near-duplicate group ids (None: every item alone). The queues then hold groups (each under
    its majority label) and each set takes whole groups from their front, passing over a group that would
    overshoot a class's count; the partition keeps groups whole too. No group is split between two sets.
    With groups of one item each, the splits equal those of ``groups=None``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-d integer array, got shape {labels.shape}, {labels.dtype}.")
    if isinstance(num_clients, bool) or not isinstance(num_clients, int | np.integer) or num_clients < 1:
        raise ValueError(f"num_clients must be a positive integer, got {num_clients!r}.")
    if partition not in PARTITIONS:
        raise ValueError(f"Unknown partition {partition!r}; known: {', '.join(sorted(PARTITIONS))}.")
    kwargs: dict[str, Any] = {"num_shards": AUTHORS_NUM_SHARDS} if partition == "shards" else {}
    kwargs.update(partition_kwargs or {})

    n = len(labels)
    sizes = {
        "global_test": _resolve_size("global_test_size", global_test_size, n),
        "server": _resolve_size("server_size", server_size, n),
        "client_test": _resolve_size("client_test_size", client_test_size, n),
    }
    min_train = _min_train(partition, num_clients, kwargs)
    if n < min_train:
        raise ValueError(f"A pool of {n} items is too small for the {partition!r} partition (needs {min_train}).")
    notes: list[str] = []
    budget = n - min_train
    requested = sizes["global_test"] + sizes["server"] + num_clients * sizes["client_test"]
    if requested > budget:
        shrunk = {k: v * budget // requested for k, v in sizes.items()}
        for key, old in sizes.items():
            if shrunk[key] != old:
                what = f"each of the {num_clients} client test sets" if key == "client_test" else f"the {key} set"
                notes.append(
                    f"Shrunk {what} from {old} to {shrunk[key]}: a pool of {n} cannot hold {requested} held-out "
                    f"items and still leave at least {min_train} for the {partition!r} partition."
                )
        sizes = shrunk
        for note in notes:
            logger.warning(note)

    classes, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    num_classes = len(classes)
    pool_counts = np.bincount(inverse, minlength=num_classes).astype(np.int64)
    numbers = group_numbers(groups, n)
    num_groups = int(numbers.max()) + 1 if n else 0
    # class counts of each group, and the class it queues under (majority, ties to the lower class)
    group_counts = np.bincount(numbers * num_classes + inverse, minlength=num_groups * num_classes).reshape(
        num_groups, num_classes)
    group_class = np.argmax(group_counts, axis=1) if num_groups else np.zeros(0, np.int64)
    queues = [rng.permutation(np.flatnonzero(group_class == c)) for c in range(num_classes)]
    taken = np.zeros(num_classes, dtype=np.int64)

    by_group = np.argsort(numbers, kind="stable")  # items of group g: by_group[starts[g]:starts[g + 1]]
    starts = np.concatenate([[0], np.cumsum(group_counts.sum(axis=1))]).astype(np.int64)

    def take(queue: np.ndarray, need: np.ndarray, c: int | None) -> tuple[list[int], np.ndarray]:
        """Whole groups from the front of ``queue`` that fit ``need`` (in place): per class for class c, or
        the total count only (c None). Returns the groups taken and the queue without them, in order."""
        chosen: list[int] = []
        skipped: list[int] = []
        for pos in range(len(queue)):
            left = int(need[c]) if c is not None else int(need.sum())
            if left == 0:
                return chosen, np.concatenate([np.array(skipped, dtype=np.int64), queue[pos:]])
            g = int(queue[pos])
            fits = bool(np.all(group_counts[g] <= need)) if c is not None else int(starts[g + 1] - starts[g]) <= left
            if not fits:
                skipped.append(g)
                continue
            chosen.append(g)
            if c is not None:
                need -= group_counts[g]
            else:
                need[0] -= int(starts[g + 1] - starts[g])
        return chosen, np.array(skipped, dtype=np.int64)

    def draw(name: str, k: int) -> np.ndarray:
        nonlocal taken
        avail = pool_counts - taken
        counts = stratified_counts(k, pool_counts, avail)
        ideal = stratified_counts(k, pool_counts)
        if not np.array_equal(counts, ideal):
            notes.append(f"The {name} set is not exactly stratified: a class ran out ({counts.tolist()} drawn, "
                         f"{ideal.tolist()} wanted for classes {classes.tolist()}).")
        need = counts.copy()
        chosen: list[int] = []
        for c in range(num_classes):
            got, queues[c] = take(queues[c], need, c)
            chosen += got
        if need.any():  # whole groups could not meet a class's count: make up the size from any class
            total = np.array([need.sum()], dtype=np.int64)
            for c in range(num_classes):
                got, queues[c] = take(queues[c], total, None)
                chosen += got
        parts = [by_group[starts[g]:starts[g + 1]] for g in chosen]
        members = np.concatenate(parts) if parts else np.empty(0, np.int64)
        drawn = np.bincount(inverse[members], minlength=num_classes)
        if not np.array_equal(drawn, counts):
            what = (f"holds {len(members)} of {k} items" if len(members) != k else
                    "has its size but is not exactly stratified")
            notes.append(f"The {name} set {what} ({drawn.tolist()} drawn, {counts.tolist()} wanted for classes "
                         f"{classes.tolist()}): whole near-duplicate groups could not fill it exactly.")
        taken = taken + drawn
        return members

    global_test = draw("global_test", sizes["global_test"])
    server = draw("server", sizes["server"])
    client_test = [draw(f"client{i}_test", sizes["client_test"]) for i in range(num_clients)]
    remaining = np.concatenate(queues) if queues else np.empty(0, np.int64)
    train = np.flatnonzero(np.isin(numbers, remaining))
    if groups is None:
        local = run_partition(partition, labels[train], num_clients, rng, **kwargs)
    else:
        local = run_partition(partition, labels[train], num_clients, rng, groups=numbers[train], **kwargs)
    client_train = [train[p] for p in local]
    return Splits(
        global_test=np.sort(global_test), server=np.sort(server),
        client_test=tuple(np.sort(t) for t in client_test), client_train=tuple(client_train),
        notes=tuple(notes),
    )


def _owners(splits: Splits, n: int) -> tuple[list[str], np.ndarray]:
    """Set names, and the index of the set holding each of n items (-1: in none)."""
    sets = splits.named_sets()
    owner = np.full(n, -1, dtype=np.int64)
    for k, idx in enumerate(sets.values()):
        owner[idx] = k
    return list(sets), owner


def _check_groups(splits: Splits, groups: np.ndarray) -> np.ndarray:
    groups = np.asarray(groups)
    top = max((int(a.max()) for a in splits.named_sets().values() if len(a)), default=-1)
    if groups.ndim != 1 or len(groups) <= top or (len(groups) and not np.issubdtype(groups.dtype, np.integer)):
        raise ValueError(f"groups must be a 1-d integer array covering every index of the splits (> {top}), "
                         f"got {groups.shape} {groups.dtype}.")
    return groups


def straddling_groups(splits: Splits, groups: np.ndarray) -> int:
    """How many groups have members in more than one set of ``splits`` (0 when no group is cut).

    groups: (n,) group id per pooled position (e.g. ``ImageTable.groups``); items in no set are ignored.
    """
    groups = _check_groups(splits, groups)
    _, owner = _owners(splits, len(groups))
    placed = owner >= 0
    pairs = np.unique(np.stack([groups[placed], owner[placed]], axis=1), axis=0)
    if not len(pairs):
        return 0
    _, sets_per_group = np.unique(pairs[:, 0], return_counts=True)
    return int(np.sum(sets_per_group > 1))


def twins_elsewhere(splits: Splits, groups: np.ndarray) -> dict[str, int]:
    """For each set of ``splits``: how many of its items have a group member in another set (set name -> count).

    All zero for splits made with these groups; with splits made without them, this is the leakage: e.g.
    ``client0_test`` counts the attack images with a copy in training, server or another held-out set.
    """
    groups = _check_groups(splits, groups)
    names, owner = _owners(splits, len(groups))
    placed = np.flatnonzero(owner >= 0)
    numbers = group_numbers(groups[placed], len(placed))
    pairs = np.unique(np.stack([numbers, owner[placed]], axis=1), axis=0)
    sets_per_group = np.bincount(pairs[:, 0], minlength=int(numbers.max()) + 1 if len(numbers) else 0)
    shared = sets_per_group[numbers] > 1
    counts = np.bincount(owner[placed][shared], minlength=len(names))
    return {name: int(k) for name, k in zip(names, counts, strict=True)}
