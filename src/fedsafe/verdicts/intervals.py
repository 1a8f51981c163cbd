"""Confidence intervals of the audit's numbers, over images (the trained models held fixed).

* :func:`wilson_interval`: Wilson's score interval of a proportion (Wilson 1927), for an attack success rate of
  k flipped predictions among n. It stays inside [0, 1] and keeps its coverage near 0 and 1 and at small n, where
  the normal interval does not. A proportion that is a mean of several correlated rates is given with the number
  of independent images behind it (the audit counts each attack image once, however many targets judged it).
* :func:`auc_mean_ci`: DeLong's interval (DeLong, DeLong & Clarke-Pearson 1988) of one ROC AUC, or of the mean of
  several AUCs that share images (every client's AUC against the one global test set). Each AUC is a two-sample
  U-statistic; its structural components ("placement values") are, for a member i, the share of non-members it
  out-scores (ties 1/2), V10_i, and for a non-member j the share of members that out-score it, V01_j. The variance
  of a mean of AUCs is the sum over the independent groups of images of the sample variance of each image's
  summed components (over the AUCs it enters, weighted 1/P) divided by the group's size: members of different
  clients are different images, the non-members are one group shared by every AUC. The components come from
  mid-ranks (Sun & Xu 2014), O(n log n).

>>> lo, hi = wilson_interval(8, 10)
>>> round(lo, 4), round(hi, 4)
(0.4902, 0.9433)
>>> auc, lo, hi = auc_mean_ci([([0.9, 0.8, 0.3], [0.1, 0.3], "m", "n")])
>>> round(auc, 4)
0.9167
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from statistics import NormalDist

import numpy as np

__all__ = ["auc_mean_ci", "placement_values", "wilson_interval"]


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def _midranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of ``a``, ties sharing their mean rank."""
    order = np.argsort(a, kind="stable")
    _, first, counts = np.unique(a[order], return_index=True, return_counts=True)
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def wilson_interval(k: float, n: float, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of the proportion k / n at confidence ``level``; (NaN, NaN) when n = 0.

    ``k`` may be fractional (a mean rate times its number of images). ``0 <= k <= n``."""
    if n < 0 or not 0 <= k <= n or not (math.isfinite(k) and math.isfinite(n)):
        raise ValueError(f"a proportion needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan
    z = _z(level)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _scores(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or np.isnan(arr).any():
        raise ValueError(f"{name} must be a non-empty 1-D array of scores without NaN, got shape {arr.shape}")
    return arr


def placement_values(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (V10 of each member, V01 of each non-member); both average to the AUC."""
    pos, neg = _scores(member_scores, "member_scores"), _scores(nonmember_scores, "nonmember_scores")
    pooled = _midranks(np.concatenate([pos, neg]))  # mid-ranks: ties count 1/2
    v10 = (pooled[: pos.size] - _midranks(pos)) / neg.size  # non-members below (ties 1/2)
    v01 = 1.0 - (pooled[pos.size:] - _midranks(neg)) / pos.size  # members above (ties 1/2)
    return v10, v01


def auc_mean_ci(parts: Sequence[tuple[object, object, Hashable, Hashable]], *, level: float = 0.95
                ) -> tuple[float, float, float]:
    """(mean AUC, low, high) of the mean of the AUCs of ``parts`` (module docstring), a normal interval on
    DeLong's variance, clipped to [0, 1].

    Each part is ``(member_scores, nonmember_scores, member_group, nonmember_group)``: parts naming one group
    score the same images in the same order (e.g. every client's AUC against the global test set); different
    groups are independent images. A group of one image adds no variance estimate (its variance is taken as 0)."""
    if not parts:
        raise ValueError("auc_mean_ci needs at least one (members, non-members) part")
    z, weight = _z(level), 1.0 / len(parts)
    groups: dict[Hashable, np.ndarray] = {}
    aucs = []
    for pos, neg, g_pos, g_neg in parts:
        v10, v01 = placement_values(pos, neg)
        aucs.append(float(v10.mean()))
        for g, v in ((g_pos, v10), (g_neg, v01)):
            if g in groups and groups[g].shape != v.shape:
                raise ValueError(f"group {g!r} has {groups[g].size} images in one part and {v.size} in another")
            groups[g] = groups.get(g, 0.0) + weight * v
    var = sum(float(np.var(v, ddof=1)) / v.size for v in groups.values() if v.size > 1)
    mean = float(np.mean(aucs))
    half = z * math.sqrt(var)
    return mean, max(0.0, mean - half), min(1.0, mean + half)
