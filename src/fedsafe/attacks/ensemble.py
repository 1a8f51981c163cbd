"""Surrogate-ensemble transfer attack: the insider averages the input gradients of several models it holds.

An attacker in FL receives a copy of the global model every round. Instead of its final model alone, it can
attack the ensemble of the copies received over its last R rounds (the ensemble approach to transferability of
Liu et al. 2017, "Delving into transferable adversarial examples and black-box attacks", with the loss averaged
over the models): the step loop of :mod:`fedsafe.attacks.iterative` follows the sign of

    g(x) = (1/R) sum_r grad_x CE(f(x; w_r), y),

each model with its own cross-entropy at the current x_adv, and the labels y resolved once as the loop resolves
them (default: the clean predictions of the attacker's final ``model``). Cost: R * steps forward+backward passes
an image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedsafe.attacks.budget import check_budget
from fedsafe.attacks.iterative import AttackResult, Labels, input_gradient, iterative_attack
from fedsafe.attacks.starts import uniform_start

__all__ = ["ensemble_gradient", "ensemble_pgd"]


def ensemble_gradient(
    models: Sequence[nn.Module], x: torch.Tensor, labels: torch.Tensor, *, precision: str = "fp32"
) -> torch.Tensor:
    """The mean over ``models`` of the input gradient of each one's summed cross-entropy on ``labels``.

    Shapes: x (B, C, H, W) (not modified), labels (B,) int64 -> (B, C, H, W). The models' modes are the caller's.

    >>> ms = [nn.Sequential(nn.Flatten(), nn.Linear(4, 2)) for _ in range(3)]
    >>> ensemble_gradient(ms, torch.rand(5, 1, 2, 2), torch.zeros(5, dtype=torch.long)).shape
    torch.Size([5, 1, 2, 2])
    """
    models = _check_models(models)
    total = None
    for m in models:
        g = input_gradient(m, x, labels, precision=precision)
        total = g if total is None else total.add_(g)  # autograd's fresh output: safe to accumulate into
    return total if len(models) == 1 else total.div_(len(models))


def ensemble_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    models: Sequence[nn.Module],
    eps: float,
    alpha: float,
    steps: int,
    start: torch.Tensor | None = None,
    centre_grad: bool = False,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
) -> AttackResult:
    """PGD on the mean gradient of ``models`` (module docstring); ``model`` is the attacker's final model, whose
    clean predictions are the default labels and whose memory format the perturbed input takes (include it in
    ``models`` to attack it too). Start: ``start`` (a delta: zero, CRN) or uniform from ``generator``, as
    :func:`fedsafe.attacks.pgd`; ``models=[model]`` is exactly ``pgd(model, ...)``.

    Shapes: x (B, C, H, W) in [0, 1]; y (B,) int or ``"pred"``. ``forward_backward`` = len(models) * steps.

    >>> from fedsafe.models.cnn import PaperCNN
    >>> ms = [PaperCNN(num_classes=2, image_size=16, width=0.05) for _ in range(2)]
    >>> r = ensemble_pgd(ms[-1], torch.rand(4, 1, 16, 16), models=ms, eps=0.03, alpha=0.01, steps=3,
    ...                  start=torch.zeros(4, 1, 16, 16))
    >>> r.forward_backward
    6
    """
    check_budget(eps=eps, alpha=alpha, steps=steps)
    models = _check_models(models)
    if start is None:
        if generator is None:
            raise ValueError("ensemble_pgd draws its random start from an explicit generator: pass generator= or "
                             "start=")
        start = uniform_start(x, eps, generator)

    def gradient(x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return ensemble_gradient(models, x_adv, labels, precision=precision)

    return iterative_attack(model, x, y, eps=eps, alpha=alpha, steps=steps, start=start, centre_grad=centre_grad,
                            precision=precision, gradient=gradient, gradients_per_step=len(models),
                            models=models)


def _check_models(models: Sequence[nn.Module]) -> tuple[nn.Module, ...]:
    if isinstance(models, nn.ModuleList):
        models = tuple(models)
    if isinstance(models, nn.Module) or not isinstance(models, Sequence) or len(models) == 0:
        raise ValueError("models must be a non-empty sequence of nn.Module (the surrogates whose gradients are "
                         "averaged)")
    if not all(isinstance(m, nn.Module) for m in models):
        raise ValueError("every entry of models must be an nn.Module")
    return tuple(models)
