"""Membership inference: exact ROC summaries and the loss-threshold attack.

A membership score is a number per example, higher meaning "more likely a member of the training set". An attack
is judged by its ROC over the members and non-members of a known split (Carlini et al. 2022, "Membership inference
attacks from first principles", section III: report the TPR at a low FPR, not only the AUC):

- AUC, the Mann-Whitney statistic: P(member score > non-member score) + 0.5 P(equal), computed exactly from
  mid-ranks (no interpolation, no sampling);
- TPR at FPR f: the best TPR of a threshold rule "member iff score > t" whose FPR is at most f. With
  n non-members the FPR moves in steps of 1/n, so f is only resolvable when f * n >= 1 (0.1% needs 1000
  non-members): otherwise the value is NaN and the result's ``notes`` say why, rather than a number that is
  really the TPR at FPR 0.

The loss-threshold attack (Yeom et al. 2018, "Privacy risk in machine learning: analyzing the connection to
overfitting", their Adversary 1) scores an example by the negative cross-entropy of the target model on it,
``score = -CE(f(x; w), y)``: training drives members' losses down.

>>> r = membership_roc([0.9, 0.8, 0.3], [0.1, 0.3])
>>> round(r.auc, 4), r.n_members, r.n_nonmembers
(0.9167, 3, 2)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedsafe.models.inference import eval_mode
from fedsafe.precision import autocast, resolve_precision

__all__ = [
    "MembershipRoc",
    "loss_scores",
    "membership_roc",
    "model_logits",
    "per_example_loss",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MembershipRoc:
    """The ROC summary of one membership attack on one split.

    Attributes:
        auc: Mann-Whitney AUC in [0, 1] (ties count 0.5).
        tpr_at_1pct_fpr: TPR at FPR <= 1%; NaN when fewer than 100 non-members.
        tpr_at_0_1pct_fpr: TPR at FPR <= 0.1%; NaN when fewer than 1000 non-members.
        n_members: number of member scores.
        n_nonmembers: number of non-member scores (the FPR resolution is 1 / n_nonmembers).
        notes: human-readable caveats, e.g. which TPRs were not resolvable.
    """

    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    n_members: int
    n_nonmembers: int
    notes: tuple[str, ...] = ()

    @property
    def resolvable_1pct(self) -> bool:
        """Whether 1% FPR is resolvable with ``n_nonmembers`` (at least 100)."""
        return _false_positives_allowed(0.01, self.n_nonmembers) >= 1

    @property
    def resolvable_0_1pct(self) -> bool:
        """Whether 0.1% FPR is resolvable with ``n_nonmembers`` (at least 1000)."""
        return _false_positives_allowed(0.001, self.n_nonmembers) >= 1


def _as_scores(a, name: str) -> np.ndarray:
    """A 1-D, non-empty, NaN-free float64 copy of ``a`` (numpy array, torch tensor or sequence)."""
    arr = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of scores, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN scores")
    return arr


def _false_positives_allowed(fpr: float, n_nonmembers: int) -> int:
    # The tiny guard keeps 0.001 * 1000 (not exact in binary) from flooring to 0.
    return int(math.floor(fpr * n_nonmembers + 1e-9))


def roc_auc(member_scores, nonmember_scores) -> float:
    """Exact AUC, the Mann-Whitney U statistic over (n_members * n_nonmembers) pairs, ties counting 0.5.

    Args:
        member_scores: (n_members,) scores of members (higher = more likely member).
        nonmember_scores: (n_nonmembers,) scores of non-members.

    >>> roc_auc([1, 2, 3], [2, 2, 0])  # pairs won: 1 + (0.5 + 0.5 + 1) + 3 = 6 of 9
    0.6666666666666666
    """
    pos = _as_scores(member_scores, "member_scores")
    neg = _as_scores(nonmember_scores, "nonmember_scores")
    pooled = np.concatenate([pos, neg])
    order = np.argsort(pooled, kind="stable")
    _, first, counts = np.unique(pooled[order], return_index=True, return_counts=True)
    ranks = np.empty(pooled.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based mid-ranks, exact half-integers
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def roc_curve(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
    """The exact ROC: (fpr, tpr), each (k + 2,), for the rules "member iff score >= t" over the k distinct
    pooled scores t in decreasing order, preceded by (0, 0) (nothing flagged); the last point is (1, 1).

    Ties between a member and a non-member make a diagonal segment, so the trapezoidal area under this curve
    equals :func:`roc_auc`.
    """
    pos = np.sort(_as_scores(member_scores, "member_scores"))
    neg = np.sort(_as_scores(nonmember_scores, "nonmember_scores"))
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")  # count of scores >= t
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    fpr = np.concatenate([[0.0], fp / neg.size])
    tpr = np.concatenate([[0.0], tp / pos.size])
    return fpr, tpr


def tpr_at_fpr(member_scores, nonmember_scores, fpr: float) -> float:
    """The best TPR of a rule "member iff score > t" with FPR <= ``fpr``; NaN if ``fpr`` is not resolvable.

    With n non-members at most k = floor(fpr * n) false positives are allowed; the lowest admissible threshold is
    the (k+1)-th highest non-member score s, and the TPR is the fraction of members scoring strictly above s (a
    member tied with s is not counted: no randomised threshold). When k = 0 (fewer than 1/fpr non-members) the
    FPR cannot be told apart from 0 and the result is NaN.

    >>> tpr_at_fpr([5, 3], list(range(100)), 0.01)  # one false positive allowed: t = 98
    0.0
    >>> tpr_at_fpr([5, 99.5], list(range(100)), 0.01)
    0.5
    """
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    pos = _as_scores(member_scores, "member_scores")
    neg = _as_scores(nonmember_scores, "nonmember_scores")
    k = _false_positives_allowed(fpr, neg.size)
    if k < 1:
        return math.nan
    if k >= neg.size:
        return 1.0
    threshold = np.sort(neg)[::-1][k]
    return float((pos > threshold).mean())


def membership_roc(member_scores, nonmember_scores) -> MembershipRoc:
    """AUC and TPR at 1% and 0.1% FPR of one attack (see :func:`roc_auc`, :func:`tpr_at_fpr`), with the counts
    and notes on what the number of non-members cannot resolve."""
    pos = _as_scores(member_scores, "member_scores")
    neg = _as_scores(nonmember_scores, "nonmember_scores")
    notes = []
    for fpr, label in ((0.01, "1%"), (0.001, "0.1%")):
        if _false_positives_allowed(fpr, neg.size) < 1:
            need = math.ceil(1 / fpr - 1e-9)
            notes.append(f"TPR at {label} FPR not resolvable: {neg.size} non-members (needs >= {need}); NaN")
    result = MembershipRoc(
        auc=roc_auc(pos, neg),
        tpr_at_1pct_fpr=tpr_at_fpr(pos, neg, 0.01),
        tpr_at_0_1pct_fpr=tpr_at_fpr(pos, neg, 0.001),
        n_members=int(pos.size),
        n_nonmembers=int(neg.size),
        notes=tuple(notes),
    )
    for note in notes:
        logger.debug(note)
    return result


def model_logits(
    model: nn.Module, x: torch.Tensor, *, batch_size: int | None = None, precision: str = "fp32"
) -> torch.Tensor:
    """The model's logits (n, classes) as float64 on ``x``'s device, in batches, in eval mode (each submodule's
    mode restored), without gradient; ``precision`` as in :func:`fedsafe.attacks.predict` (bf16 autocast only
    inside the forward pass)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError("x must be a non-empty floating tensor of shape (n, ...)")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prec = resolve_precision(precision, x.device)
    size = batch_size or x.shape[0]
    with eval_mode(model), torch.no_grad(), autocast(prec, x.device.type):
        parts = [model(x[i : i + size]) for i in range(0, x.shape[0], size)]
    logits = torch.cat([p.double() for p in parts])
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"the model must return (n, classes) logits, got shape {tuple(logits.shape)}")
    return logits


def _check_labels(y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    n, classes = logits.shape
    if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y must be an integer tensor of shape ({n},) holding the true labels")
    if n and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must be class indices in [0, {classes})")
    return y.to(device=logits.device, dtype=torch.long)


def per_example_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Cross-entropy of the model on each example: (n,) float64 on ``x``'s device (eval mode, no grad).

    Args:
        model: returns logits (n, classes).
        x: (n, ...) inputs as the model takes them.
        y: (n,) int true labels.
        batch_size: examples per forward pass (default: all at once).
        precision: "fp32", "bf16" or "auto"; the loss itself is computed in float64 from the logits.
    """
    logits = model_logits(model, x, batch_size=batch_size, precision=precision)
    return F.cross_entropy(logits, _check_labels(y, logits), reduction="none")


def loss_scores(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Membership scores of the loss-threshold attack (Yeom et al. 2018): ``-CE(f(x), y)``, (n,) float64;
    higher = more likely a member. Arguments as in :func:`per_example_loss`."""
    return -per_example_loss(model, x, y, batch_size=batch_size, precision=precision)
