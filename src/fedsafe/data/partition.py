"""Partitions of a training set over clients: the papers' label shards, Dirichlet label skew, IID.

Every function is pure: it takes the labels of the training set and an explicit
:class:`numpy.random.Generator`, and returns one sorted ``int64`` index array per client. The indices
are positions in ``labels``; every position appears in exactly one client's array (nothing is dropped,
nothing is shared).

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


def shard_partition(
    labels: np.ndarray, num_clients: int, num_shards: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The papers' non-IID split: sort by label, cut into S shards, give each client S/N shards at random.

    Following the authors' code (and McMahan et al. 2017): the training positions are sorted by label
    with a stable sort (ties keep their original order), the sorted sequence is cut into ``num_shards``
    consecutive shards, and a random permutation of the shards hands each client ``num_shards //
    num_clients`` of them.

    When ``len(labels)`` is not a multiple of S, the remainder r = len % S is not dropped: the first r
    shards of the sorted sequence (those of the smallest labels) get one item more than the others
    (``numpy.array_split``), so shard sizes differ by at most one and every item is assigned.

    Args:
        labels: (n,) integer class labels of the training set.
        num_clients: N >= 1; must divide ``num_shards``.
        num_shards: S >= N; needs n >= S so that no shard is empty.
        rng: the only source of randomness (which client gets which shards).

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
    if len(labels) < num_shards:
        raise ValueError(f"Cannot cut {len(labels)} items into {num_shards} non-empty shards.")
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, num_shards)
    owners = rng.permutation(num_shards).reshape(num_clients, num_shards // num_clients)
    return _sorted_parts([np.concatenate([shards[s] for s in row]) for row in owners])


def dirichlet_partition(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
    *,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Dirichlet label skew: each class is spread over the clients in proportions ~ Dir(alpha * 1_N).

    For every class, its positions are shuffled and cut at ``round(cumsum(p) * n_class)`` with
    p ~ Dir(alpha, ..., alpha) drawn independently per class (Hsu et al. 2019). Small alpha (0.1) gives
    each client few classes; large alpha (1000) approaches an IID split. The whole draw is repeated until
    every client holds at least ``min_size`` items, at most ``max_tries`` times.

    Args:
        labels: (n,) integer class labels of the training set.
        num_clients: N >= 1.
        alpha: concentration > 0.
        rng: the only source of randomness.
        min_size: smallest acceptable client data set; needs N * min_size <= n.
        max_tries: draws before giving up with ``ValueError``.

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
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for attempt in range(1, max_tries + 1):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in by_class:
            idx = rng.permutation(idx)
            p = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = np.clip(np.round(np.cumsum(p)[:-1] * len(idx)), 0, len(idx)).astype(np.int64)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].append(chunk)
        merged = [np.concatenate(p) if p else np.empty(0, np.int64) for p in parts]
        smallest = min(len(m) for m in merged)
        if smallest >= min_size:
            logger.debug("dirichlet_partition: accepted draw %d (smallest client %d)", attempt, smallest)
            return _sorted_parts(merged)
    raise ValueError(
        f"No Dirichlet(alpha={alpha}) draw in {max_tries} tries gave every one of {num_clients} clients "
        f"at least {min_size} of {len(labels)} items; raise alpha or lower min_size."
    )


def iid_partition(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """IID split: a random permutation cut into N parts whose sizes differ by at most one.

    Args:
        labels: (n,) labels of the training set (only their number is used).
        num_clients: N >= 1, needs N <= n so that no client is empty.
        rng: the only source of randomness.
    """
    labels = _check_labels(labels)
    _check_num_clients(num_clients)
    if num_clients > len(labels):
        raise ValueError(f"Cannot split {len(labels)} items over {num_clients} clients without empty ones.")
    return _sorted_parts(np.array_split(rng.permutation(len(labels)), num_clients))


PARTITIONS: dict[str, Callable[..., list[np.ndarray]]] = {
    "shards": shard_partition,
    "dirichlet": dirichlet_partition,
    "iid": iid_partition,
}


def partition(
    name: str, labels: np.ndarray, num_clients: int, rng: np.random.Generator, **kw: Any
) -> list[np.ndarray]:
    """Run the partition registered as ``name`` (see ``PARTITIONS``) with its own keyword arguments.

    >>> parts = partition("iid", np.zeros(10, int), 2, np.random.default_rng(0))
    >>> [len(p) for p in parts]
    [5, 5]
    """
    try:
        fn = PARTITIONS[name]
    except KeyError:
        raise ValueError(f"Unknown partition {name!r}; known: {', '.join(sorted(PARTITIONS))}.") from None
    return fn(labels, num_clients, rng=rng, **kw)
