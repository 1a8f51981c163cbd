"""L-inf, untargeted gradient-sign attacks (design §6): one step loop, FGSM / BIM / PGD are its settings.

Every attack ascends the cross-entropy of the model's logits w.r.t. its input,

    x'_0 = Proj(x + start),   x'_{k+1} = Proj(x'_k + alpha * sign(g_k)),   g_k = grad_x CE(f(x'_k), y),

where Proj clips to the L-inf ball ``|x' - x| <= eps`` and to pixels in [0, 1] (one clamp to
``[max(x - eps, 0), min(x + eps, 1)]``, as in Madry et al.'s reference code). Budgets are in [0, 1] pixel units:
the models normalise inside themselves. With ``centre_grad`` the gradient's mean over the pixels of each channel
of each image is subtracted before the sign (the CRN paper's "L2 regularisation", its eq. 4).

Labels: ``y="pred"`` (default) attacks the model's own clean predictions, which avoids label leaking; a tensor
of true labels is the alternative. The loss is summed over the batch, so an image's gradient does not depend on
the batch it is in.

No side effects: ``x`` is never modified, the model's train/eval modes are restored afterwards, no gradient is
accumulated into its parameters (``torch.autograd.grad`` w.r.t. the input only), and no global RNG is used.

The loop takes its ascent direction from a gradient function ``g(x_adv, labels)``: the model's own input
gradient by default (:func:`input_gradient`); the adaptive attacks pass the mean gradient over noisy copies of
the model (:mod:`fedsafe.attacks.eot`) or over several models (:mod:`fedsafe.attacks.ensemble`).

CPU cost (measured by ``benchmarks/bench_attacks.py``): the perturbed image takes the memory format of
the model's first convolution (:func:`input_memory_format`: channels-last strides for a channels-last model even
for one channel, where ``.contiguous(memory_format=...)`` is a no-op and out-of-place ops return NCHW strides); it,
the clipping bounds and the sign buffer are allocated once and updated in place. On the 2-core AMD EPYC a
channels-last model ran alike on either strides (the 1.7x slowdown first measured is an NCHW model's, whose convolutions
follow the input's strides), and the in-place loop measured no different from the out-of-place one (under glibc's
default allocator both make 50,000-78,000 page faults a step, varying from run to run). The cost is the
allocator's (25-30% sys time): a process setting for the entry point, documented in the benchmark.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fedsafe.attacks.budget import check_budget
from fedsafe.attacks.starts import uniform_start
from fedsafe.models.inference import eval_mode, predict
from fedsafe.precision import autocast, resolve_precision

__all__ = [
    "AttackResult",
    "GradientFn",
    "Labels",
    "attack_in_batches",
    "bim",
    "centre_gradient",
    "fgsm",
    "input_gradient",
    "input_memory_format",
    "iterative_attack",
    "pgd",
    "resolve_labels",
]

Labels = torch.Tensor | Literal["pred"]
GradientFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``g(x_adv, labels) -> direction``: x_adv (B, C, H, W) (not modified), labels (B,) int64 -> (B, C, H, W), the
vector whose sign the step loop follows (a new tensor, or one the function no longer uses)."""


@dataclass(frozen=True)
class AttackResult:
    """What an attack returns.

    Attributes:
        x_adv: (B, C, H, W) adversarial images in [0, 1], dtype/device of ``x``.
        delta: ``x_adv - x``.
        labels: (B,) the labels whose cross-entropy was ascended.
        forward_backward: forward+backward passes per image (= steps x gradient evaluations a step: 1 for
            FGSM / BIM / PGD, K for EOT over K noisy copies, R for an ensemble of R models).
        forwards: extra forward-only passes per image (1 when the labels were predicted, else 0).
        seconds: wall-clock seconds of the whole call.
    """

    x_adv: torch.Tensor
    delta: torch.Tensor
    labels: torch.Tensor
    forward_backward: int
    forwards: int
    seconds: float


def resolve_labels(model: nn.Module, x: torch.Tensor, y: Labels, *, precision: str = "fp32") -> torch.Tensor:
    """``y`` as an int64 (B,) tensor on ``x``'s device; ``"pred"`` means the model's clean predictions."""
    if isinstance(y, str):
        if y != "pred":
            raise ValueError(f'labels must be "pred" or a tensor of class indices, got {y!r}')
        return predict(model, x, precision=precision)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape[:1] or y.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of shape ({x.shape[0]},)")
    return y.to(device=x.device, dtype=torch.long)


def centre_gradient(grad: torch.Tensor) -> torch.Tensor:
    """Subtract from ``grad`` (B, C, *spatial) its mean over the pixels of each channel of each image."""
    if grad.dim() < 3:
        raise ValueError(f"gradient centring needs (B, C, *spatial) tensors, got shape {tuple(grad.shape)}")
    return grad - grad.mean(dim=tuple(range(2, grad.dim())), keepdim=True)


def input_gradient(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    precision: str = "fp32",
    parameters: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``grad_x sum_b CE(f(x_b; w), labels_b)`` (B, C, H, W), w.r.t. the input only (no parameter gets a .grad).

    ``parameters``: name -> tensor replacing the model's own parameters for this pass
    (``torch.func.functional_call``: the module is not modified; buffers stay the module's). The model's mode is
    the caller's (the attacks run it inside :func:`eval_mode`); the forward pass runs under ``precision``'s autocast.

    >>> m = nn.Linear(3, 2)
    >>> input_gradient(m, torch.rand(4, 3), torch.zeros(4, dtype=torch.long)).shape
    torch.Size([4, 3])
    """
    x = x.detach().requires_grad_(True)  # an alias: the caller's tensor is neither copied nor modified
    with torch.enable_grad(), autocast(precision, x.device.type):
        logits = model(x) if parameters is None else torch.func.functional_call(model, dict(parameters), (x,))
        loss = F.cross_entropy(logits, labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)  # w.r.t. the input only: parameters get no .grad
    return grad


def input_memory_format(model: nn.Module) -> torch.memory_format:
    """The memory format the model's first 2-D convolution wants its input in: ``torch.channels_last`` when its
    weight has channels-last strides, ``torch.contiguous_format`` when it has NCHW strides, judged on the first
    convolution whose weight tells the two apart (a (O, 1, 1, 1) weight fits both); ``torch.preserve_format``
    for a model without 2-D convolutions.

    >>> from fedsafe.precision import to_channels_last
    >>> input_memory_format(to_channels_last(nn.Sequential(nn.Conv2d(1, 4, 3)))) == torch.channels_last
    True
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            w = module.weight
            o, c, h, k = w.shape
            is_cl, is_nchw = w.stride() == (c * h * k, 1, k * c, c), w.stride() == (c * h * k, h * k, k, 1)
            if is_cl != is_nchw:
                return torch.channels_last if is_cl else torch.contiguous_format
    return torch.preserve_format


def iterative_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    eps: float,
    alpha: float,
    steps: int,
    start: torch.Tensor | None = None,
    centre_grad: bool = False,
    precision: str = "fp32",
    gradient: GradientFn | None = None,
    gradients_per_step: int = 1,
    models: Sequence[nn.Module] = (),
) -> AttackResult:
    """The step loop (module docstring) from ``start`` (a delta, default zero); see :func:`bim`.

    ``gradient``: the direction function (default: ``model``'s own input gradient under ``precision``);
    ``gradients_per_step``: the forward+backward passes an image it costs, for the result's cost count;
    ``models``: further modules ``gradient`` evaluates, run in eval mode with ``model`` (modes restored). The labels
    are resolved on ``model`` and ``x_adv`` takes its :func:`input_memory_format`, whatever the gradient function.
    """
    check_budget(eps=eps, alpha=alpha, steps=steps)
    if isinstance(gradients_per_step, bool) or not isinstance(gradients_per_step, int) or gradients_per_step < 1:
        raise ValueError(f"gradients_per_step must be an integer >= 1, got {gradients_per_step!r}")
    return _step_loop(model, x, y, eps=eps, alpha=alpha, steps=steps, start=start, centre_grad=centre_grad,
                      precision=precision, gradient=gradient, gradients_per_step=gradients_per_step,
                      models=tuple(models))


def _step_loop(model, x, y, *, eps, alpha, steps, start, centre_grad, precision, gradient=None,
               gradients_per_step=1, models=()) -> AttackResult:
    """The loop; ``models``: further modules the gradient function evaluates, put in eval mode with ``model``."""
    _check_images(x)
    prec = resolve_precision(precision, x.device)
    t0 = time.perf_counter()
    x = x.detach()
    fmt = input_memory_format(model) if x.dim() == 4 else torch.preserve_format
    with contextlib.ExitStack() as stack:
        for m in dict.fromkeys((model, *models)):  # each module once, in order
            stack.enter_context(eval_mode(m))
        stack.enter_context(torch.enable_grad())
        labels = resolve_labels(model, x, y, precision=prec)
        if gradient is None:
            def gradient(x_adv, lab):
                return input_gradient(model, x_adv, lab, precision=prec)
        # buffers in the model's input format, allocated once and updated in place; the values are those of
        # lo = (x - eps).clamp(min=0), hi = (x + eps).clamp(max=1), x_adv = clamp(x + start, lo, hi)
        lo = torch.empty_like(x, memory_format=fmt).copy_(x).sub_(eps).clamp_(min=0)
        hi = torch.empty_like(x, memory_format=fmt).copy_(x).add_(eps).clamp_(max=1)
        x_adv = torch.empty_like(x, memory_format=fmt).copy_(x)
        if start is not None:
            x_adv.add_(_check_start(start, x)).clamp_(lo, hi)
        direction = torch.empty_like(x_adv)
        dims = tuple(range(2, x.dim()))
        for _ in range(steps):
            grad = gradient(x_adv, labels)
            if centre_grad:
                if grad.dim() < 3:
                    raise ValueError(f"gradient centring needs (B, C, *spatial) tensors, got shape {tuple(grad.shape)}")
                torch.sub(grad, grad.mean(dim=dims, keepdim=True), out=direction).sign_()
            else:
                torch.sign(grad, out=direction)
            del grad  # free it before the next forward pass allocates
            x_adv.add_(direction, alpha=alpha).clamp_(lo, hi)  # alpha * sign is exact: same values as x + alpha * s
    return AttackResult(x_adv=x_adv, delta=x_adv - x, labels=labels, forward_backward=steps * gradients_per_step,
                        forwards=int(isinstance(y, str)), seconds=time.perf_counter() - t0)


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    eps: float,
    start: torch.Tensor | None = None,
    centre_grad: bool = False,
    precision: str = "fp32",
) -> AttackResult:
    """FGSM (Goodfellow et al. 2015, "Explaining and harnessing adversarial examples"), L-inf:
    ``x' = clip01(x + eps * sign(grad_x CE(f(x), y)))`` -- one step of size eps from zero, or from ``start``
    ("FGSM + CRN" when ``start`` is the cross-round noise).

    Shapes: x (B, C, H, W) in [0, 1]; y (B,) int or ``"pred"``.

    >>> from fedsafe.models.cnn import PaperCNN
    >>> m = PaperCNN(num_classes=2, image_size=16, width=0.05)
    >>> r = fgsm(m, torch.rand(4, 1, 16, 16), eps=0.03)
    >>> bool(r.delta.abs().max() <= 0.03 + 1e-6), r.forward_backward
    (True, 1)
    """
    check_budget(eps=eps, alpha=None, steps=1)
    return _step_loop(model, x, y, eps=eps, alpha=eps, steps=1, start=start,
                      centre_grad=centre_grad, precision=precision)


def bim(
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    eps: float,
    alpha: float,
    steps: int,
    start: torch.Tensor | None = None,
    centre_grad: bool = False,
    precision: str = "fp32",
) -> AttackResult:
    """BIM / I-FGSM (Kurakin et al. 2017, "Adversarial examples in the physical world"), L-inf:
    ``x'_{k+1} = Proj_eps(x'_k + alpha * sign(grad_x CE))``, ``steps`` steps from zero (or from ``start``).

    Shapes: x (B, C, H, W) in [0, 1]; y (B,) int or ``"pred"``.

    >>> from fedsafe.models.cnn import PaperCNN
    >>> m = PaperCNN(num_classes=2, image_size=16, width=0.05)
    >>> bim(m, torch.rand(4, 1, 16, 16), eps=0.03, alpha=0.01, steps=5).x_adv.shape
    torch.Size([4, 1, 16, 16])
    """
    return iterative_attack(model, x, y, eps=eps, alpha=alpha, steps=steps, start=start,
                            centre_grad=centre_grad, precision=precision)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    eps: float,
    alpha: float,
    steps: int,
    start: torch.Tensor | None = None,
    centre_grad: bool = False,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
) -> AttackResult:
    """PGD (Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks"), L-inf:
    BIM from a uniform random start in the eps-ball drawn from ``generator``, or from a given ``start``
    ("PGD-K + CRN"); ``generator`` is then unused.

    Shapes: x (B, C, H, W) in [0, 1]; y (B,) int or ``"pred"``.

    >>> from fedsafe.models.cnn import PaperCNN
    >>> m = PaperCNN(num_classes=2, image_size=16, width=0.05)
    >>> g = torch.Generator().manual_seed(0)
    >>> pgd(m, torch.rand(4, 1, 16, 16), eps=0.03, alpha=0.01, steps=5, generator=g).forward_backward
    5
    """
    check_budget(eps=eps, alpha=alpha, steps=steps)
    if start is None:
        if generator is None:
            raise ValueError("pgd draws its random start from an explicit generator: pass generator= or start=")
        start = uniform_start(x, eps, generator)
    return _step_loop(model, x, y, eps=eps, alpha=alpha, steps=steps, start=start,
                      centre_grad=centre_grad, precision=precision)


def attack_in_batches(
    attack: Callable[..., AttackResult],
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    batch_size: int,
    start: torch.Tensor | None = None,
    **kwargs,
) -> AttackResult:
    """Run ``attack(model, x_b, y_b, start=start_b, **kwargs)`` over consecutive batches and join the results.

    ``y`` and ``start`` are sliced with ``x``; a ``generator`` in ``kwargs`` is consumed batch after batch, so the
    result is reproducible for a fixed batch size. ``seconds`` is the sum over batches; the passes an image are the
    costliest batch's.

    >>> from fedsafe.models.cnn import PaperCNN
    >>> m = PaperCNN(num_classes=2, image_size=16, width=0.05)
    >>> attack_in_batches(fgsm, m, torch.rand(5, 1, 16, 16), batch_size=2, eps=0.03).x_adv.shape
    torch.Size([5, 1, 16, 16])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if x.shape[0] == 0:
        raise ValueError("cannot attack an empty batch")
    parts = []
    for i in range(0, x.shape[0], batch_size):
        sl = slice(i, i + batch_size)
        extra = {} if start is None else {"start": start[sl]}
        parts.append(attack(model, x[sl], y if isinstance(y, str) else y[sl], **extra, **kwargs))
    return AttackResult(
        x_adv=torch.cat([p.x_adv for p in parts]),
        delta=torch.cat([p.delta for p in parts]),
        labels=torch.cat([p.labels for p in parts]),
        forward_backward=max(p.forward_backward for p in parts),  # an image's passes: the costliest batch's
        forwards=max(p.forwards for p in parts),  # (a query attack stops early on a batch it has fooled)
        seconds=sum(p.seconds for p in parts),
    )


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError("x must be a non-empty floating tensor of shape (B, C, ...)")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("pixels of x must be in [0, 1]: attack budgets are in pixel units")


def _check_start(start: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(start, torch.Tensor) or start.shape != x.shape:
        raise ValueError(f"start must be a delta tensor of the shape of x {tuple(x.shape)}")
    return start.detach().to(device=x.device, dtype=x.dtype)
