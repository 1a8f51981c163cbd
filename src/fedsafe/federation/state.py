"""Arithmetic over model state dicts: the maths of a federated round, engine-independent.

A *state* is a mapping name -> tensor (a model's ``state_dict()``; fedsafe models keep their normalisation
constants out of it, so every entry is a learnable weight). A model the user brings may hold buffers too:
floating-point ones (BatchNorm's running statistics) travel, are clipped and noised like the weights (they are
computed from the clients' data); integer ones (BatchNorm's ``num_batches_tracked`` counters) are not weights:
norms, clipping and noise leave them out, and averaging rounds them. Functions return new states unless their
name ends in ``_``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch

__all__ = ["State", "clone", "global_norm", "clip_", "clip", "add_gaussian", "fedavg", "max_abs_diff", "flatten",
           "non_finite"]

State = "OrderedDict[str, torch.Tensor]"


def clone(state: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((k, v.detach().clone()) for k, v in state.items())


def flatten(state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """All entries as one float64 vector, in the state's order."""
    return torch.cat([v.detach().reshape(-1).to(torch.float64) for v in state.values()])


def global_norm(state: Mapping[str, torch.Tensor]) -> float:
    """||w||_2 over all floating-point entries (computed in float64)."""
    return float(torch.sqrt(sum((v.detach().to(torch.float64) ** 2).sum() for v in state.values()
                                if v.is_floating_point())))


def clip_(state: Mapping[str, torch.Tensor], max_norm: float) -> float:
    """In place: w <- w / max(1, ||w||_2 / C) (NbAFL uplink clipping). Returns the scale applied."""
    if max_norm <= 0:
        raise ValueError(f"clipping bound C must be > 0, got {max_norm}")
    scale = 1.0 / max(1.0, global_norm(state) / max_norm)
    if scale < 1.0:
        for v in state.values():
            if v.is_floating_point():
                v.mul_(scale)
    return scale


def clip(state: Mapping[str, torch.Tensor], max_norm: float) -> OrderedDict[str, torch.Tensor]:
    out = clone(state)
    clip_(out, max_norm)
    return out


def add_gaussian(state: Mapping[str, torch.Tensor], std: float, generator: torch.Generator) -> OrderedDict[
        str, torch.Tensor]:
    """w + n, n ~ N(0, std^2 I), drawn entry by entry in the state's order from ``generator`` (on its device, then
    moved to each entry's); integer entries (counters) are copied unchanged and draw nothing."""
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")
    out = clone(state)
    if std == 0:
        return out
    for name, v in out.items():
        if not v.is_floating_point():
            continue
        # drawn on the generator's device (a CPU generator on every machine: the same noise on CPU and GPU)
        noise = torch.randn(v.shape, generator=generator, dtype=torch.float32, device=generator.device)
        v.add_(noise.to(device=v.device, dtype=v.dtype), alpha=std)
        if name.endswith("running_var"):
            # a variance cannot be negative (BatchNorm would give NaN): clamped at 0, post-processing of the noised
            # value, so the privacy it gives is unchanged
            v.clamp_(min=0)
    return out


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None) -> OrderedDict[
        str, torch.Tensor]:
    """Weighted average sum_i p_i w_i with p_i = weights_i / sum(weights) (McMahan et al. 2017).

    ``weights=None`` is the unweighted mean. Accumulates in float64 and returns each entry's own dtype.
    """
    if not states:
        raise ValueError("fedavg needs at least one state")
    if weights is None:
        weights = [1.0] * len(states)
    if len(weights) != len(states):
        raise ValueError(f"fedavg got {len(states)} states but {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"fedavg weights must be >= 0 with a positive sum, got {list(weights)}")
    keys = list(states[0].keys())
    for s in states[1:]:
        if list(s.keys()) != keys:
            raise ValueError("fedavg: states have different keys")
    total = float(sum(weights))
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k in keys:
        acc = torch.zeros_like(states[0][k], dtype=torch.float64)
        for s, w in zip(states, weights, strict=True):
            acc.add_(s[k].detach().to(torch.float64), alpha=float(w) / total)
        dtype = states[0][k].dtype
        out[k] = acc.to(dtype) if states[0][k].is_floating_point() else acc.round().to(dtype)
    return out


def max_abs_diff(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    if list(a.keys()) != list(b.keys()):
        raise ValueError("states have different keys")
    return max(float((a[k].detach().double() - b[k].detach().double()).abs().max()) for k in a)


def non_finite(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """(NaN count, Inf count) of every floating (or complex) entry of ``state`` that holds any, in the state's order;
    empty when every entry is finite. The one non-finite check of an upload, an aggregate and a saved model.

    >>> non_finite({"w": torch.tensor([1.0, float("nan"), float("inf")]), "n": torch.tensor([3])})
    {'w': (1, 1)}
    """
    out = {}
    for key, value in state.items():
        v = value.detach()
        if not v.is_floating_point() and not v.is_complex():
            continue
        n_nan, n_inf = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
        if n_nan or n_inf:
            out[key] = (n_nan, n_inf)
    return out
