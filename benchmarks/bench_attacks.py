"""Attack benchmark: the cost of the step loop, and what CRN saves at attack time, as ratios measured in one run.

    python benchmarks/bench_attacks.py [--width 0.25] [--size 64] [--batch 100] [--steps 1,10,40] [--repeats 5]

Prints:
  1. PGD-K wall time over K times one input-gradient pass (forward + backward w.r.t. the input, what a plain
     PyTorch loop needs per step) on the same batch, for each K (target <= 1.10: the loop adds little); the K
     reference passes are timed back to back, beside the PGD-K, so that a load burst on a shared machine hits
     both alike;
  2. PGD-40 attack time over PGD-1+CRN10 attack time (the CRN paper, Table I: 6.794 s / 0.217 s, about 31x),
     and, to be honest about it, the CRN10 cost that was paid during training instead (R * j passes an image).
The model is the cpu profile's (paper CNN, width 0.25, 64x64 grey, two classes) on a batch of ``--batch``
synthetic images. Timings interleave the compared variants and keep the best of ``--repeats`` (shared machines).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fedsafe.attacks import CrnState, pgd, predict, uniform_start
from fedsafe.config import load_config
from fedsafe.experiments.train import model_factory, prepare_data
from fedsafe.precision import autocast, resolve_precision
from fedsafe.seeding import torch_generator


def input_gradient(model, x, y, precision: str) -> torch.Tensor:
    """One input-gradient pass, as a plain PyTorch user writes it."""
    x = x.detach().requires_grad_(True)
    with autocast(precision):
        loss = F.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g


def with_strides(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A copy of ``x`` (N, C, H, W) with channels-last or NCHW strides, even when C = 1 (``.contiguous(
    memory_format=...)`` leaves a one-channel tensor as it is: it counts as contiguous in both formats)."""
    n, c, h, w = x.shape
    strides = (h * w * c, 1, w * c, c) if channels_last else (c * h * w, h * w, w, 1)
    return torch.empty_strided(x.shape, strides, dtype=x.dtype).copy_(x)


def timings(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times of each function over ``repeats`` rounds, the functions interleaved within every round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def paired(a: list[float], b: list[float]) -> float:
    """Median over repeats of a[i] / b[i]: each ratio compares two runs made next to each other."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", default="1,10,40", help="the K of PGD-K, comma-separated")
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--crn-window", type=int, default=10)
    ap.add_argument("--crn-steps", type=int, default=5, help="j, CRN steps a round (authors: E; cpu profile: 5)")
    ap.add_argument("--precision", default="fp32", help="fp32 (the evaluation default), bf16 or auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ks = sorted({int(k) for k in a.steps.split(",")} | {1, 40})
    precision = resolve_precision(a.precision)

    cfg = load_config(profile="cpu", overrides=[f"model.width={a.width}", f"task.image_size={a.size}",
                                                f"splits.client_test_size={a.batch}"])
    data = prepare_data(cfg)
    model = model_factory(cfg, len(data.class_names), data.in_channels)().eval()
    x = data.client_test[0].x[: a.batch]
    y = predict(model, x)  # the labels are computed once, outside every timed call
    gen = lambda: torch_generator(0, "attack-start", 0)  # noqa: E731
    # CRN10 accumulated as during training (here: the same model for every round; the cost, not the values, matter)
    crn = CrnState.zeros(x, eps=a.eps, steps=a.crn_steps)
    for _ in range(a.crn_window):
        crn.absorb(model, x)
    print(f"model {cfg.model.name} width {a.width}, {a.size}x{a.size}x{data.in_channels}, batch {len(x)} "
          f"({data.task}{' [synthetic]' if data.synthetic else ''}), precision {precision}, {a.threads} threads, "
          f"best of {a.repeats}")

    # The reference passes run on the tensor PGD starts from, so that both see the same memory layout: on a CPU
    # the conv kernels are faster for channels-last strides (which grey (N, 1, H, W) images from ``to_tensor``
    # happen to have, and ``x + delta`` does not), and that is not the step loop's overhead.
    x0 = (x + uniform_start(x, a.eps, gen())).clamp(0, 1)

    def passes(k: int) -> None:  # k input-gradient passes back to back: the reference a PGD-K is compared with
        for _ in range(k):
            input_gradient(model, x0, y, precision)

    fns: dict[str, Callable[[], object]] = {}
    for k in ks:  # each PGD-K beside its own reference of the same length, so a load burst hits both alike
        fns[f"grad{k}"] = lambda k=k: passes(k)
        fns[f"pgd{k}"] = (lambda k=k: pgd(model, x, y, eps=a.eps, alpha=a.alpha, steps=k, generator=gen(),
                                          precision=precision))
    fns["pgd1+crn"] = lambda: pgd(model, x, y, eps=a.eps, alpha=a.alpha, steps=1, start=crn.delta,
                                  precision=precision)
    timings({k: fns[k] for k in ("grad1", "pgd1", "pgd1+crn")}, 1)  # warm-up: kernels for this shape, allocator
    runs = timings(fns, a.repeats)
    t = {k: min(v) for k, v in runs.items()}

    print(f"one input-gradient pass: {t['grad1'] * 1e3:.1f} ms a batch")
    xs = {"cl": with_strides(x0, True), "nchw": with_strides(x0, False)}
    layout = timings({k: lambda v=v: input_gradient(model, v, y, precision) for k, v in xs.items()}, a.repeats)
    print(f"  (memory layout, not part of the targets: the same pass on channels-last strides "
          f"{min(layout['cl']) * 1e3:.1f} ms, on NCHW strides {min(layout['nchw']) * 1e3:.1f} ms)")
    for k in ks:
        print(f"PGD-{k}: {t[f'pgd{k}']:.3f} s; {k} input-gradient passes: {t[f'grad{k}']:.3f} s; ratio "
              f"{t[f'pgd{k}'] / t[f'grad{k}']:.3f} best-of, {paired(runs[f'pgd{k}'], runs[f'grad{k}']):.3f} median "
              f"of adjacent pairs (target <= 1.10)")
    ratio = t["pgd40"] / t["pgd1+crn"]  # best-of; the median of adjacent pairs is printed beside it
    print(f"PGD-40 {t['pgd40']:.3f} s / PGD-1+CRN{a.crn_window} {t['pgd1+crn']:.3f} s = {ratio:.1f}x at attack time "
          f"(median of pairs {paired(runs['pgd40'], runs['pgd1+crn']):.1f}x; CRN paper Table I, meningioma: "
          f"6.794 / 0.217 = {6.794 / 0.217:.1f}x)")
    paid = a.crn_window * a.crn_steps
    print(f"  ... CRN{a.crn_window} was paid during training: {a.crn_window} rounds x {a.crn_steps} steps = {paid} "
          f"forward/backward passes an image, so PGD-1+CRN{a.crn_window} costs {paid + 1} passes in all against "
          f"PGD-40's 40: the saving is at attack time only.")


if __name__ == "__main__":
    main()
