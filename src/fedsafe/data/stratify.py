"""Stratified draws: how many items of each class a draw of k takes, and a random order of a set whose every
prefix is class-proportional (the defenses' nested server subsets, design §5)."""

from __future__ import annotations

import numpy as np

__all__ = ["server_fraction", "stratified_counts"]


def stratified_counts(k: int, pool_counts: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
    """Per-class counts of a stratified draw of ``k`` items, within +-1 of ``k * pool_counts / sum``.

    Largest-remainder (Hamilton) apportionment in exact integer arithmetic; ties go to the lower class
    index. If ``available`` caps a class below its share, the deficit moves to the other classes in the
    same order (then the +-1 bound no longer holds for them).
    """
    pool_counts = np.asarray(pool_counts, dtype=np.int64)
    total = int(pool_counts.sum())
    avail = pool_counts if available is None else np.asarray(available, dtype=np.int64)
    if k < 0 or k > int(avail.sum()):
        raise ValueError(f"Cannot draw {k} items from {int(avail.sum())} available.")
    if k == 0 or total == 0:
        return np.zeros_like(pool_counts)
    scaled = k * pool_counts
    counts, rem = scaled // total, scaled % total
    order = np.lexsort((np.arange(len(pool_counts)), -rem))
    counts[order[: k - int(counts.sum())]] += 1
    over = np.maximum(counts - avail, 0)
    deficit = int(over.sum())
    counts -= over
    for c in order:
        if deficit == 0:
            break
        extra = min(deficit, int(avail[c] - counts[c]))
        counts[c] += extra
        deficit -= extra
    return counts


def server_fraction(
    server_idx: np.ndarray, f: float, rng: np.random.Generator, *, labels: np.ndarray
) -> np.ndarray:
    """A stratified fraction f of the server set (design §5: f in {0.1, 0.2, 0.3, 0.5, 0.7, 1.0}).

    Selects exactly ``round(f * len(server_idx))`` indices (Python's ``round``). The server set is put in
    one stratified random order: each class is shuffled with ``rng``, then the classes are interleaved by
    always taking next the class furthest behind its share (integer arithmetic, ties to the lower class
    index), so every prefix is within one item per class of proportional (exactly so for two classes).
    The selection is the first ``round(f * len)`` of that order; hence, called with generators of the same
    seed, smaller fractions give subsets of larger ones, and f = 1 gives the whole set.

    Args:
        server_idx: positions in ``labels`` of the server set.
        f: fraction in (0, 1].
        rng: the only source of randomness; a fresh generator of the same seed gives the same order.
        labels: pooled labels that ``server_idx`` points into.

    Returns:
        The selected positions (a subset of ``server_idx``), sorted, int64.
    """
    if not 0.0 < f <= 1.0:
        raise ValueError(f"The server fraction must lie in (0, 1], got {f}.")
    server_idx = np.asarray(server_idx, dtype=np.int64).reshape(-1)
    order = _stratified_order(np.asarray(labels)[server_idx], rng)
    k = round(f * len(server_idx))
    return np.sort(server_idx[order[:k]])


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``range(len(labels))`` whose every prefix is (nearly) class-proportional."""
    n = len(labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes)).astype(np.int64)
    queues = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    taken = np.zeros(len(classes), dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    for step in range(n):
        # deficit of class c after step+1 picks, scaled by n: (step+1) * counts[c] - n * taken[c]
        deficit = (step + 1) * counts - n * taken
        c = int(np.argmax(deficit))  # argmax returns the first maximum: ties go to the lower class
        order[step] = queues[c][taken[c]]
        taken[c] += 1
    return order
