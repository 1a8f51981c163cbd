"""Upload screening: the server's check of every client upload, before aggregation (design §3.1).

A non-finite upload poisons FedAvg silently: one NaN makes every averaged entry NaN, and uplink clipping does not
help (``clip_`` leaves NaN unchanged, since max(1, NaN) is 1, and turns an upload holding Inf into NaN and zeros).
So the server screens first:

1. an upload with any NaN or Inf entry is **rejected** (the round aggregates the others, re-weighted);
2. with ``norm_factor`` set, an upload whose update norm exceeds ``norm_factor`` x the median update norm of the
   finite uploads is **flagged**, and with ``action="clip"`` scaled back to that bound, or with
   ``action="reject"`` rejected.

The update of upload w_i is w_i - w_ref when a ``reference`` (the state the client received, or the global model
the round started from) is given, else w_i itself; norms are L2 over all entries, in float64. The median is the
*lower* median (with two finite uploads, the smaller norm is the yardstick, so one huge upload of two is caught).

Example:
    >>> import torch
    >>> ups = [{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([float("nan"), 0.0])},
    ...        {"w": torch.tensor([0.0, 1.0])}]
    >>> s = screen_uploads(ups, norm_factor=None)
    >>> s.accepted, s.rejected[0]["reason"]
    ((0, 2), "non-finite: 1 entries NaN/Inf (1 NaN, 0 Inf), first in 'w'")
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..names import NORM_ACTIONS
from .state import non_finite

__all__ = ["Screening", "screen_uploads"]

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Screening:
    """What screening did to a round's n uploads (indices are positions in the uploads given).

    ``accepted``: the indices to aggregate, ascending. ``rejected`` / ``flagged``: ``{"client": i, "reason": str}``
    per upload (a clipped upload is flagged and accepted). ``uploads``: all n uploads, the clipped ones replaced by
    their clipped copies and every other one the very object given. ``norms``: each upload's update norm (NaN
    for a non-finite one); ``median_norm`` their lower median over the finite uploads, ``bound`` =
    norm_factor x median_norm (``None`` without a norm screen).
    """

    accepted: tuple[int, ...]
    rejected: tuple[dict[str, object], ...]
    flagged: tuple[dict[str, object], ...]
    uploads: tuple[StateDict, ...]
    norms: tuple[float, ...]
    median_norm: float
    bound: float | None


def _non_finite(state: StateDict) -> str | None:
    """The rejection reason of a state with NaN/Inf entries, or None when every entry is finite."""
    bad = non_finite(state)
    if not bad:
        return None
    first = next(iter(bad))
    nan, inf = sum(n for n, _ in bad.values()), sum(i for _, i in bad.values())
    return f"non-finite: {nan + inf} entries NaN/Inf ({nan} NaN, {inf} Inf), first in {first!r}"


def _update_norm(state: StateDict, reference: StateDict | None) -> float:
    total = torch.zeros((), dtype=torch.float64)
    for key, value in state.items():
        if not value.is_floating_point():  # counters (BatchNorm's num_batches_tracked) are not weights
            continue
        v = value.detach().to(torch.float64)
        if reference is not None:
            v = v - reference[key].detach().to(torch.float64)
        total = total + (v * v).sum().cpu()
    return math.sqrt(float(total))


def _scaled(state: StateDict, reference: StateDict | None, scale: float) -> OrderedDict[str, torch.Tensor]:
    """w_ref + scale (w - w_ref) (or scale w without a reference), computed in float64, each entry's dtype."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        v = value.detach().to(torch.float64)
        if reference is None:
            out[key] = (v * scale).to(value.dtype)
        else:
            r = reference[key].detach().to(torch.float64)
            out[key] = (r + (v - r) * scale).to(value.dtype)
    return out


def _check_layout(uploads: Sequence[StateDict], reference: StateDict | None) -> None:
    template = reference if reference is not None else uploads[0]
    name = "the reference" if reference is not None else "upload 0"
    shapes = {k: tuple(v.shape) for k, v in template.items()}
    for i, s in enumerate(uploads):
        if {k: tuple(v.shape) for k, v in s.items()} != shapes:
            raise ValueError(f"upload {i} does not have the keys and shapes of {name}.")


def screen_uploads(uploads: Sequence[StateDict], *, reference: StateDict | None = None,
                   norm_factor: float | None = None, action: str = "flag") -> Screening:
    """Screen a round's uploads (module docstring): reject non-finite ones, flag / clip / reject outlying norms.

    Args:
        uploads: n client states (name -> tensor, same keys and shapes); not modified.
        reference: the state the updates are measured from (same keys and shapes), or ``None`` to measure the
            uploads themselves. Must be finite.
        norm_factor: an update is an outlier when its norm exceeds this (>= 1) x the median update norm;
            ``None`` turns the norm screen off (non-finite uploads are still rejected).
        action: what happens to an outlier: ``"flag"`` (accepted, named), ``"clip"`` (its update scaled to the
            bound, accepted, named) or ``"reject"``.

    Raises:
        ValueError: on bad arguments, or when every upload is rejected (a round cannot aggregate nothing).
    """
    if action not in NORM_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(NORM_ACTIONS)}, got {action!r}.")
    if norm_factor is not None and (isinstance(norm_factor, bool) or not isinstance(norm_factor, numbers.Real)
                                    or not math.isfinite(norm_factor) or norm_factor < 1):
        raise ValueError(f"norm_factor must be a finite number >= 1 (or None), got {norm_factor!r}.")
    if len(uploads) == 0:
        raise ValueError("screen_uploads needs at least one upload, got none.")
    _check_layout(uploads, reference)
    if reference is not None and _non_finite(reference) is not None:
        raise ValueError(f"the reference state is not finite ({_non_finite(reference)}).")

    rejected: dict[int, str] = {}
    flagged: dict[int, str] = {}
    out: list[StateDict] = list(uploads)
    norms = [math.nan] * len(uploads)
    for i, up in enumerate(uploads):
        reason = _non_finite(up)
        if reason is not None:
            rejected[i] = reason
        else:
            norms[i] = _update_norm(up, reference)
    finite = [i for i in range(len(uploads)) if i not in rejected]
    if not finite:
        raise ValueError(f"all {len(uploads)} uploads are non-finite: a round cannot aggregate nothing.")

    median = float(statistics.median_low(norms[i] for i in finite))
    bound = None if norm_factor is None else float(norm_factor) * median
    if bound is not None:
        for i in finite:
            if norms[i] <= bound:
                continue
            reason = f"norm {norms[i]:.6g} > {norm_factor:g} x median norm {median:.6g}"
            if action == "reject":
                rejected[i] = reason
            elif action == "clip":
                out[i] = _scaled(uploads[i], reference, bound / norms[i])
                flagged[i] = f"{reason}; clipped to {bound:.6g}"
            else:
                flagged[i] = reason
    accepted = tuple(i for i in range(len(uploads)) if i not in rejected)  # never empty: the median passes
    return Screening(accepted=accepted,
                     rejected=tuple({"client": i, "reason": rejected[i]} for i in sorted(rejected)),
                     flagged=tuple({"client": i, "reason": flagged[i]} for i in sorted(flagged)),
                     uploads=tuple(out), norms=tuple(norms), median_norm=median, bound=bound)
