"""Start points of the L-inf attacks: values (perturbations ``delta``), not modes of an attack.

Every start returned here satisfies ``|delta| <= eps`` and ``x + delta`` in [0, 1] (up to float rounding).
BIM and FGSM start at zero, PGD (Madry et al. 2018) at a uniform point of the eps-ball, and an attack
initialised with cross-round noise (design §7) starts at the attacker's stored delta.

>>> x = torch.rand(2, 1, 8, 8)
>>> d = uniform_start(x, 0.03, torch.Generator().manual_seed(0))
>>> bool(d.abs().max() <= 0.03)
True
"""

from __future__ import annotations

import torch

from fedsafe.attacks.budget import check_eps

__all__ = ["project_start", "uniform_start", "zero_start"]


def zero_start(x: torch.Tensor) -> torch.Tensor:
    """delta = 0 (same shape, dtype and device as ``x``)."""
    return torch.zeros_like(x)


def uniform_start(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """delta ~ U[-eps, eps] elementwise from ``generator``, then cut so that ``x + delta`` is in [0, 1].

    The draw is made on the generator's device and moved to ``x``'s, so a CPU generator can seed a GPU attack.
    """
    check_eps(eps)
    if not isinstance(generator, torch.Generator):
        raise ValueError("uniform_start needs an explicit torch.Generator (no global random state is used)")
    u = torch.empty(x.shape, dtype=x.dtype, device=generator.device).uniform_(-eps, eps, generator=generator)
    return (x + u.to(x.device)).clamp(0, 1) - x


def project_start(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """A given delta clipped to the eps-ball and so that ``x + delta`` is in [0, 1]; ``delta`` is not modified."""
    check_eps(eps)
    if delta.shape != x.shape:
        raise ValueError(f"start delta must have the shape of x {tuple(x.shape)}, got {tuple(delta.shape)}")
    delta = delta.to(device=x.device, dtype=x.dtype)
    return (x + delta.clamp(-eps, eps)).clamp(0, 1) - x
