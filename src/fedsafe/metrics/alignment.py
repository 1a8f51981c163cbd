"""Gradient alignment between two models: the cosine similarity of their input gradients.

For each sample, g_k = grad_x CE(f(x; w_k), y) at the clean input, flattened; the alignment of the attacker's
model a and a target's model b is cos(g_a, g_b) per sample, averaged. Sign-gradient attacks transfer when the
gradients point the same way, so this explains transfer rates (Demontis et al. 2019, "Why do adversarial
attacks transfer?"). The labels y default to the attacker's own clean predictions, the labels its attack uses.
A sample where either gradient is exactly zero has no direction: its cosine is NaN and it is left out of the
average (nanmean).

>>> from fedsafe.models.cnn import PaperCNN
>>> with torch.random.fork_rng(devices=[]):  # a fixed model: about 1 random tiny model in 200 has all-zero gradients
...     _ = torch.manual_seed(0)
...     a = PaperCNN(num_classes=2, image_size=16, width=0.05)
>>> x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
>>> round(gradient_alignment(a, a, x), 6)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedsafe.attacks.iterative import Labels, resolve_labels
from fedsafe.models.inference import eval_mode, predict

__all__ = ["alignment_matrix", "gradient_alignment", "gradient_cosine", "input_gradients"]


def input_gradients(model: nn.Module, x: torch.Tensor, y: Labels = "pred") -> torch.Tensor:
    """grad_x CE(f(x), y) per sample, flattened: (n, C*H*W). Eval mode (restored); parameters get no .grad."""
    y = resolve_labels(model, x, y)
    x = x.detach().clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad.flatten(1)


def _cosine(ga: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:
    ga, gb = ga.double(), gb.double()
    norms = ga.norm(dim=1) * gb.norm(dim=1)
    cos = (ga * gb).sum(1) / norms
    return torch.where(norms > 0, cos, torch.full_like(cos, float("nan")))


def gradient_cosine(attacker: nn.Module, target: nn.Module, x: torch.Tensor, y: Labels = "pred") -> torch.Tensor:
    """Per-sample cosine (n,) float64 of the two models' input gradients (NaN where one is zero)."""
    labels = resolve_labels(attacker, x, y)
    return _cosine(input_gradients(attacker, x, labels), input_gradients(target, x, labels))


def gradient_alignment(attacker: nn.Module, target: nn.Module, x: torch.Tensor, y: Labels = "pred") -> float:
    """Mean over samples (nanmean) of :func:`gradient_cosine`; NaN if no sample has both gradients non-zero."""
    cos = gradient_cosine(attacker, target, x, y)
    cos = cos[~cos.isnan()]
    return float(cos.mean()) if cos.numel() else float("nan")


def alignment_matrix(
    models: Sequence[nn.Module],
    attack_sets: Sequence[torch.Tensor],
    *,
    attackers: Sequence[int] | None = None,
) -> np.ndarray:
    """(M, C) mean gradient cosine of attacker ``attackers[i]`` (default: every client, in order) with every
    client's model, on the attacker's set ``attack_sets[i]``, with the attacker's predictions as labels."""
    attackers = list(range(len(models))) if attackers is None else list(attackers)
    if len(attack_sets) != len(attackers) or not all(0 <= a < len(models) for a in attackers):
        raise ValueError("need one attack set per attacker, and attackers indexing the models")
    out = np.full((len(attackers), len(models)), np.nan)
    for i, (a, x) in enumerate(zip(attackers, attack_sets, strict=True)):
        labels = predict(models[a], x)
        ga = input_gradients(models[a], x, labels)
        for c, model in enumerate(models):
            cos = _cosine(ga, input_gradients(model, x, labels))
            cos = cos[~cos.isnan()]
            out[i, c] = float(cos.mean()) if cos.numel() else np.nan
    return out
