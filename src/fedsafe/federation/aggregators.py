"""Aggregation rules over client states: FedAvg and the robust options of design §3, step 4.

Robust rules are *options*, never silent defaults (design §3, step 4). Each rule is a pure function over a sequence of
states (name -> tensor, all with the same keys and shapes); it accumulates in float64 and returns each entry in
its own dtype, like :func:`fedsafe.federation.state.fedavg`.

* ``median`` -- coordinate-wise median (Yin et al. 2018, "Byzantine-robust distributed learning: towards
  optimal statistical rates", Def. 1); with an even number of clients the mean of the two middle values.
* ``trimmed-mean`` -- coordinate-wise beta-trimmed mean (Yin et al. 2018, Def. 2): per coordinate the
  k = floor(beta n) largest and k smallest values are removed and the remaining n - 2k averaged, 0 <= beta < 1/2.
* ``krum`` / ``multi-krum`` -- Blanchard et al. 2017, "Machine learning with adversaries: Byzantine tolerant
  gradient descent": the score of client i is the sum of the squared L2 distances from w_i to its n - f - 2
  nearest other states; Krum returns the state of least score, multi-Krum the (optionally weighted) mean of the
  m states of least score. Requires n > 2f + 2 (the paper's condition).

The coordinate-wise rules are unweighted (as in Yin et al. and Flower): the data-size weights only enter FedAvg
and multi-Krum. :func:`aggregate_with` gives every rule one call signature for the server.

Example:
    >>> import torch
    >>> states = [{"w": torch.tensor([1.0])}, {"w": torch.tensor([2.0])}, {"w": torch.tensor([100.0])}]
    >>> coordinate_median(states)["w"]
    tensor([2.])
    >>> state, info = aggregate_with("krum", states, None, byzantine=0)
    >>> info["selected"], state["w"]
    ([0], tensor([1.]))
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .state import clone, fedavg, flatten

__all__ = [
    "AGGREGATORS",
    "aggregate_with",
    "coordinate_median",
    "krum",
    "krum_scores",
    "krum_select",
    "multi_krum",
    "trimmed_mean",
]

StateDict = Mapping[str, torch.Tensor]
Aggregated = tuple["OrderedDict[str, torch.Tensor]", dict[str, Any]]


def _check_states(states: Sequence[StateDict], rule: str) -> list[str]:
    """The common keys of ``states``; raises ValueError when there are none or keys / shapes differ."""
    if len(states) == 0:
        raise ValueError(f"{rule} needs at least one state, got none.")
    keys = list(states[0].keys())
    for i, s in enumerate(states[1:], start=1):
        if list(s.keys()) != keys:
            raise ValueError(f"{rule}: state {i} has different keys from state 0.")
        for k in keys:
            if s[k].shape != states[0][k].shape:
                raise ValueError(f"{rule}: entry {k!r} of state {i} has shape {tuple(s[k].shape)}, "
                                 f"state 0 has {tuple(states[0][k].shape)}.")
    return keys


def _stacked(states: Sequence[StateDict], key: str) -> torch.Tensor:
    """(n, *shape) float64 stack of entry ``key`` of every state."""
    return torch.stack([s[key].detach().to(torch.float64) for s in states])


def _check_count(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def coordinate_median(states: Sequence[StateDict]) -> OrderedDict[str, torch.Tensor]:
    """Coordinate-wise median of n states (Yin et al. 2018, Def. 1); even n: mean of the two middle values.

    Shapes: every state maps the same keys to tensors of the same shapes; the result has those shapes.
    """
    keys = _check_states(states, "median")
    n = len(states)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k in keys:
        ordered = _stacked(states, k).sort(dim=0).values
        mid = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        out[k] = mid.to(states[0][k].dtype)
    return out


def trimmed_mean(states: Sequence[StateDict], *, trim_fraction: float) -> OrderedDict[str, torch.Tensor]:
    """Coordinate-wise beta-trimmed mean (Yin et al. 2018, Def. 2), beta = ``trim_fraction`` in [0, 1/2).

    Per coordinate the k = floor(beta n) smallest and k largest of the n values are dropped and the other
    n - 2k averaged (k = 0 is the plain mean). Shapes as :func:`coordinate_median`.
    """
    keys = _check_states(states, "trimmed-mean")
    if isinstance(trim_fraction, bool) or not isinstance(trim_fraction, numbers.Real) or not (
            0.0 <= trim_fraction < 0.5):
        raise ValueError(f"trim_fraction (beta) must lie in [0, 0.5), got {trim_fraction!r}.")
    n = len(states)
    cut = math.floor(trim_fraction * n)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k in keys:
        ordered = _stacked(states, k).sort(dim=0).values
        out[k] = ordered[cut:n - cut].mean(dim=0).to(states[0][k].dtype)
    return out


def _check_byzantine(n: int, byzantine: int) -> int:
    f = _check_count("byzantine (f)", byzantine, 0)
    if n <= 2 * f + 2:
        raise ValueError(f"Krum with f = {f} Byzantine clients needs n > 2f + 2 = {2 * f + 2} states, got {n}.")
    return f


def krum_scores(states: Sequence[StateDict], *, byzantine: int) -> torch.Tensor:
    """Krum scores (Blanchard et al. 2017, Sec. 4): s(i) = sum of ||w_i - w_j||^2 over the n - f - 2 states
    j != i nearest to w_i. Returns a (n,) float64 tensor. Requires n > 2f + 2."""
    _check_states(states, "krum")
    n = len(states)
    f = _check_byzantine(n, byzantine)
    flat = torch.stack([flatten(s) for s in states])  # (n, d) float64
    dist = torch.zeros(n, n, dtype=torch.float64, device=flat.device)
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = ((flat[i] - flat[j]) ** 2).sum()
    nearest = n - f - 2
    scores = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        others = torch.cat([dist[i, :i], dist[i, i + 1:]])
        scores[i] = others.sort().values[:nearest].sum().cpu()
    return scores


def _least(scores: torch.Tensor, m: int) -> tuple[int, ...]:
    """Indices of the ``m`` least scores, best first (ties: the lower index first)."""
    m = _check_count("multi_krum_m (m)", m, 1)
    if m > len(scores):
        raise ValueError(f"multi_krum_m (m) cannot exceed the number of states ({len(scores)}), got {m}.")
    return tuple(sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))[:m])


def krum_select(states: Sequence[StateDict], *, byzantine: int, m: int = 1) -> tuple[int, ...]:
    """Indices of the ``m`` states of least Krum score, best first (ties: the lower index first)."""
    return _least(krum_scores(states, byzantine=byzantine), m)


def krum(states: Sequence[StateDict], *, byzantine: int) -> OrderedDict[str, torch.Tensor]:
    """Krum (Blanchard et al. 2017): a copy of the state of least score."""
    (best,) = krum_select(states, byzantine=byzantine, m=1)
    return clone(states[best])


def multi_krum(states: Sequence[StateDict], weights: Sequence[float] | None = None, *, byzantine: int,
               m: int | None = None) -> OrderedDict[str, torch.Tensor]:
    """Multi-Krum (Blanchard et al. 2017, Sec. 5): the mean of the m states of least Krum score, weighted by
    ``weights`` (renormalised over the selected) when given. ``m=None`` takes m = n - f."""
    scores = krum_scores(states, byzantine=byzantine)
    chosen = _least(scores, len(states) - int(byzantine) if m is None else m)
    return fedavg([states[i] for i in chosen], None if weights is None else [weights[i] for i in chosen])


def _check_weights(states: Sequence[StateDict], weights: Sequence[float] | None) -> None:
    if weights is not None and len(weights) != len(states):
        raise ValueError(f"got {len(states)} states but {len(weights)} weights.")


def _fedavg(states: Sequence[StateDict], weights: Sequence[float] | None, **_: Any) -> Aggregated:
    return fedavg(states, weights), {}


def _median(states: Sequence[StateDict], weights: Sequence[float] | None, **_: Any) -> Aggregated:
    return coordinate_median(states), {"rule": "median", "weighted": False}


def _trimmed(states: Sequence[StateDict], weights: Sequence[float] | None, *, trim_fraction: float,
             **_: Any) -> Aggregated:
    state = trimmed_mean(states, trim_fraction=trim_fraction)
    return state, {"rule": "trimmed-mean", "weighted": False, "trim_fraction": float(trim_fraction),
                   "trimmed_per_side": math.floor(trim_fraction * len(states))}


def _krum(states: Sequence[StateDict], weights: Sequence[float] | None, *, byzantine: int, **_: Any) -> Aggregated:
    scores = krum_scores(states, byzantine=byzantine)
    (best,) = _least(scores, 1)
    return clone(states[best]), {"rule": "krum", "byzantine": int(byzantine), "selected": [best],
                                 "scores": [float(s) for s in scores]}


def _multi_krum(states: Sequence[StateDict], weights: Sequence[float] | None, *, byzantine: int,
                multi_krum_m: int | None, **_: Any) -> Aggregated:
    scores = krum_scores(states, byzantine=byzantine)
    m = len(states) - int(byzantine) if multi_krum_m is None else multi_krum_m
    chosen = _least(scores, m)
    state = fedavg([states[i] for i in chosen], None if weights is None else [weights[i] for i in chosen])
    return state, {"rule": "multi-krum", "byzantine": int(byzantine), "m": len(chosen), "selected": list(chosen),
                   "weighted": weights is not None, "scores": [float(s) for s in scores]}


AGGREGATORS: dict[str, Callable[..., Aggregated]] = {
    "fedavg": _fedavg,
    "median": _median,
    "trimmed-mean": _trimmed,
    "krum": _krum,
    "multi-krum": _multi_krum,
}


def aggregate_with(name: str, states: Sequence[StateDict], weights: Sequence[float] | None = None, *,
                   trim_fraction: float = 0.1, byzantine: int = 0,
                   multi_krum_m: int | None = None) -> Aggregated:
    """Aggregate ``states`` with the rule ``name`` (a key of :data:`AGGREGATORS`); returns (state, info).

    ``weights`` (e.g. local data sizes; ``None`` = uniform) weight FedAvg and multi-Krum; the coordinate-wise
    rules ignore them (``info["weighted"]`` is False). ``trim_fraction`` is the trimmed mean's beta,
    ``byzantine`` Krum's f and ``multi_krum_m`` multi-Krum's m (``None``: n - f); a rule ignores the others.
    ``info`` is JSON-safe: empty for FedAvg; for Krum and multi-Krum ``selected`` lists the positions in
    ``states`` that were chosen (best first) and ``scores`` every state's Krum score.
    """
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregator {name!r}; known: {', '.join(AGGREGATORS)}.")
    _check_weights(states, weights)
    return AGGREGATORS[name](states, weights, trim_fraction=trim_fraction, byzantine=byzantine,
                             multi_krum_m=multi_krum_m)
