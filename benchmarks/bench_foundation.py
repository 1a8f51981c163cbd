"""Foundation benchmark: federated-round overhead and training throughput, as ratios measured in one run.

    python benchmarks/bench_foundation.py [--task synthetic] [--width 0.25] [--size 64] [--pairs 10] [--naive 3]

Prints:
  0. the machine: CPU, its bf16 dot-product units and AMX as the CPU flags give them (``fedsafe.hardware``), and
     the ISA and bf16 convolution kernel oneDNN reports in a child process (``ONEDNN_VERBOSE``); an fp32-only CPU
     is emulated with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` (precision auto then resolves to fp32);
  1. wall time of one FL round (3 clients: noisy downlink, E local epochs, clip + noise uplink, FedAvg,
     checkpoint to a run directory) over the time of a plain PyTorch loop doing the same local epochs on the
     same data with the same optimizer and precision (target <= 1.05): measured in ``--pairs`` adjacent pairs
     (the order alternating from pair to pair), the ratio is the median over pairs, with its spread (the
     quartiles and a distribution-free ~95% interval of the median); when that interval is wider than the goal's
     5% margin the benchmark says so instead of deciding;
  2. training images/s of fedsafe's local training (channels_last + bf16 autocast where the CPU has fast bf16)
     over a naive eager float32 NCHW loop of the same model (target >= 4x on a CPU with bf16 matrix units), as
     the median over ``--naive`` (FL round, naive loop) pairs;
  3. ``train.compile`` (torch.compile): local-training throughput with and without, and its warm-up.
The glibc allocator is tuned as the ``fedsafe`` command does (``--default-malloc`` to compare).
Shared machines: the spread of the pairs, not one best time, says whether a ratio is decided.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from fedsafe.build import federation_spec, model_factory, prepare_data
from fedsafe.cli.runtime import tune_glibc_malloc
from fedsafe.config import load_config
from fedsafe.data.augment import augment_batch
from fedsafe.federation.client import local_train
from fedsafe.federation.simulator import Simulator
from fedsafe.hardware import cpu_features
from fedsafe.precision import autocast
from fedsafe.runs import open_run


def plain_local_epochs(model, x, y, *, epochs, batch_size, lr, precision, channels_last, augment, seed):
    """What a PyTorch user writes for E local epochs: no federation, no noise, no checkpoints."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch_size):
            idx = order[s:s + batch_size]
            xb, yb = x[idx], y[idx]
            if augment:
                xb = augment_batch(xb, g)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with autocast(precision):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
            opt.step()


def _matrix_units(f) -> str:
    """Whether the 4x target applies: AMX tiles in use, bf16 dot products only (AVX512-BF16: vector units, not
    matrix units), or no bf16 hardware at all."""
    if f.amx_used:
        return "this CPU has them, in use"
    if f.fast_bf16:
        return "not this CPU (bf16 dot products in vector units only: the 4x target does not apply)"
    return "not this CPU (no bf16 hardware in use: the 4x target does not apply)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="synthetic")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=10, help="(FL round, plain loop) pairs for the ratio")
    ap.add_argument("--naive", type=int, default=3, help="(FL round, naive fp32 loop) pairs for the speed-up")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the torch.compile section")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--default-malloc", action="store_true", help="keep glibc malloc defaults (the CLI tunes them)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tuned = False if a.default_malloc else tune_glibc_malloc()
    cfg = load_config(overrides=[f"task.name={a.task}", f"model.width={a.width}", f"task.image_size={a.size}",
                                 f"train.local_epochs={a.epochs}", "train.rounds=2", "train.eval_every=0",
                                 "federation.downlink_noise=0.01", "federation.uplink_clip=1000",
                                 "federation.uplink_noise=0.001"])
    data = prepare_data(cfg)
    spec = federation_spec(cfg, data)
    make = model_factory(cfg, data)  # in the memory format the run trains in, as `fedsafe train` builds it
    make_nchw = model_factory(cfg, data, layout=False)
    n_img = sum(len(s) for s in data.client_train) * a.epochs
    print(f"CPU: {cpu_features().describe()}; torch {torch.__version__}, ATen vector level "
          f"{torch.backends.cpu.get_cpu_capability()}; oneDNN: {onednn_report()}; glibc malloc tuned as the CLI "
          f"does: {tuned}")
    print(f"task {data.task}{' [synthetic]' if data.synthetic else ''}, profile {cfg.profile}, width {a.width}, "
          f"{a.size}x{a.size}x{data.in_channels}, 3 clients, E={a.epochs}, {n_img} training images a round, "
          f"precision {spec.local.precision}, channels_last {spec.local.channels_last}, {a.threads} threads")

    def fl_round() -> float:
        with tempfile.TemporaryDirectory() as d:
            sim = Simulator(spec=spec, data=data, model_factory=make, store=open_run(d, config_hash="bench").store,
                            augment_fn=augment_batch)
            t0 = time.perf_counter()
            sim.run(stop_after=1)
            return time.perf_counter() - t0

    def plain(precision: str, channels_last: bool) -> float:
        model = make_nchw()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        for i, s in enumerate(data.client_train):
            plain_local_epochs(model, s.x, s.y, epochs=a.epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr,
                               precision=precision, channels_last=channels_last, augment=True, seed=i)
        return time.perf_counter() - t0

    fl_round(), plain(spec.local.precision, spec.local.channels_last)  # warm-up (imports, allocator, kernels)
    ratios, t_fl, t_plain = [], [], []
    for i in range(a.pairs):
        pair = [fl_round, lambda: plain(spec.local.precision, spec.local.channels_last)]
        first, second = (pair if i % 2 == 0 else pair[::-1])
        t1, t2 = first(), second()
        f, p = (t1, t2) if i % 2 == 0 else (t2, t1)
        t_fl.append(f), t_plain.append(p), ratios.append(f / p)
    r = spread(ratios)
    print(f"FL round / plain loop: {r['median']:.3f} median of {a.pairs} pairs (quartiles {r['q1']:.3f}-"
          f"{r['q3']:.3f}, {r['level']} interval of the median {r['lo']:.3f}-{r['hi']:.3f}); FL round median "
          f"{statistics.median(t_fl):.2f} s (best {min(t_fl):.2f}), plain loop median {statistics.median(t_plain):.2f} "
          f"s (best {min(t_plain):.2f}); target <= 1.05: {decide(r, 1.05)}")
    speed, t_nv = [], []
    for _ in range(a.naive):
        f, n = fl_round(), plain("fp32", False)
        t_nv.append(n), speed.append(n / f)
    if speed:
        sp = spread(speed)
        print(f"vs naive fp32: training throughput fedsafe FL round {n_img / statistics.median(t_fl):.0f} img/s "
              f"({spec.local.precision}, channels_last={spec.local.channels_last}), naive eager fp32 NCHW loop "
              f"{n_img / statistics.median(t_nv):.0f} img/s; speed-up {sp['median']:.2f}x median of {a.naive} pairs "
              f"(range {min(speed):.2f}-{max(speed):.2f}x; target >= 4x on a CPU with bf16 matrix units (AMX): "
              f"{_matrix_units(cpu_features())})")
    if not a.skip_compile:
        compile_section(cfg, data, spec, a)


def spread(values: list[float]) -> dict[str, float | str]:
    """Median, quartiles, and the distribution-free interval of the median from order statistics: the widest
    (x_(k), x_(n+1-k)) with P(Binomial(n, 1/2) < k) <= 2.5% on each side (n >= 6; else the whole range)."""
    x, n = sorted(values), len(values)
    q1, _, q3 = statistics.quantiles(x, n=4) if n >= 2 else (x[0], x[0], x[0])
    k = 0
    while k + 1 <= n // 2 and sum(math.comb(n, j) for j in range(k + 1)) / 2 ** n <= 0.025:
        k += 1
    if k == 0:
        lo, hi, level = x[0], x[-1], "too few pairs for an"
    else:
        cover = 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2 ** n
        lo, hi, level = x[k - 1], x[n - k], f"{100 * cover:.0f}%"
    return {"median": statistics.median(x), "q1": q1, "q3": q3, "lo": lo, "hi": hi, "level": level}


def decide(r: dict, target: float) -> str:
    """Met, missed, or undecided: the interval of the median below, above, or across the target."""
    if r["hi"] <= target:
        return "met"
    if r["lo"] > target:
        return "missed"
    return (f"UNDECIDED: the spread of the pairs ({r['lo']:.3f}-{r['hi']:.3f}) is wider than the goal's margin "
            f"({target - 1:.0%} around 1); run more --pairs or on a quieter machine")


def onednn_report() -> str:
    """The ISA oneDNN reports, and the kernels of an fp32 and a bf16 channels-last convolution, from a child process
    with ONEDNN_VERBOSE=1 (the environment, ONEDNN_MAX_CPU_ISA included, is inherited)."""
    code = ("import sys, torch\nx = torch.rand(8, 16, 16, 16).contiguous(memory_format=torch.channels_last)\n"
            "c = torch.nn.Conv2d(16, 16, 3, padding=1).to(memory_format=torch.channels_last)\n"
            "for bf16 in (False, True):\n    print('fedsafe-conv', 'bf16' if bf16 else 'fp32', flush=True)\n"
            "    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):\n        c(x)\n"
            "    sys.stdout.flush()\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ONEDNN_VERBOSE": "1"},
                             capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"
    isa, kernels, now = "ISA not reported", {}, None
    for ln in out.splitlines():
        if "isa:" in ln:
            isa = ln.split("isa:", 1)[1].strip()
        elif ln.startswith("fedsafe-conv "):
            now = ln.split()[1]
        elif ",exec,cpu,convolution," in ln and now is not None:
            kernels.setdefault(now, ln.split(",")[6])
    conv = ", ".join(f"{k} {kernels.get(k, 'outside oneDNN')}" for k in ("fp32", "bf16"))
    return f"{isa}; convolution kernels: {conv}"


def compile_section(cfg, data, spec, a) -> None:
    """3. train.compile (torch.compile) on the CPU: local-training throughput with and without, and its warm-up."""
    x, y = data.client_train[0].x, data.client_train[0].y
    out = {}
    for compiled in (False, True):
        c = cfg.model_copy(update={"train": cfg.train.model_copy(update={"compile": compiled})})
        model = model_factory(c, data)()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        one = spec.local.__class__(**{**spec.local.__dict__, "epochs": 1})
        t0 = time.perf_counter()
        local_train(model, state, x, y, one, seed=0, round_=1, client=0, augment_fn=augment_batch)
        warm = time.perf_counter() - t0
        best = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            local_train(model, state, x, y, one, seed=0, round_=1, client=0, augment_fn=augment_batch)
            best.append(time.perf_counter() - t0)
        out[compiled] = (len(x) / min(best), warm)
    (eager, w0), (comp, w1) = out[False], out[True]
    print(f"train.compile: eager {eager:.0f} img/s, compiled {comp:.0f} img/s ({100 * (comp / eager - 1):+.0f}%), "
          f"first epoch {w0:.1f} s eager vs {w1:.1f} s compiled (warm-up ~{w1 - w0:.0f} s)")


if __name__ == "__main__":
    main()
