"""EOT-PGD: the insider's adaptive attack on distributed (downlink) noise.

Expectation over Transformation (Athalye et al. 2018, "Synthesizing robust adversarial examples"; and
"Obfuscated gradients give a false sense of security", section 5.3): against a randomised defense, ascend the
expected loss, whose gradient is estimated by the mean over K draws of the randomness. Here the randomness is the
downlink noise of Fed-Safe (design §4): the attacker knows its std s_D, and at every step draws K fresh
noisy copies ``w + N(0, s_D^2 I)`` of its own model's parameters and follows the sign of

    g_K(x) = (1/K) sum_k grad_x CE(f(x; w + s_D z_k), y),     z_k ~ N(0, I) (parameters only; buffers unchanged),

in the step loop of :mod:`fedsafe.attacks.iterative` (start, projection, centring and labels as there).

Noise order, so that a seed replays: per step, per copy, one ``torch.randn(p.shape, dtype=p.dtype)`` per
parameter in ``model.named_parameters()`` order, drawn from the attacker's CPU generator and then moved to the
parameter's device (the same seed gives the same noise on every device). PGD's random start, when drawn, comes
first from the same generator. With s_D = 0 nothing is drawn. The model is never copied nor modified: each
copy is a ``torch.func.functional_call`` with noised parameter tensors. Cost: K * steps forward+backward passes
an image, plus the CPU draws: on the 2-core CPU EOT-PGD-5 with K = 4 took the time of 4 x PGD-5 (the cpu
profile's model); on an H200 at the papers' scale (4.09 M parameters, ~20 ms a CPU draw) 1.2-1.7x in fp32 and
1.7-2.1x in bf16, where a pass is shorter than the draw (pinned, asynchronous copies: 2.1x instead of 3.2x).
"""

from __future__ import annotations

import torch
from torch import nn

from fedsafe.attacks.budget import check_budget
from fedsafe.attacks.iterative import AttackResult, Labels, input_gradient, iterative_attack
from fedsafe.attacks.starts import uniform_start

__all__ = ["eot_gradient", "eot_pgd", "noisy_parameters"]

_PIN_NOISE = True  # pinned host buffers for CUDA parameters (a switch, to measure what they save)


def noisy_parameters(model: nn.Module, noise_std: float, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """One noisy copy of the model's parameters, name -> ``p + noise_std * z`` with ``z ~ N(0, I)`` drawn on CPU
    from ``generator`` in ``named_parameters()`` order (new tensors in each parameter's memory format, device and
    dtype; the model is not modified). ``noise_std = 0`` returns the (detached) parameters and draws nothing.

    >>> m = nn.Linear(3, 2)
    >>> sorted(noisy_parameters(m, 0.1, torch.Generator().manual_seed(0)))
    ['bias', 'weight']
    """
    _check_noise(noise_std, generator)
    params = dict(model.named_parameters())
    if noise_std == 0:
        return {name: p.detach() for name, p in params.items()}
    out = {}
    for name, p in params.items():
        # on an accelerator: a pinned host buffer and an asynchronous copy, so that drawing the next copy's noise on
        # the CPU overlaps the device's work on this one (a copy from pageable memory waits for the device first)
        pin = p.device.type == "cuda" and _PIN_NOISE
        z = torch.randn(p.shape, generator=generator, dtype=p.dtype, pin_memory=pin).mul_(noise_std)
        out[name] = p.detach().clone().add_(z.to(p.device, non_blocking=pin))  # clone keeps channels-last strides
    return out


def eot_gradient(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    samples: int,
    noise_std: float,
    generator: torch.Generator | None,
    precision: str = "fp32",
) -> torch.Tensor:
    """The EOT estimate ``g_K(x)`` (module docstring): the mean over ``samples`` = K noisy copies of the input
    gradient of the summed cross-entropy. Its variance around the expected gradient falls as 1/K.

    Shapes: x (B, C, H, W) (not modified), labels (B,) int64 -> (B, C, H, W). The model's mode is the caller's.

    >>> m = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> g = eot_gradient(m, torch.rand(3, 1, 2, 2), torch.zeros(3, dtype=torch.long), samples=4, noise_std=0.1,
    ...                  generator=torch.Generator().manual_seed(0))
    >>> g.shape
    torch.Size([3, 1, 2, 2])
    """
    _check_samples(samples)
    total = None
    for _ in range(samples):
        g = input_gradient(model, x, labels, precision=precision,
                           parameters=noisy_parameters(model, noise_std, generator))
        total = g if total is None else total.add_(g)  # autograd's fresh output: safe to accumulate into
    return total if samples == 1 else total.div_(samples)


def eot_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    eps: float,
    alpha: float,
    steps: int,
    samples: int,
    noise_std: float,
    start: torch.Tensor | None = None,
    centre_grad: bool = False,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
) -> AttackResult:
    """EOT-PGD (module docstring) against downlink noise of std ``noise_std`` = s_D, ``samples`` = K copies a step.

    Starts from ``start`` (a delta: zero for EOT-BIM, the CRN delta for "EOT-PGD + CRN"), else from a uniform
    point of the eps-ball drawn from ``generator``, which also draws the noise (a CPU ``torch.Generator``; needed
    unless ``noise_std`` is 0 and ``start`` is given). Labels: the clean predictions of ``model`` itself (the
    attacker's noiseless model) by default. With K = 1 and s_D = 0 this is :func:`fedsafe.attacks.pgd`.

    Shapes: x (B, C, H, W) in [0, 1]; y (B,) int or ``"pred"``. ``forward_backward`` = K * steps.

    >>> from fedsafe.models.cnn import PaperCNN
    >>> m = PaperCNN(num_classes=2, image_size=16, width=0.05)
    >>> r = eot_pgd(m, torch.rand(4, 1, 16, 16), eps=0.03, alpha=0.01, steps=2, samples=3, noise_std=0.01,
    ...             generator=torch.Generator().manual_seed(0))
    >>> r.forward_backward
    6
    """
    check_budget(eps=eps, alpha=alpha, steps=steps)
    _check_samples(samples)
    _check_noise(noise_std, generator)
    if start is None:
        if generator is None:
            raise ValueError("eot_pgd draws its random start from an explicit generator: pass generator= or start=")
        start = uniform_start(x, eps, generator)

    def gradient(x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return eot_gradient(model, x_adv, labels, samples=samples, noise_std=noise_std, generator=generator,
                            precision=precision)

    return iterative_attack(model, x, y, eps=eps, alpha=alpha, steps=steps, start=start, centre_grad=centre_grad,
                            precision=precision, gradient=gradient, gradients_per_step=samples)


def _check_samples(samples: int) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples (K, noisy copies a step) must be an integer >= 1, got {samples!r}")


def _check_noise(noise_std: float, generator: torch.Generator | None) -> None:
    if not noise_std >= 0:  # also rejects NaN
        raise ValueError(f"noise_std (s_D) must be >= 0, got {noise_std}")
    if noise_std > 0:
        if not isinstance(generator, torch.Generator):
            raise ValueError("EOT draws its noise from an explicit torch.Generator: pass generator=")
        if generator.device.type != "cpu":
            raise ValueError("EOT noise is drawn on CPU so that a seed gives the same noise on every device: "
                             f"pass a CPU generator, got one on {generator.device}")
