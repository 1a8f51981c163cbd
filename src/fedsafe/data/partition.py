"""Partitions of a training set over clients: the papers' label shards, Dirichlet label skew, IID.

Every function is pure: it takes the labels of the training set and an explicit
:class:`numpy.random.Generator`, and returns one sorted ``int64`` index array per client. The indices
are positions in ``labels``; every position appears in exactly one client's array (nothing is dropped,
nothing is shared).

Near-duplicate groups (``groups=``, one id per item, e.g. ``ImageTable.groups``): a group is handed out
whole, so no two clients hold copies of one picture. The partitions then work on groups instead of
items: a group counts as its majority label (ties: the smaller label), and every cut that the plain
partition makes at an item position is moved to the nearest group boundary (ties: the earlier one), so
sizes are as close to the plain ones as whole groups allow. With every group a single item (or
``groups=None``) the result, and the draws taken from ``rng``, are exactly those of the plain partition.

Example::

    >>> import numpy as np
    >>> labels = np.array([0, 0, 0, 1, 1, 1])
    >>> parts = shard_partition(labels, num_clients=3, num_shards=3, rng=np.random.default_rng(0))
    >>> sorted(np.concatenate(parts).tolist())
    [0, 1, 2, 3, 4, 5]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "AUTHORS_NUM_SHARDS",
    "PARTITIONS",
    "dirichlet_partition",
    "group_labels",
    "group_numbers",
    "iid_partition",
    "partition",
    "shard_partition",
]

logger = logging.getLogger(__name__)

AUTHORS_NUM_SHARDS = 15
"""S used by the authors' experiment code (15 shards, so 5 per client with 3 clients)."""


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-d array, got shape {labels.shape}.")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
    return labels


def _check_num_clients(num_clients: int) -> None:
    if isinstance(num_clients, bool) or not isinstance(num_clients, int | np.integer) or num_clients < 1:
        raise ValueError(f"num_clients must be a positive integer, got {num_clients!r}.")


def _sorted_parts(parts: list[np.ndarray]) -> list[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def group_numbers(groups: np.ndarray | None, n: int) -> np.ndarray:
    """(n,) int64 group number of each item, 0 .. G-1 in order of first appearance (``arange(n)`` for None).

    groups: (n,) integer ids, any values (items with equal ids form one group). Raises ValueError on a
    wrong shape or dtype.
    """
    if groups is None:
        return np.arange(n, dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != (n,) or (n and not np.issubdtype(groups.dtype, np.integer)):
        raise ValueError(f"groups must be a ({n},) integer array (one id per item), got {groups.shape} {groups.dtype}.")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def group_labels(labels: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """(G,) label of each group (numbers from :func:`group_numbers`): its majority label, ties to the smaller."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return labels[:0]
    classes, inverse = np.unique(labels, return_inverse=True)
    num_groups, num_classes = int(numbers.max()) + 1, len(classes)
    counts = np.bincount(numbers * num_classes + inverse.reshape(-1), minlength=num_groups * num_classes)
    return classes[np.argmax(counts.reshape(num_groups, num_classes), axis=1)]  # argmax: first maximum


def _snap(bounds: np.ndarray, targets: np.ndarray, *, nonempty: bool) -> np.ndarray:
    """Cut positions j_1 <= j_2 <= ... (indices into ``bounds``) with bounds[j_k] nearest to targets[k].

    bounds: (G + 1,) increasing item offsets of a sequence of G groups (0 ... n). Ties go to the earlier
    boundary. ``nonempty``: strictly increasing, in [1, G - 1], leaving every piece at least one group.
    When every group is one item, bounds[j_k] == targets[k] (targets in range).
    """
    num_groups, m = len(bounds) - 1, len(targets)
    out = np.empty(m, dtype=np.int64)
    prev = 0
    for k, t in enumerate(np.asarray(targets, dtype=np.int64)):
        j = int(np.searchsorted(bounds, t))  # first boundary >= t
        if j > num_groups or (j > 0 and t - bounds[j - 1] <= bounds[j] - t):
            j -= 1
        lo, hi = (prev + 1, num_groups - (m - k)) if nonempty else (prev, num_groups)
        out[k] = prev = min(max(j, lo), hi)
    return out


def _parts_of(owner_of_item: np.ndarray, num_clients: int) -> list[np.ndarray]:
    """Client index per item -> one sorted index array per client."""
    order = np.argsort(owner_of_item, kind="stable")
    return np.split(order.astype(np.int64), np.cumsum(np.bincount(owner_of_item, minlength=num_clients))[:-1])


def _array_split_cuts(n: int, pieces: int) -> np.ndarray:
    """The item offsets where ``numpy.array_split(range(n), pieces)`` cuts (the first n % pieces one longer)."""
    q, r = divmod(n, pieces)
    return np.array([k * q + min(k, r) for k in range(1, pieces)], dtype=np.int64)


def shard_partition(
    labels: np.ndarray, num_clients: int, num_shards: int, rng: np.random.Generator, *,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The papers' non-IID split: sort by label, cut into S shards, give each client S/N shards at random.

    Following the authors' code (and McMahan et al. 2017): the training positions are sorted by label
    with a stable sort (ties keep their original order), the sorted sequence is cut into ``num_shards``
    consecutive shards, and a random permutation of the shards hands each client ``num_shards //
    num_clients`` of them.

    When ``len(labels)`` is not a multiple of S, the remainder r = len % S is not dropped: the first r
    shards of the sorted sequence (those of the smallest labels) get one item more than the others
    (``numpy.array_split``), so shard sizes differ by at most one and every item is assigned.

    With ``groups``, the groups are sorted by their label (stable: ties in order of first appearance),
    members kept together, and each cut moves to the nearest group boundary: no group is cut.

    Args:
        labels: (n,) integer class labels of the training set.
        num_clients: N >= 1; must divide ``num_shards``.
        num_shards: S >= N; needs n >= S (and S groups) so that no shard is empty.
        rng: the only source of randomness (which client gets which shards).
        groups: (n,) near-duplicate group ids, or None (every item alone).

    Returns:
        N sorted int64 arrays of positions in ``labels``, disjoint, covering ``range(n)``.
    """
    labels = _check_labels(labels)
    _check_num_clients(num_clients)
    if isinstance(num_shards, bool) or not isinstance(num_shards, int | np.integer) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}.")
    if num_shards % num_clients:
        raise ValueError(
            f"num_shards ({num_shards}) must be divisible by num_clients ({num_clients}) so that every "
            "client gets the same number of shards."
        )
    numbers = group_numbers(groups, len(labels))
    num_groups = int(numbers.max()) + 1 if len(labels) else 0
    if num_groups < num_shards:
        what = "" if groups is None else f" in {num_groups} groups"
        raise ValueError(f"Cannot cut {len(labels)} items{what} into {num_shards} non-empty shards.")
    group_order = np.argsort(group_labels(labels, numbers), kind="stable")
    sizes = np.bincount(numbers, minlength=num_groups)
    bounds = np.concatenate([[0], np.cumsum(sizes[group_order])])
    cuts = _snap(bounds, _array_split_cuts(len(labels), num_shards), nonempty=True)
    shard_of_group = np.empty(num_groups, dtype=np.int64)
    for shard, chunk in enumerate(np.split(group_order, cuts)):
        shard_of_group[chunk] = shard
    owners = rng.permutation(num_shards).reshape(num_clients, num_shards // num_clients)
    client_of_shard = np.empty(num_shards, dtype=np.int64)
    for client, row in enumerate(owners):
        client_of_shard[row] = client
    return _sorted_parts(_parts_of(client_of_shard[shard_of_group[numbers]], num_clients))


def dirichlet_partition(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
    *,
    max_tries: int = 100,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Dirichlet label skew: each class is spread over the clients in proportions ~ Dir(alpha * 1_N).

    For every class, its positions are shuffled and cut at ``round(cumsum(p) * n_class)`` with
    p ~ Dir(alpha, ..., alpha) drawn independently per class (Hsu et al. 2019). Small alpha (0.1) gives
    each client few classes; large alpha (1000) approaches an IID split. The whole draw is repeated until
    every client holds at least ``min_size`` items, at most ``max_tries`` times.

    With ``groups``, a class's groups (by majority label) are shuffled instead of its items, and each
    cut moves to the nearest group boundary of that order.

    Args:
        labels: (n,) integer class labels of the training set.
        num_clients: N >= 1.
        alpha: concentration > 0.
        rng: the only source of randomness.
        min_size: smallest acceptable client data set; needs N * min_size <= n.
        max_tries: draws before giving up with ``ValueError``.
        groups: (n,) near-duplicate group ids, or None (every item alone).

    Returns:
        N sorted int64 arrays of positions in ``labels``, disjoint, covering ``range(n)``.
    """
    labels = _check_labels(labels)
    _check_num_clients(num_clients)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}.")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}.")
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}.")
    if num_clients * min_size > len(labels):
        raise ValueError(
            f"{len(labels)} items cannot give each of {num_clients} clients at least {min_size} items."
        )
    numbers = group_numbers(groups, len(labels))
    keys = group_labels(labels, numbers)
    sizes = np.bincount(numbers, minlength=len(keys))
    by_class = [np.flatnonzero(keys == c) for c in np.unique(labels)]
    client_of_group = np.empty(len(keys), dtype=np.int64)
    for attempt in range(1, max_tries + 1):
        for members in by_class:
            members = rng.permutation(members)
            p = rng.dirichlet(np.full(num_clients, float(alpha)))
            n_class = int(sizes[members].sum())
            targets = np.clip(np.round(np.cumsum(p)[:-1] * n_class), 0, n_class).astype(np.int64)
            bounds = np.concatenate([[0], np.cumsum(sizes[members])])
            for client, chunk in enumerate(np.split(members, _snap(bounds, targets, nonempty=False))):
                client_of_group[chunk] = client
        merged = _parts_of(client_of_group[numbers], num_clients)
        smallest = min(len(m) for m in merged)
        if smallest >= min_size:
            logger.debug("dirichlet_partition: accepted draw %d (smallest client %d)", attempt, smallest)
            return _sorted_parts(merged)
    raise ValueError(
        f"No Dirichlet(alpha={alpha}) draw in {max_tries} tries gave every one of {num_clients} clients "
        f"at least {min_size} of {len(labels)} items; raise alpha or lower min_size."
    )


def iid_partition(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, *, groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """IID split: a random permutation cut into N parts whose sizes differ by at most one.

    With ``groups``, the groups are permuted and each cut moves to the nearest group boundary.

    Args:
        labels: (n,) labels of the training set (only their number is used).
        num_clients: N >= 1, needs N <= n (and N groups) so that no client is empty.
        rng: the only source of randomness.
        groups: (n,) near-duplicate group ids, or None (every item alone).
    """
    labels = _check_labels(labels)
    _check_num_clients(num_clients)
    numbers = group_numbers(groups, len(labels))
    num_groups = int(numbers.max()) + 1 if len(labels) else 0
    if num_clients > num_groups:
        what = "" if groups is None else f" in {num_groups} groups"
        raise ValueError(f"Cannot split {len(labels)} items{what} over {num_clients} clients without empty ones.")
    group_order = rng.permutation(num_groups)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(numbers, minlength=num_groups)[group_order])])
    client_of_group = np.empty(num_groups, dtype=np.int64)
    cuts = _snap(bounds, _array_split_cuts(len(labels), num_clients), nonempty=True)
    for client, chunk in enumerate(np.split(group_order, cuts)):
        client_of_group[chunk] = client
    return _sorted_parts(_parts_of(client_of_group[numbers], num_clients))


PARTITIONS: dict[str, Callable[..., list[np.ndarray]]] = {
    "shards": shard_partition,
    "dirichlet": dirichlet_partition,
    "iid": iid_partition,
}


def partition(
    name: str, labels: np.ndarray, num_clients: int, rng: np.random.Generator, **kw: Any
) -> list[np.ndarray]:
    """Run the partition registered as ``name`` (see ``PARTITIONS``) with its own keyword arguments
    (every partition takes ``groups=``, near-duplicate group ids that it keeps whole).

    >>> parts = partition("iid", np.zeros(10, int), 2, np.random.default_rng(0))
    >>> [len(p) for p in parts]
    [5, 5]
    """
    try:
        fn = PARTITIONS[name]
    except KeyError:
        raise ValueError(f"Unknown partition {name!r}; known: {', '.join(sorted(PARTITIONS))}.") from None
    return fn(labels, num_clients, rng=rng, **kw)
