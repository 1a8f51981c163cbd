"""Foundation benchmark: federated-round overhead and training throughput, as ratios measured in one run.

    python benchmarks/bench_foundation.py [--task synthetic] [--width 0.25] [--size 64] [--repeats 3]

Prints:
  1. wall time of one FL round (3 clients: noisy downlink, E local epochs, clip + noise uplink, FedAvg,
     checkpoint to a run directory) over the time of a plain PyTorch loop doing the same local epochs on the
     same data with the same optimizer and precision (target <= 1.05);
  2. training images/s of fedsafe's local training (channels_last + bf16 autocast where the CPU has fast bf16)
     over a naive eager float32 NCHW loop of the same model (target >= 4x on a CPU with AMX);
  3. ``train.compile`` (torch.compile): local-training throughput with and without, and its warm-up.
The glibc allocator is tuned as the ``fedsafe`` command does (``--default-malloc`` to compare).
Timings interleave the compared variants and keep the best of ``--repeats`` (the machines are shared).
"""

from __future__ import annotations

import argparse
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
from fedsafe.precision import autocast, cpu_has_fast_bf16
from fedsafe.runs.store import RunStore


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="synthetic")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
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
    isa = torch.backends.cpu.get_cpu_capability()
    print(f"CPU capability {isa}; fast bf16 units: {cpu_has_fast_bf16()} (AMX: {'AMX' in isa.upper()}); glibc malloc "
          f"tuned as the CLI does: {tuned}")
    print(f"task {data.task}{' [synthetic]' if data.synthetic else ''}, profile {cfg.profile}, width {a.width}, "
          f"{a.size}x{a.size}x{data.in_channels}, 3 clients, E={a.epochs}, {n_img} training images a round, "
          f"precision {spec.local.precision}, channels_last {spec.local.channels_last}, {a.threads} threads")

    def fl_round() -> float:
        with tempfile.TemporaryDirectory() as d:
            sim = Simulator(spec=spec, data=data, model_factory=make, store=RunStore(d, config_hash="bench"),
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
    t_fl, t_plain, t_naive = [], [], []
    for _ in range(a.repeats):
        t_fl.append(fl_round())
        t_plain.append(plain(spec.local.precision, spec.local.channels_last))
        t_naive.append(plain("fp32", False))
    fl, pl, nv = min(t_fl), min(t_plain), min(t_naive)
    print(f"FL round: {fl:.2f} s; plain loop, same local epochs: {pl:.2f} s; "
          f"ratio {fl / pl:.3f} (target <= 1.05)")
    print(f"training throughput: fedsafe FL round {n_img / fl:.0f} img/s ({spec.local.precision}, channels_last="
          f"{spec.local.channels_last}); naive eager fp32 NCHW loop {n_img / nv:.0f} img/s; "
          f"speed-up {nv / fl:.2f}x (target >= 4x on a CPU with bf16 matrix units)")
    if not a.skip_compile:
        compile_section(cfg, data, spec, a)


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
