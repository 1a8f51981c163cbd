"""Sanity checks of an attack evaluation, after Carlini et al. 2019, "On evaluating adversarial robustness"
(and AutoAttack's checks): each returns a list of warnings (empty = nothing suspicious).

* The model must output logits: probabilities (rows in [0, 1] summing to 1) flatten the cross-entropy and
  its gradient, which masks gradients and makes gradient attacks look weaker than they are.
* The input gradient of the loss must not vanish for many samples (quantisation, saturation, a
  non-differentiable preprocessing step: gradient masking).
* ASR must be 0 at eps = 0, must not decrease when eps grows, and an unbounded-ish white-box attack
  (large eps) must reach close to 100%.
* ASR must not decrease when the attack takes more steps (:func:`check_steps_curve`).

:mod:`fedsafe.attacks.masking` runs the eps and steps curves of one attack and collects these warnings into a
report with flags.

>>> check_outputs(torch.softmax(torch.randn(4, 3), 1))[0].startswith("model outputs look like probabilities")
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedsafe.attacks.iterative import Labels, resolve_labels
from fedsafe.models.inference import eval_mode, predict
from fedsafe.verdicts.intervals import wilson_interval

T = TypeVar("T")

__all__ = [
    "RULES_VERSION",
    "asr_sweep",
    "attack_success_rate",
    "check_eps_curve",
    "check_input_gradients",
    "check_outputs",
    "check_steps_curve",
    "drop_warnings",
    "eps_sweep",
    "eps_zero_warnings",
    "large_eps_warnings",
    "run_sanity_checks",
]

RULES_VERSION = 3
"""Bump when a rule changes here (the masking checks of :mod:`fedsafe.attacks.masking` are these rules too), so that
cached masking reports and sanity checks made under the old rule are recomputed (2: vanishing gradients judged on the
lower end of the Wilson interval of the zero-gradient fraction; 3: and, when the batch passes, on each predicted
class at the Bonferroni level; the audit's report then also carries a gradient-free Square cross-check of each
flagged client)."""


def check_outputs(outputs: torch.Tensor, *, atol: float = 1e-4) -> list[str]:
    """Warn when ``outputs`` (B, K) look like probabilities rather than logits."""
    if outputs.dim() != 2:
        raise ValueError(f"outputs must have shape (B, K), got {tuple(outputs.shape)}")
    o = outputs.detach().double()
    in_unit = bool(((o >= -atol) & (o <= 1 + atol)).all())
    sums_to_one = bool(torch.allclose(o.sum(1), torch.ones_like(o[:, 0]), atol=atol * o.shape[1]))
    if in_unit and sums_to_one:
        return ["model outputs look like probabilities (rows in [0, 1] summing to 1), not logits: the "
                "cross-entropy of probabilities has flattened gradients (gradient masking risk)"]
    return []


def check_input_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    atol: float = 1e-10,
    max_zero_fraction: float = 0.05,
    level: float = 0.95,
) -> list[str]:
    """Warn when the input gradient of CE(f(x), y) is (near) zero (max |g| <= atol) for more than
    ``max_zero_fraction`` of the samples, judged on the batch as a sample: the lower end of the Wilson interval
    (at ``level``) of the zero fraction must exceed ``max_zero_fraction``, so that the verdict does not hang on the
    number of images checked (6 of 100 is not evidence of more than 5%; 20 of 100 is). x (B, C, H, W) in [0, 1].

    When the batch as a whole passes, the same test runs on each class of the labels (the predictions by default),
    at the Bonferroni level over the classes (1 - (1 - level) / K): masking confined to one class, often the
    minority one, is not diluted by the others (6 zero gradients among 100 images pass; the same 6 among the 20
    predicted as one class do not)."""
    labels = resolve_labels(model, x, y)
    x = x.detach().clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), labels, reduction="sum"), x)
    zero = grad.flatten(1).abs().amax(1) <= atol
    k, n = int(zero.sum()), len(zero)
    low, high = wilson_interval(k, n, level=level)
    if low > max_zero_fraction:
        return [f"the loss gradient w.r.t. the input is (near) zero for {k} of {n} samples ({k / n:.0%}, "
                f"{level:.0%} CI {low:.0%}-{high:.0%}, above {max_zero_fraction:.0%}): gradient masking; gradient "
                "attacks will underestimate the risk"]
    classes = labels.unique().tolist()
    if len(classes) < 2:
        return []
    class_level = 1 - (1 - level) / len(classes)
    which = "predicted class" if isinstance(y, str) else "class"
    out = []
    for c in classes:
        in_class = labels == c
        kc, nc = int(zero[in_class].sum()), int(in_class.sum())
        low, high = wilson_interval(kc, nc, level=class_level)
        if low > max_zero_fraction:
            out.append(f"the loss gradient w.r.t. the input is (near) zero for {kc} of the {nc} samples of {which} "
                       f"{c} ({kc / nc:.0%}, {class_level:.1%} CI {low:.0%}-{high:.0%}, Bonferroni over "
                       f"{len(classes)} classes, above {max_zero_fraction:.0%}; {k} of {n} over all classes): "
                       "gradient masking confined to that class; gradient attacks will underestimate its risk")
    return out


def attack_success_rate(clean_pred: torch.Tensor, adv_pred: torch.Tensor) -> float:
    """Fraction of samples whose predicted label changes (white-box, on the attacked model itself)."""
    if clean_pred.shape != adv_pred.shape or clean_pred.numel() == 0:
        raise ValueError("clean and adversarial predictions must be non-empty and of one shape")
    return float((clean_pred != adv_pred).double().mean())


def asr_sweep(
    attack_at: Callable[[T], torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    *,
    values: Sequence[T],
) -> np.ndarray:
    """White-box ASR of ``attack_at(v) -> x_adv`` on ``model`` for each ``v`` of ``values`` (an eps, a number of
    steps, ...): (len(values),) float64.

    Example::

        asr_sweep(lambda k: bim(m, x, eps=0.03, alpha=0.03 / k, steps=k).x_adv, m, x, values=[1, 5, 20])
    """
    clean = predict(model, x)
    return np.array([attack_success_rate(clean, predict(model, attack_at(v))) for v in values])


def eps_sweep(
    attack_at_eps: Callable[[float], torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps_values: Sequence[float],
) -> np.ndarray:
    """White-box ASR of ``attack_at_eps(eps) -> x_adv`` on ``model`` for each eps (:func:`asr_sweep`).

    Example::

        eps_sweep(lambda e: fgsm(m, x, eps=e).x_adv, m, x, eps_values=[0, 0.03, 0.3])
    """
    return asr_sweep(attack_at_eps, model, x, values=eps_values)


def check_eps_curve(
    eps_values: Sequence[float],
    asr: Sequence[float],
    *,
    tol: float = 0.02,
    large_eps: float = 0.3,
    min_asr_at_large_eps: float = 0.95,
) -> list[str]:
    """Warnings about an ASR-vs-eps curve (eps strictly increasing): ASR > 0 at eps = 0; ASR dropping by more
    than ``tol`` as eps grows; ASR below ``min_asr_at_large_eps`` at the largest eps if it is >= ``large_eps``."""
    eps, rate = _curve(eps_values, asr, "eps_values")
    return (eps_zero_warnings(eps, rate) + drop_warnings(eps, rate, tol=tol, name="eps")
            + large_eps_warnings(eps, rate, large_eps=large_eps, min_asr=min_asr_at_large_eps))


def check_steps_curve(steps_values: Sequence[int], asr: Sequence[float], *, tol: float = 0.02) -> list[str]:
    """Warnings about an ASR-vs-steps curve at one eps (steps strictly increasing): ASR dropping by more than
    ``tol`` when the attack takes more steps (Carlini et al. 2019, section 4.5: more iterations must not weaken
    an iterative attack; if they do, its gradients are not a reliable guide)."""
    steps, rate = _curve(steps_values, asr, "steps_values")
    return drop_warnings(steps, rate, tol=tol, name="steps")


def eps_zero_warnings(eps: np.ndarray, rate: np.ndarray) -> list[str]:
    """The eps-curve check "ASR is 0 at eps = 0" alone (a curve as :func:`check_eps_curve` validates it)."""
    if eps[0] == 0 and rate[0] > 0:
        return [f"ASR is {rate[0]:.1%} at eps = 0: the attack changes predictions without perturbing "
                "(randomness in the model or a bug)"]
    return []


def large_eps_warnings(eps: np.ndarray, rate: np.ndarray, *, large_eps: float, min_asr: float) -> list[str]:
    """The eps-curve check "about 100% at a large eps" alone (a curve as :func:`check_eps_curve` validates it)."""
    if eps[-1] >= large_eps and rate[-1] < min_asr:
        return [f"white-box ASR is only {rate[-1]:.1%} at eps={eps[-1]:g}; a working attack should reach "
                f"about 100% at large eps"]
    return []


def drop_warnings(values: np.ndarray, rate: np.ndarray, *, tol: float, name: str) -> list[str]:
    """The check "ASR does not drop by more than ``tol`` as ``name`` grows" alone, on a validated curve."""
    return [f"ASR decreases from {rate[i]:.1%} at {name}={values[i]:g} to {rate[i + 1]:.1%} at "
            f"{name}={values[i + 1]:g}: the attack is not converging (gradient masking or too few steps)"
            for i in np.flatnonzero(np.diff(rate) < -tol)]


def _curve(values: Sequence[float], asr: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    v, rate = np.asarray(values, dtype=float), np.asarray(asr, dtype=float)
    if v.shape != rate.shape or v.ndim != 1 or v.size == 0 or np.any(np.diff(v) <= 0):
        raise ValueError(f"{name} must be strictly increasing and match asr in length")
    return v, rate


def run_sanity_checks(
    model: nn.Module,
    x: torch.Tensor,
    *,
    attack_at_eps: Callable[[float], torch.Tensor] | None = None,
    eps_values: Sequence[float] = (0.0, 0.01, 0.03, 0.1, 0.5),
) -> list[str]:
    """All the checks above on ``model`` and the attack set ``x``; the eps curve only if an attack is given."""
    with eval_mode(model), torch.no_grad():
        warnings = check_outputs(model(x))
    warnings += check_input_gradients(model, x)
    if attack_at_eps is not None:
        warnings += check_eps_curve(eps_values, eps_sweep(attack_at_eps, model, x, eps_values=eps_values))
    return warnings
