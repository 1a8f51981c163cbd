"""Why do attacks fool most images on some seeds of a task and few on others? A diagnosis of trained runs.

For each run directory given and each client's final model, on the client's own first ``--images`` test images it
prints one JSON line with:

* the clean accuracy and the share of images predicted as each class;
* the share of images whose fp32 softmax is saturated (top probability exactly 1.0) and whose cross-entropy input
  gradient is exactly zero, overall and by true class: where it is zero, a gradient attack cannot move;
* white-box PGD-K (``--steps``, alpha 2.5 eps / K, one uniform random start from an explicit generator) success
  along ``--eps``, overall and by true class, on the images the model gets right: a curve that rises to 100% says
  the model is simply farther from its boundary; one that stays flat or falls as eps grows says the gradient
  misleads (gradient masking);
* the same at the first eps with the margin loss (largest other logit minus the true one) instead of the
  cross-entropy: the margin's gradient does not vanish when the softmax saturates, so a higher success with it
  means the cross-entropy underestimated the risk (with 2 classes the two give the same sign wherever the
  cross-entropy's gradient is not zero);
* the flip rate of the ball's corners alone (the random start's signs times eps, no gradient);
* with ``--square N``, the success of the gradient-free Square Attack (N queries, :func:`fedsafe.attacks.square_linf`)
  at each eps, by true class: what a zero or misleading gradient hides, a search that reads only the logits can
  still find.

    python benchmarks/diag_attack_spread.py RUN [RUN ...] [--images 100] [--eps 0.05,0.1,0.2,0.5] [--square 1000]
        [--clients 0,1,2] [--out FILE]

The models are evaluated as they are: nothing is trained and the run directories are only read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fedsafe.attacks.iterative import input_gradient, iterative_attack
from fedsafe.attacks.square import logit_margin, square_linf
from fedsafe.evaluation.run_context import load_context
from fedsafe.models.inference import eval_mode
from fedsafe.runs.run import open_run


def margin_gradient(model: torch.nn.Module):
    """The input gradient of sum_b (max_{k != y_b} z_k - z_{y_b}): the margin (Carlini-Wagner) loss."""
    def gradient(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad((-logit_margin(model(x), labels)).sum(), x)
        return grad
    return gradient


def _share(mask: torch.Tensor) -> float | None:
    return round(float(mask.float().mean()), 3) if mask.numel() else None


def _by_class(values: torch.Tensor, labels: torch.Tensor, classes: int) -> list[float | None]:
    return [_share(values[labels == k]) for k in range(classes)]


def diagnose(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps_values: list[float], steps: int,
             seed: int, square: int = 0) -> dict:
    with eval_mode(model), torch.no_grad():
        logits = model(x)
    classes = logits.shape[1]
    pred = logits.argmax(1)
    ok = pred == y
    zero = input_gradient(model, x, y).flatten(1).abs().amax(1) == 0
    out: dict = {"images": len(y), "clean_acc": _share(ok), "pred_share": [_share(pred == k) for k in range(classes)],
                 "correct_by_class": [int((ok & (y == k)).sum()) for k in range(classes)],
                 "saturated": _share(logits.softmax(1).amax(1) == 1.0),
                 "zero_gradient": _share(zero), "zero_gradient_by_class": _by_class(zero, y, classes)}
    xo, yo = x[ok], y[ok]
    for i, eps in enumerate(eps_values):
        gen = torch.Generator().manual_seed(seed)
        start = (torch.rand(xo.shape, generator=gen) * 2 - 1) * eps
        losses = {"ce": None, "margin": margin_gradient(model)} if i == 0 else {"ce": None}
        for name, gradient in losses.items():
            adv = iterative_attack(model, xo, yo, eps=eps, alpha=2.5 * eps / steps, steps=steps, start=start,
                                   gradient=gradient).x_adv
            with eval_mode(model), torch.no_grad():
                flip = model(adv).argmax(1) != yo
            key = f"pgd{steps}" + ("" if name == "ce" else "_margin") + f"@{eps:g}"
            out[key] = _share(flip)
            if name == "ce":
                out[key + "_by_class"] = _by_class(flip, yo, classes)
        with eval_mode(model), torch.no_grad():
            corners = model((xo + start.sign() * eps).clamp(0, 1)).argmax(1) != yo
        out[f"corners@{eps:g}"] = _share(corners)
        if square:
            gen = torch.Generator().manual_seed(seed)
            adv = square_linf(model, xo, yo, eps=eps, queries=square, generator=gen).x_adv
            with eval_mode(model), torch.no_grad():
                flip = model(adv).argmax(1) != yo
            out[f"square{square}@{eps:g}"] = _share(flip)
            out[f"square{square}@{eps:g}_by_class"] = _by_class(flip, yo, classes)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="fedsafe run directories (trained, complete)")
    ap.add_argument("--images", type=int, default=100, help="the first N test images of each client")
    ap.add_argument("--eps", default="0.05,0.1,0.2,0.5", help="comma-separated L-inf radii in [0, 1] pixels")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0, help="the random start's generator seed")
    ap.add_argument("--square", type=int, default=0, help="also run Square Attack with this many queries (0: no)")
    ap.add_argument("--clients", default=None, help="comma-separated client indices (default: every client)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="also write the JSON lines here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    eps_values = [float(e) for e in a.eps.split(",")]
    lines = []
    for root in a.runs:
        run = open_run(root)
        ctx = load_context(run, device="cpu", complete=True)
        for c, model in enumerate(ctx.models):
            if a.clients is not None and c not in {int(k) for k in a.clients.split(",")}:
                continue
            split = ctx.data.client_test[c]
            row = {"run": root.name, "task": run.config.task.name, "seed": run.config.seed, "client": c,
                   "classes": list(ctx.data.class_names),
                   **diagnose(model, split.x[:a.images], split.y[:a.images], eps_values=eps_values, steps=a.steps,
                              seed=a.seed, square=a.square)}
            lines.append(json.dumps(row))
            print(lines[-1], flush=True)
    if a.out:
        a.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
