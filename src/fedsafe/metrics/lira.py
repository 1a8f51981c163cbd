"""Offline Likelihood Ratio Attack (LiRA; Carlini et al. 2022, "Membership inference attacks from first
principles", section IV-C and Algorithm 1, the offline variant).

Per example (x, y) the attack looks at the logit-scaled confidence of a model in the true label,

    phi = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j      (z the logits; eq. 4 of the paper),

which is close to Gaussian over the randomness of training. Shadow models trained WITHOUT the example
("OUT" models) give a Gaussian N(mu_out, sigma_out^2) per example; the target's phi is then tested one-sided,
Lambda = 1 - Pr[Z > phi_target], Z ~ N(mu_out, sigma_out^2) (the paper's offline test). We return the
monotone equivalent ``-log Pr[Z > phi_target] = -logsf((phi_target - mu_out) / sigma_out)``, which keeps its
resolution far in the tail where Lambda rounds to 1. Higher = more likely a member.

With few shadow models the per-example variance is noisy; the paper then recommends one global variance for all
examples (``global_std=True``). Ours is the pooled within-example variance (each OUT value minus its own
example's mean); the authors' released code takes the std of all OUT values around one grand mean, which also
counts the spread of the means between examples. The per-example std is the unbiased one (ddof = 1).
The authors' code centres on the median of the OUT values; we use the mean, as the paper writes.

Training the shadow models is the caller's job: this module takes their phi values.

>>> shadow = np.array([[0.0, 1.0], [2.0, 3.0]])        # 2 OUT models x 2 examples
>>> lira_offline_scores(np.array([1.0, 2.0]), shadow, None).round(4)  # both at their OUT mean: -log(1/2)
array([0.6931, 0.6931])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedsafe.metrics.membership import _check_labels, model_logits

__all__ = ["lira_offline_scores", "logit_confidence", "model_logit_confidence", "normal_logsf", "out_gaussian"]

_STD_FLOOR = 1e-30  # as the authors' code: a zero std (identical OUT values) must not divide by zero


def logit_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """phi = log(p_y / (1 - p_y)) from logits, computed stably as ``z_y - logsumexp_{j != y} z_j``.

    Args:
        logits: (n, classes) logits, classes >= 2.
        y: (n,) int true labels.

    Returns:
        (n,) phi in the dtype of ``logits`` (use float64 logits for the far tail).

    >>> logit_confidence(torch.tensor([[100.0, 0.0]]), torch.tensor([0]))  # p_y = 1 - e^-100: no overflow
    tensor([100.])
    """
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, classes >= 2), got {tuple(logits.shape)}")
    y = _check_labels(y, logits)
    own = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return own - torch.logsumexp(others, dim=1)


def model_logit_confidence(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """phi of ``model`` on each (x, y): (n,) float64 on ``x``'s device, in batches, eval mode (restored), no
    grad; ``precision`` as in :func:`fedsafe.attacks.predict` (phi itself is computed in float64)."""
    return logit_confidence(model_logits(model, x, batch_size=batch_size, precision=precision), y)


def normal_logsf(z) -> np.ndarray:
    """log Pr[Z > z] for a standard normal Z, float64, accurate far into both tails (``torch.special.log_ndtr``;
    no scipy needed)."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float64))
    return torch.special.log_ndtr(-z).numpy()


def _as_matrix(a, name: str) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (S, n) array, got shape {arr.shape}")
    return arr


def out_gaussian(shadow_phi, shadow_in_mask=None, *, global_std: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fit the OUT Gaussian of each example from the shadow models that did not train on it.

    Args:
        shadow_phi: (S, n) phi of S shadow models on the n examples; entries of IN models are ignored (they may
            be NaN).
        shadow_in_mask: (S, n) bool, True where shadow s trained on example j; None means every shadow is OUT.
        global_std: one pooled within-example std for all examples (the paper's advice with few shadows), else a
            per-example unbiased std.

    Returns:
        (mean, std), each (n,) float64; std is floored at 1e-30.

    Raises:
        ValueError: an example has fewer than 2 OUT models (1 with ``global_std``), or an OUT value is not finite.
    """
    phi = _as_matrix(shadow_phi, "shadow_phi").astype(np.float64, copy=False)
    out = np.ones(phi.shape, dtype=bool)
    if shadow_in_mask is not None:
        mask = _as_matrix(shadow_in_mask, "shadow_in_mask")
        if mask.shape != phi.shape or mask.dtype != np.bool_:
            raise ValueError(f"shadow_in_mask must be a bool array of the shape of shadow_phi {phi.shape}")
        out = ~mask
    used = np.where(out, phi, 0.0)
    if not np.isfinite(used).all():
        raise ValueError("shadow_phi holds a non-finite value from an OUT model")
    k = out.sum(axis=0)
    need = 1 if global_std else 2
    if (k < need).any():
        raise ValueError(
            f"every example needs >= {need} OUT shadow models{' (global_std)' if global_std else ''}; "
            f"{int((k < need).sum())} of {k.size} have fewer"
        )
    mean = used.sum(axis=0) / k
    sq = np.where(out, (used - mean) ** 2, 0.0).sum(axis=0)
    if global_std:
        dof = int((k - 1).sum())
        if dof < 1:
            raise ValueError("global_std needs at least one example with >= 2 OUT shadow models")
        std = np.full(k.size, np.sqrt(sq.sum() / dof))
    else:
        std = np.sqrt(sq / (k - 1))
    return mean, np.maximum(std, _STD_FLOOR)


def lira_offline_scores(target_phi, shadow_phi, shadow_in_mask=None, *, global_std: bool = False) -> np.ndarray:
    """Offline LiRA membership scores: ``-logsf((target_phi - mu_out) / sigma_out)`` per example.

    Args:
        target_phi: (n,) phi of the target model on the n examples (see :func:`model_logit_confidence`).
        shadow_phi, shadow_in_mask, global_std: as in :func:`out_gaussian`.

    Returns:
        (n,) float64 scores >= 0, higher = more likely a member (+inf only if a std is at its floor).
    """
    phi = target_phi.detach().cpu().numpy() if isinstance(target_phi, torch.Tensor) else np.asarray(target_phi)
    phi = phi.astype(np.float64, copy=False)
    mean, std = out_gaussian(shadow_phi, shadow_in_mask, global_std=global_std)
    if phi.shape != mean.shape:
        raise ValueError(f"target_phi must have shape {mean.shape} (one value per shadow_phi column)")
    if not np.isfinite(phi).all():
        raise ValueError("target_phi holds a non-finite value")
    return -normal_logsf((phi - mean) / std)
