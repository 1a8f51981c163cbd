"""Square Attack, L-inf (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search"), as AutoAttack runs it: a gradient-free attack, so it measures
the risk where gradient attacks cannot (zero or shattered input gradients, design §6's masking checks).

It reads only the model's logits. Start: x + eps * s with one random sign s per (image, channel, column)
(vertical stripes), clipped to [0, 1]. Then, for ``queries`` iterations, on the images not yet misclassified: pick
a square window of side ``round(sqrt(p * H * W))`` (p from AutoAttack's schedule, halving from ``p_init``) at a
random position and, per channel, a random sign; add 2 eps times that sign to the window of the best point so far,
project back to the eps-ball and [0, 1], and keep the new point for each image whose margin loss
(true logit minus the largest other) went down or which is now misclassified. One window and one sign per channel
serve the whole batch at each iteration, as in AutoAttack's implementation (the authors' first code drew them per
image).

Every draw comes from the explicit ``generator``, in the order of AutoAttack's (and torchattacks') code, so the
same seed gives the same result as theirs (tested against torchattacks' ``Square``); each iteration costs one
forward pass of the images still being attacked, and a fooled image costs nothing more.

>>> from fedsafe.models.cnn import PaperCNN
>>> m = PaperCNN(num_classes=2, image_size=16, width=0.05)
>>> r = square_linf(m, torch.rand(4, 1, 16, 16), eps=0.05, queries=20, generator=torch.Generator().manual_seed(0))
>>> bool(r.delta.abs().max() <= 0.05 + 1e-6), r.forward_backward
(True, 0)
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from fedsafe.attacks.budget import check_eps
from fedsafe.attacks.iterative import AttackResult, Labels, resolve_labels
from fedsafe.models.inference import eval_mode
from fedsafe.precision import autocast, resolve_precision

__all__ = ["logit_margin", "p_schedule", "square_linf"]


def p_schedule(it: int, queries: int, p_init: float) -> float:
    """The share of pixels the window covers at iteration ``it`` of ``queries`` (AutoAttack's schedule, rescaled
    to 10,000 queries): p_init, halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 (rescaled)."""
    it = int(it / queries * 10000)
    for k, bound in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if it <= bound:
            return p_init / 2 ** k
    return p_init / 512


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """True logit minus the largest other one, (B,): <= 0 means misclassified (the margin loss of Carlini-Wagner
    and Square)."""
    rows = torch.arange(len(labels), device=logits.device)
    true = logits[rows, labels]
    others = logits.clone()
    others[rows, labels] = -float("inf")
    return true - others.amax(1)


def _sign(shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.sign(2 * torch.rand(shape, generator=generator) - 1).to(device)


def _position(high: int, generator: torch.Generator) -> int:
    return int((high * torch.rand([1], generator=generator)).long())


def square_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: Labels = "pred",
    *,
    eps: float,
    queries: int,
    generator: torch.Generator,
    p_init: float = 0.8,
    precision: str = "fp32",
) -> AttackResult:
    """Square Attack (module docstring), untargeted, margin loss, one restart: the best point found for every image
    (``x_adv``), fooled or not. x (B, C, H, W) in [0, 1]; y (B,) int or ``"pred"``; ``generator`` a CPU
    ``torch.Generator`` (the draws are made on the CPU and moved to x's device). The result counts forward passes
    an image at most (``forwards``: the labels' when predicted, the start's and one an iteration run; an image
    leaves the loop once fooled); no gradient is taken."""
    check_eps(eps)
    if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
        raise ValueError(f"queries must be an integer >= 1, got {queries!r}")
    if not 0 < p_init <= 1:
        raise ValueError(f"p_init is a share of the pixels in (0, 1], got {p_init}")
    if x.dim() != 4:
        raise ValueError(f"square_linf needs (B, C, H, W) images, got shape {tuple(x.shape)}")
    prec = resolve_precision(precision, x.device)
    t0 = time.perf_counter()
    x = x.detach()
    b, c, h, w = x.shape
    with eval_mode(model), torch.no_grad():
        labels = resolve_labels(model, x, y, precision=prec)

        def margin(images: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
            with autocast(prec, images.device.type):
                return logit_margin(model(images).float(), lab)

        best = (x + eps * _sign([b, c, 1, w], generator, x.device)).clamp(0.0, 1.0)
        best_margin = margin(best, labels)
        iterations = 0
        for it in range(queries):
            todo = (best_margin > 0).nonzero().flatten()
            if len(todo) == 0:
                break
            x_cur, best_cur, y_cur = x[todo], best[todo], labels[todo]
            s = max(int(round(math.sqrt(p_schedule(it, queries, p_init) * h * w))), 1)
            vh, vw = _position(h - s, generator), _position(w - s, generator)
            window = torch.zeros(c, h, w, device=x.device)
            window[:, vh:vh + s, vw:vw + s] = 2.0 * eps * _sign([c, 1, 1], generator, x.device)
            new = torch.min(torch.max(best_cur + window, x_cur - eps), x_cur + eps).clamp(0.0, 1.0)
            new_margin = margin(new, y_cur)
            better = (new_margin < best_margin[todo]) | (new_margin <= 0)
            best_margin[todo] = torch.where(better, new_margin, best_margin[todo])
            best[todo] = torch.where(better.view(-1, 1, 1, 1), new, best_cur)
            iterations += 1
    return AttackResult(x_adv=best, delta=best - x, labels=labels, forward_backward=0,
                        forwards=int(isinstance(y, str)) + 1 + iterations, seconds=time.perf_counter() - t0)
