"""Attack benchmark: the CPU cost of the step loop, EOT's cost, what CRN saves at attack time, and the allocator,
as ratios measured in one run.

    python benchmarks/bench_attacks.py [--width 0.25] [--size 64] [--batch 100] [--steps 1,10,40] [--repeats 5]
                                       [--eot-samples 4] [--eot-steps 5] [--malloc tuned|default]

Prints:
  1. the input-gradient pass on channels-last vs NCHW strides, for the channels-last model and an NCHW copy of it
     (for C = 1 only the strides' metadata differ; the convolutions of an NCHW model run channels-last when its
     input has channels-last strides: that is the 1.7x first measured; a channels-last model runs channels-last
     whatever the input's strides);
  2. for each K: PGD-K with the step loop as it is (``after``) and as it was before (``before``, kept
     below verbatim), beside K plain channels-last input-gradient passes; the step efficiency = plain pass time
     over one ``after`` step (target >= 0.95), the before/after speed-up, and how far the two loops' images differ
     (float rounding of different convolution kernels: a few sign flips of near-zero gradient components);
  3. EOT-PGD with K noisy copies over K times PGD of the same steps (target <= 1.10: the noise and
     ``functional_call`` add little to the K passes);
  4. PGD-40 over PGD-1+CRN10 at attack time (the CRN paper, Table I: 6.794 s / 0.217 s, about 31x), and the CRN
     cost paid during training instead;
  5. the allocator, in child processes of a fixed PGD-10 each: {before, after} loop x {default, tuned} glibc
     malloc, and the after loop under the default malloc on micro-batches of ``--child-chunk`` images
     (``attack_in_batches``), with their user / sys CPU time and page faults;
  6. this process's user and sys CPU time (``resource.getrusage``), sys as a share (target < 10%).

The allocator (measured in 5): the activations of one pass are tens of MiB each (41 MiB for the first convolution
at width 0.25, 64x64, batch 100), above glibc's largest dynamic mmap threshold (32 MiB), so every pass mmaps them
fresh, the kernel zero-fills every page on first touch, and ``free`` unmaps them again; what stays in the heap is
trimmed back to the kernel at each free of its top. Setting both thresholds (``mallopt`` below, or the environment
``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=2147483647`` before Python starts) keeps the freed
blocks in the process for the next pass: page faults fall from ~70,000 a step to ~0 and sys time to ~0. Either
alone does not help (measured on the 2-core AMD EPYC, glibc 2.36: mmap threshold alone 14% sys, trim alone 27%).
It is a process setting, so it belongs to the entry point (the CLI), not to a library function; the cost is that
the peak heap is not returned to the kernel until the process exits. A smaller attack batch is no substitute:
at 50 images the largest activation (20 MiB) is under the mmap ceiling, but a fresh process still trims its
heap top (its trim threshold follows the dynamic mmap threshold): 26,000-44,000 page faults a step, measured in
5. PyTorch's own caching CPU allocator (``torch._C._set_default_mobile_cpu_allocator``) fails an internal assert
in the oneDNN convolutions, so it is not an option.

The model is the cpu profile's (paper CNN, width 0.25, 64x64 grey, two classes, channels-last as it trains) on a
batch of ``--batch`` synthetic images with the channels-last strides the data pipeline gives one-channel images.
Timings interleave the compared variants and keep the best of ``--repeats`` (shared machines); ratios are also
given as the median over repeats of adjacent pairs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fedsafe.attacks import CrnState, attack_in_batches, eot_pgd, eval_mode, pgd, predict, uniform_start
from fedsafe.cli.runtime import tune_glibc_malloc
from fedsafe.config import load_config
from fedsafe.models.model_registry import build_model
from fedsafe.precision import autocast, resolve_precision, to_channels_last
from fedsafe.seeding import torch_generator

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str((1 << 31) - 1)}


def pgd_before(model, x, y, *, eps, alpha, steps, generator, centre_grad=False, precision="fp32") -> torch.Tensor:
    """PGD through the step loop as it was before (fedsafe 1f93257), verbatim but for the labels, which
    are given: out-of-place updates, so for one-channel input x_adv takes NCHW strides after the first op."""
    start = uniform_start(x, eps, generator)
    x = x.detach()
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    with eval_mode(model), torch.enable_grad():
        x_adv = torch.clamp(x + start, lo, hi)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with autocast(precision, x.device.type):
                loss = F.cross_entropy(model(x_adv), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            if centre_grad:
                grad = grad - grad.mean(dim=(2, 3), keepdim=True)
            x_adv = torch.clamp(x_adv.detach() + alpha * grad.sign(), lo, hi)
    return x_adv


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


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def setup(a: argparse.Namespace):
    """The cpu profile's model in its training layout, synthetic images with the pipeline's strides, labels."""
    cfg = load_config(profile="cpu", overrides=[f"model.width={a.width}", f"task.image_size={a.size}"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(cfg.model.name, num_classes=2, in_channels=1, image_size=a.size, width=a.width,
                            dropout=cfg.model.dropout).eval()
    if cfg.train.channels_last:
        model = to_channels_last(model)
    x = torch.rand(a.batch, 1, a.size, a.size, generator=torch.Generator().manual_seed(0))
    x = with_strides(x, channels_last=True)  # as ``to_tensor`` gives one-channel images
    return cfg, model, x, predict(model, x)  # the labels are computed once, outside every timed call


def child(a: argparse.Namespace) -> None:
    """One fixed workload (PGD-``--child-steps`` with the ``--child`` loop) and its CPU times, as a JSON line."""
    torch.set_num_threads(a.threads)
    _, model, x, y = setup(a)
    precision = resolve_precision(a.precision)

    def run(steps: int) -> None:
        kw = {"eps": a.eps, "alpha": a.alpha, "steps": steps, "generator": torch_generator(0, "attack-start", 0),
              "precision": precision}
        if a.child == "before":
            pgd_before(model, x, y, **kw)
        else:
            attack_in_batches(pgd, model, x, y, batch_size=a.child_chunk or len(x), **kw)

    run(2)  # warm-up: kernels for this shape, the heap
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(a.child_steps)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"step_s": wall / a.child_steps, "user": r1.ru_utime - r0.ru_utime,
                      "sys": r1.ru_stime - r0.ru_stime, "minflt": r1.ru_minflt - r0.ru_minflt}))


def run_child(a: argparse.Namespace, loop: str, malloc: str, chunk: int = 0) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    if malloc == "tuned":
        env.update(MALLOC_ENV)
    args = [sys.executable, __file__, "--child", loop, "--child-steps", str(a.child_steps), "--width", str(a.width),
            "--size", str(a.size), "--batch", str(a.batch), "--threads", str(a.threads), "--precision", a.precision,
            "--child-chunk", str(chunk)]
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


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
    ap.add_argument("--eot-samples", type=int, default=4, help="K, noisy copies a step of EOT-PGD")
    ap.add_argument("--eot-steps", type=int, default=5)
    ap.add_argument("--eot-std", type=float, default=0.01, help="s_D (does not change the cost)")
    ap.add_argument("--precision", default="fp32", help="fp32 (the evaluation default), bf16 or auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                    help="this process's glibc malloc: tuned (the measured setting) or as it comes")
    ap.add_argument("--child-steps", type=int, default=10, help="PGD steps of each allocator child process")
    ap.add_argument("--child-chunk", type=int, default=50, help="micro-batch of the chunked allocator child")
    ap.add_argument("--child", choices=("before", "after"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return
    tuned = tune_glibc_malloc() if a.malloc == "tuned" else False
    torch.set_num_threads(a.threads)
    ks = sorted({int(k) for k in a.steps.split(",")} | {1, 40})
    precision = resolve_precision(a.precision)
    cfg, model, x, y = setup(a)
    gen = lambda: torch_generator(0, "attack-start", 0)  # noqa: E731
    crn = CrnState.zeros(x, eps=a.eps, steps=a.crn_steps)  # CRN10 as during training (one model: the cost matters)
    for _ in range(a.crn_window):
        crn.absorb(model, x)
    print(f"{cpu_name()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), {a.threads} threads; "
          f"model {cfg.model.name} width {a.width}, {a.size}x{a.size}x1, batch {len(x)} [synthetic], "
          f"channels_last {cfg.train.channels_last}, precision {precision}; glibc malloc "
          f"{'tuned' if tuned else 'as it comes'}; best of {a.repeats}")

    # 1. memory layout of the input, on the tensor PGD starts from, for this model and an NCHW copy of it
    x0 = (x + uniform_start(x, a.eps, gen())).clamp(0, 1)
    xs = {"cl": with_strides(x0, True), "nchw": with_strides(x0, False)}
    nchw_model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    layout_fns = {f"{mk}/{k}": lambda m=m, v=v: input_gradient(m, v, y, precision)
                  for mk, m in (("model", model), ("nchw-model", nchw_model)) for k, v in xs.items()}
    timings(layout_fns, 1)  # warm-up: kernels for this shape, the heap
    lt = {k: min(v) for k, v in timings(layout_fns, a.repeats).items()}
    print(f"1. one input-gradient pass, input with channels-last / NCHW strides: this (channels-last) model "
          f"{lt['model/cl'] * 1e3:.1f} / {lt['model/nchw'] * 1e3:.1f} ms ({lt['model/nchw'] / lt['model/cl']:.2f}x); "
          f"an NCHW copy {lt['nchw-model/cl'] * 1e3:.1f} / {lt['nchw-model/nchw'] * 1e3:.1f} ms "
          f"({lt['nchw-model/nchw'] / lt['nchw-model/cl']:.2f}x)")

    # 2. the step loop, before and after, beside plain channels-last passes of the same count
    def passes(k: int) -> None:
        for _ in range(k):
            input_gradient(model, xs["cl"], y, precision)

    def attack(loop, k: int):
        return loop(model, x, y, eps=a.eps, alpha=a.alpha, steps=k, generator=gen(), precision=precision)

    fns: dict[str, Callable[[], object]] = {}
    for k in ks:
        fns[f"grad{k}"] = lambda k=k: passes(k)
        fns[f"after{k}"] = lambda k=k: attack(pgd, k)
        fns[f"before{k}"] = lambda k=k: attack(pgd_before, k)
    fns["pgd1+crn"] = lambda: pgd(model, x, y, eps=a.eps, alpha=a.alpha, steps=1, start=crn.delta,
                                  precision=precision)
    timings({k: fns[k] for k in ("grad1", "after1", "before1", "pgd1+crn")}, 1)  # warm-up
    runs = timings(fns, a.repeats)
    t = {k: min(v) for k, v in runs.items()}
    print("2. step loop: PGD-K 'after' (this loop) and 'before' (the earlier loop) vs K plain "
          "channels-last passes")
    for k in ks:
        after, before, grad = t[f"after{k}"], t[f"before{k}"], t[f"grad{k}"]
        print(f"   PGD-{k}: after {after:.3f} s ({after / k * 1e3:.1f} ms a step), before {before:.3f} s, "
              f"{k} plain passes {grad:.3f} s; step efficiency (plain / after) {grad / after:.3f} best-of, "
              f"{paired(runs[f'grad{k}'], runs[f'after{k}']):.3f} median of pairs (target >= 0.95); "
              f"speed-up before/after {before / after:.2f}x ({paired(runs[f'before{k}'], runs[f'after{k}']):.2f}x)")
    k = max(ks)
    diff = (attack(pgd, k).x_adv - attack(pgd_before, k)).abs()
    print(f"   PGD-{k} images, after vs before: max |diff| {float(diff.max()):.2g}, pixels differing "
          f"{float((diff > 0).double().mean()):.3%} (float rounding of the two layouts' kernels)")

    # 3. EOT-PGD-K over K x PGD of the same steps
    ke, se = a.eot_samples, a.eot_steps
    eot_fns = {
        "eot": lambda: eot_pgd(model, x, y, eps=a.eps, alpha=a.alpha, steps=se, samples=ke, noise_std=a.eot_std,
                               generator=gen(), precision=precision),
        "pgdK": lambda: [attack(pgd, se) for _ in range(ke)],
    }
    timings(eot_fns, 1)
    er = timings(eot_fns, a.repeats)
    print(f"3. EOT-PGD-{se} with K = {ke}: {min(er['eot']):.3f} s; {ke} x PGD-{se}: {min(er['pgdK']):.3f} s; ratio "
          f"{min(er['eot']) / min(er['pgdK']):.3f} best-of, {paired(er['eot'], er['pgdK']):.3f} median of pairs "
          f"(target <= 1.10); {ke * se} forward/backward passes an image")

    # 4. CRN at attack time
    ratio = t["after40"] / t["pgd1+crn"]
    print(f"4. PGD-40 {t['after40']:.3f} s / PGD-1+CRN{a.crn_window} {t['pgd1+crn']:.3f} s = {ratio:.1f}x at attack "
          f"time (median of pairs {paired(runs['after40'], runs['pgd1+crn']):.1f}x; CRN paper Table I, meningioma: "
          f"6.794 / 0.217 = {6.794 / 0.217:.1f}x)")
    paid = a.crn_window * a.crn_steps
    print(f"   ... CRN{a.crn_window} was paid during training: {a.crn_window} rounds x {a.crn_steps} steps = {paid} "
          f"forward/backward passes an image, so PGD-1+CRN{a.crn_window} costs {paid + 1} passes in all against "
          f"PGD-40's 40: the saving is at attack time only.")

    # 5. the allocator, in fresh processes (glibc reads its environment once, at start)
    print(f"5. allocator: PGD-{a.child_steps} in a fresh process each (step time; user, sys CPU s; page faults)")
    variants = [("before", "default", 0), ("after", "default", 0), ("before", "tuned", 0), ("after", "tuned", 0),
                ("after", "default", a.child_chunk)]
    for loop, malloc, chunk in variants:
        c = run_child(a, loop, malloc, chunk)
        share = c["sys"] / max(c["user"] + c["sys"], 1e-9)
        what = f"loop {loop:6s} malloc {malloc:7s}" + (f" micro-batches of {chunk}" if chunk else "")
        print(f"   {what}: {c['step_s'] * 1e3:6.1f} ms a step of {len(x)} images; user {c['user']:.2f} s, "
              f"sys {c['sys']:.2f} s ({share:.1%} sys); {c['minflt'] // a.child_steps} minor page faults a step")

    # 6. this process
    r = resource.getrusage(resource.RUSAGE_SELF)
    share = r.ru_stime / (r.ru_utime + r.ru_stime)
    print(f"6. this process: user {r.ru_utime:.1f} s, sys {r.ru_stime:.1f} s: sys {share:.1%} of its CPU time "
          f"(target < 10%)")


if __name__ == "__main__":
    main()
