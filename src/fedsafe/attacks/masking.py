"""Gradient-masking checks of a defense: does a white-box attack's success rise with its budget and its steps?

After Carlini et al. 2019, "On evaluating adversarial robustness" (section 4: iterative attacks must beat
single-step ones, more iterations must not hurt, an unbounded attack must reach 100%) and AutoAttack's checks
(Croce & Hein 2020), and Athalye et al. 2018's three kinds of obfuscated gradients (shattered, stochastic,
vanishing). One attack is run on one model and one batch along two curves:

* ASR vs eps at a fixed number of steps: ASR 0 at eps = 0, non-decreasing within ``tol``, about 100% at a large
  eps (>= ``large_eps``; a budget of 0.5 allows almost any image);
* ASR vs steps at a fixed eps: non-decreasing within ``tol``;

and, before either curve, the input gradient of the loss on the batch itself: zero for more than
``max_zero_gradient`` of the samples (the lower end of the 95% Wilson interval of the zero fraction above it, so
that the verdict does not depend on how many images are checked) is vanishing gradients, whatever eps grid the
caller chose (the large-eps rule alone needs an eps >= ``large_eps`` in the grid to see it).

A curve that breaks a rule makes the report "possibly masking", with one reason a broken rule. The curves' checks
are those of :mod:`fedsafe.attacks.sanity`. ASR is white-box: the label changes of ``model`` itself on the
attack's images (the fraction of all n samples).

>>> from fedsafe.attacks import bim
>>> from fedsafe.models.cnn import PaperCNN
>>> m = PaperCNN(num_classes=2, image_size=16, width=0.05)
>>> r = masking_checks(step_rule(bim), m, torch.rand(4, 1, 16, 16), eps_values=(0.0, 0.5), steps_values=(1, 2))
>>> len(r.asr_by_eps), len(r.asr_by_steps)
(2, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedsafe.attacks.iterative import AttackResult, Labels
from fedsafe.attacks.sanity import (
    asr_sweep,
    check_input_gradients,
    drop_warnings,
    eps_zero_warnings,
    large_eps_warnings,
)

__all__ = ["MaskingReport", "masking_checks", "step_rule"]

AttackAt = Callable[..., AttackResult | torch.Tensor]
"""``attack(model, x, y, *, eps, steps) -> AttackResult or x_adv`` (see :func:`step_rule` to bind a step size)."""


@dataclass(frozen=True)
class MaskingReport:
    """The two curves of :func:`masking_checks` and what they say.

    Attributes:
        eps_values, asr_by_eps: the ASR-vs-eps curve, run at ``steps_for_eps`` steps.
        steps_values, asr_by_steps: the ASR-vs-steps curve, run at ``eps_for_steps``.
        changes_at_eps_zero: predictions change with no perturbation (a randomised model: stochastic gradients;
            evaluate it with EOT).
        rises_with_eps, rises_with_steps: the curve never drops by more than ``tol``.
        reaches_large_eps: about 100% at the largest eps (True when no eps is large enough to judge).
        zero_input_gradient: the loss gradient w.r.t. the input is (near) zero for more than
            ``max_zero_gradient`` of the samples (vanishing gradients).
        reasons: one sentence a broken rule (empty when all hold).
    """

    eps_values: tuple[float, ...]
    asr_by_eps: tuple[float, ...]
    steps_for_eps: int
    steps_values: tuple[int, ...]
    asr_by_steps: tuple[float, ...]
    eps_for_steps: float
    changes_at_eps_zero: bool
    rises_with_eps: bool
    rises_with_steps: bool
    reaches_large_eps: bool
    reasons: tuple[str, ...]
    zero_input_gradient: bool = False

    @property
    def possibly_masking(self) -> bool:
        """True when any rule is broken."""
        return bool(self.reasons)


def step_rule(
    attack: Callable[..., AttackResult], *, rate: float = 2.5, seed: int | None = None, **fixed
) -> Callable[..., AttackResult]:
    """``attack`` (an iterative attack of :mod:`fedsafe.attacks` taking ``alpha``) as an ``attack(model, x, y, *,
    eps, steps)`` with Madry et al.'s step size ``alpha = rate * eps / steps`` (capped at 1; 1 at eps = 0, where
    the projection pins x anyway). ``seed``: a fresh CPU ``torch.Generator`` seeded so is passed as ``generator``
    at each call (PGD's random start, EOT's noise), so that every point of a curve is reproducible. ``fixed``:
    further keywords (``samples``, ``noise_std``, ``models``, ``centre_grad``, ``precision``...).

    >>> from fedsafe.attacks import pgd
    >>> step_rule(pgd, seed=0).__name__
    'pgd_with_step_rule'
    """
    if not rate > 0:
        raise ValueError(f"rate (step size times steps over eps) must be > 0, got {rate}")

    def run(model: nn.Module, x: torch.Tensor, y: Labels = "pred", *, eps: float, steps: int) -> AttackResult:
        alpha = min(1.0, rate * eps / steps) if eps > 0 else 1.0
        extra = {} if seed is None else {"generator": torch.Generator().manual_seed(seed)}
        return attack(model, x, y, eps=eps, alpha=alpha, steps=steps, **extra, **fixed)

    run.__name__ = f"{getattr(attack, '__name__', 'attack')}_with_step_rule"
    return run


def masking_checks(
    attack: AttackAt,
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    eps_values: Sequence[float] = (0.0, 0.01, 0.03, 0.1, 0.5),
    steps_for_eps: int = 10,
    steps_values: Sequence[int] = (1, 5, 20),
    eps_for_steps: float = 0.03,
    tol: float = 0.05,
    large_eps: float = 0.3,
    min_asr_at_large_eps: float = 0.95,
    max_zero_gradient: float = 0.05,
) -> MaskingReport:
    """Run ``attack(model, x, y, eps=, steps=)`` along the eps and steps curves (module docstring) and check them.

    Shapes: x (B, C, H, W) in [0, 1]; y (B,) int or ``"pred"``. Cost: ``steps_for_eps`` * len(eps_values) +
    sum(steps_values) forward+backward passes an image (a point on both curves is run once), plus one forward
    pass per point, plus one forward+backward pass for the input-gradient test (:func:`check_input_gradients`,
    at ``max_zero_gradient``). ``tol`` is in ASR units: with n samples one image is 1/n, so keep ``tol`` above it.

    Example::

        r = masking_checks(step_rule(pgd, seed=0), model, x); r.possibly_masking, r.reasons
    """
    eps_arr, steps_arr = np.asarray(eps_values, dtype=float), np.asarray(steps_values, dtype=float)
    for name, v in (("eps_values", eps_arr), ("steps_values", steps_arr)):
        if v.ndim != 1 or v.size == 0 or np.any(np.diff(v) <= 0):
            raise ValueError(f"{name} must be a non-empty, strictly increasing sequence")
    if np.any(eps_arr < 0) or np.any(eps_arr > 1) or not 0 <= eps_for_steps <= 1:
        raise ValueError("eps values are L-inf budgets in [0, 1] pixel units")
    if any(int(k) != k or k < 1 for k in (*steps_values, steps_for_eps)):
        raise ValueError("steps_values and steps_for_eps must be integers >= 1")
    if not 0 <= tol < 1:
        raise ValueError(f"tol is a drop in ASR in [0, 1), got {tol}")
    if not 0 <= max_zero_gradient < 1:
        raise ValueError(f"max_zero_gradient is a fraction of the samples in [0, 1), got {max_zero_gradient}")
    cache: dict[tuple[float, int], torch.Tensor] = {}

    def x_adv(eps: float, steps: int) -> torch.Tensor:
        key = (float(eps), int(steps))
        if key not in cache:
            out = attack(model, x, y, eps=float(eps), steps=int(steps))
            cache[key] = out.x_adv if isinstance(out, AttackResult) else out
        return cache[key]

    vanishing = check_input_gradients(model, x, y, max_zero_fraction=max_zero_gradient)
    by_eps = asr_sweep(lambda e: x_adv(e, steps_for_eps), model, x, values=list(eps_values))
    by_steps = asr_sweep(lambda k: x_adv(eps_for_steps, k), model, x, values=list(steps_values))
    zero = eps_zero_warnings(eps_arr, by_eps)
    eps_drops = drop_warnings(eps_arr, by_eps, tol=tol, name="eps")
    steps_drops = drop_warnings(steps_arr, by_steps, tol=tol, name="steps")
    large = large_eps_warnings(eps_arr, by_eps, large_eps=large_eps, min_asr=min_asr_at_large_eps)
    reasons = ([f"possibly masking (vanishing gradients): {w}" for w in vanishing]
               + [f"possibly masking (stochastic model): {w}" for w in zero]
               + [f"possibly masking (ASR does not rise with eps at {steps_for_eps} steps): {w}" for w in eps_drops]
               + [f"possibly masking (ASR does not rise with steps at eps={eps_for_steps:g}): {w}"
                  for w in steps_drops]
               + [f"possibly masking (shattered or vanishing gradients): {w}" for w in large])
    return MaskingReport(
        eps_values=tuple(float(e) for e in eps_values), asr_by_eps=tuple(by_eps.tolist()),
        steps_for_eps=int(steps_for_eps), steps_values=tuple(int(k) for k in steps_values),
        asr_by_steps=tuple(by_steps.tolist()), eps_for_steps=float(eps_for_steps),
        changes_at_eps_zero=bool(zero), rises_with_eps=not eps_drops, rises_with_steps=not steps_drops,
        reaches_large_eps=not large, reasons=tuple(reasons), zero_input_gradient=bool(vanishing),
    )
