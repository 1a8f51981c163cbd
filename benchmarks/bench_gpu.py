"""GPU benchmark: fedsafe at the papers' full scale against plain PyTorch loops, as ratios measured in one run.

    python benchmarks/bench_gpu.py [--rounds 50] [--epochs 20] [--plain-rounds 3] [--skip-compile]
    python benchmarks/bench_gpu.py --smoke      # a tiny functional run on the CPU (no timing meaning)

Prints, on one GPU, for the paper CNN (width 1, 100x100x3, batch 100, Adam, bf16 autocast + channels_last):
  1. training images/s of fedsafe's local training (:func:`fedsafe.federation.client.local_train`, augmentation
     off and on) over a plain PyTorch loop of the same model, batch, optimiser, gradient clip and precision, data
     resident on the GPU (target >= 0.95);
  2. one full paper-profile federation (T rounds of E local epochs, 3 clients; the synthetic task at the size of
     the de-duplicated meningioma task, 1279 images, when the real data is not at hand) through ``fedsafe.train``
     (noisy downlinks, uplinks, FedAvg, evaluation every round, checkpoints and received copies written every
     round): its wall time over the same local work in a plain loop, timed for ``--plain-rounds`` rounds and scaled
     to T (target <= 1.15; design §10's H200 plain loop: 163 s, 3.25 s a round, for clients of 341 images);
  3. PGD-40 and PGD-1+CRN10 seconds per 100-image batch (fedsafe's attacks, centred steps) next to CRN Table I's
     6.794 s and 0.217 s and next to a plain loop of input-gradient passes (target <= 1.1x), in bf16 and TF32;
  4. ``train.compile`` (torch.compile): training throughput with and without, and the warm-up it costs.
Exits with a message (status 2) on a machine without a GPU unless ``--smoke``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from fedsafe.attacks import pgd, uniform_start
from fedsafe.build import federation_spec, model_factory, prepare_data
from fedsafe.config import load_config
from fedsafe.data.augment import augment_batch
from fedsafe.device import describe_device
from fedsafe.federation.client import local_train
from fedsafe.precision import autocast
from fedsafe.seeding import torch_generator
from fedsafe.training.trainer import train

PAPER_PGD40_S, PAPER_CRN_S = 6.794, 0.217  # CRN paper, Table I (their GPU)
PAPER_SCALE_ROUND_S = 3.25  # design §10, H200, clients of 341 images


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def plain_train(model, x, y, *, epochs: int, batch: int, precision: str, seed: int) -> None:
    """What a PyTorch user writes: Adam, batch ``batch``, gradient clip 20, autocast, data on the device."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g).to(x.device)
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            xb, yb = x[idx].contiguous(memory_format=torch.channels_last), y[idx]
            opt.zero_grad(set_to_none=True)
            with autocast(precision, x.device.type):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
            opt.step()


def plain_input_gradient_steps(model, x, y, *, steps: int, precision: str) -> torch.Tensor:
    """``steps`` forward + backward passes w.r.t. the input: a plain PGD without projection bookkeeping."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with autocast(precision, x.device.type):
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = (x_adv.detach() + 0.001 * g.sign()).clamp_(0, 1)
    return x_adv


def section_training(a, cfg, data, device, precision: str) -> None:
    print("\n1. local training throughput (images/s), the three clients' training data as one set, on the device")
    x = torch.cat([s.x for s in data.client_train])
    y = torch.cat([s.y for s in data.client_train])
    spec = federation_spec(cfg, data)
    n = len(x) * a.epochs_bench
    rows = {}
    for augment in (False, True):
        local = spec.local.__class__(**{**spec.local.__dict__, "epochs": a.epochs_bench, "augment": augment})
        make = model_factory(cfg, data)
        model = make()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        aug = augment_batch if augment else None
        local_train(model, state, x, y, local, seed=0, round_=1, client=0, augment_fn=aug)  # warm-up
        ours = min(timed(lambda: local_train(model, state, x, y, local, seed=0, round_=1, client=0,  # noqa: B023
                                             augment_fn=aug), device) for _ in range(a.repeats))  # noqa: B023
        rows[f"fedsafe local_train, augment {'on' if augment else 'off'}"] = n / ours
    plain_model = model_factory(cfg, data)()
    plain_train(plain_model, x, y, epochs=1, batch=cfg.train.batch_size, precision=precision, seed=0)
    plain = min(timed(lambda: plain_train(plain_model, x, y, epochs=a.epochs_bench, batch=cfg.train.batch_size,
                                          precision=precision, seed=0), device) for _ in range(a.repeats))
    rows["plain PyTorch loop (no augmentation)"] = n / plain
    for k, v in rows.items():
        print(f"   {k:<45} {v:10.0f} img/s")
    base = rows["plain PyTorch loop (no augmentation)"]
    print(f"   ratio fedsafe / plain, augment off: {rows['fedsafe local_train, augment off'] / base:.3f} "
          f"(target >= 0.95); augment on: {rows['fedsafe local_train, augment on'] / base:.3f}")


def section_federation(a, cfg, data, device, precision: str) -> None:
    print(f"\n2. one full federation: T = {cfg.train.rounds}, E = {cfg.train.local_epochs}, "
          f"{data.num_clients} clients of {[len(s) for s in data.client_train]} images")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        out = train(cfg, Path(d) / "run", data=data)
        sync(device)
        wall = time.perf_counter() - t0
    rows = out.result.metrics[:-1]
    round_s = [float(r["round_seconds"]) for r in rows]
    acc = [r["global_acc"] for r in rows if "global_acc" in r]
    model = model_factory(cfg, data)()
    plain_train(model, data.client_train[0].x, data.client_train[0].y, epochs=1, batch=cfg.train.batch_size,
                precision=precision, seed=0)  # warm-up

    def plain_round():
        for s in data.client_train:
            plain_train(model, s.x, s.y, epochs=cfg.train.local_epochs, batch=cfg.train.batch_size,
                        precision=precision, seed=1)

    plain = [timed(plain_round, device) for _ in range(a.plain_rounds)]
    plain_round_s = min(plain)
    fed_total = sum(round_s)
    print(f"   fedsafe train(): {wall:.1f} s wall in all ({fed_total:.1f} s in rounds, {fed_total / len(rows):.2f} s "
          f"a round, {wall - fed_total:.1f} s set-up and final downlink); global acc {acc[0]:.3f} after round 1, "
          f"{acc[-1]:.3f} after round {len(rows)}")
    print(f"   plain loop: {plain_round_s:.2f} s a round (best of {a.plain_rounds}) -> "
          f"{plain_round_s * len(rows):.1f} s for {len(rows)} rounds "
          f"(design §10, H200, clients of 341: {PAPER_SCALE_ROUND_S} s a round, 163 s)")
    print(f"   ratio fedsafe rounds / plain: {fed_total / (plain_round_s * len(rows)):.3f}; whole train() / plain: "
          f"{wall / (plain_round_s * len(rows)):.3f} (target <= 1.15)")


def section_attacks(a, cfg, data, device) -> None:
    print("\n3. attack cost per 100-image batch (seconds), the final model of client 0")
    x = data.client_test[0].x[:100]
    model = model_factory(cfg, data)().eval()
    gen = torch_generator(0, "attack-start", 0)
    with torch.no_grad():
        y = model(x).argmax(1)
    start = uniform_start(x, 0.05, torch.Generator().manual_seed(1))  # stands for a CRN10 delta (same cost)
    for precision in ("bf16", "fp32"):
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = precision == "fp32"
            torch.backends.cudnn.allow_tf32 = precision == "fp32"
        label = "bf16" if precision == "bf16" else ("TF32" if device.type == "cuda" else "fp32")
        pgd(model, x, y, eps=0.05, alpha=0.001, steps=2, generator=gen, centre_grad=True, precision=precision)
        plain_input_gradient_steps(model, x, y, steps=2, precision=precision)
        t40 = min(timed(lambda: pgd(model, x, y, eps=0.05, alpha=0.001, steps=40,  # noqa: B023
                                    generator=torch_generator(0, "attack-start", 0), centre_grad=True,
                                    precision=precision), device) for _ in range(a.repeats))  # noqa: B023
        t1 = min(timed(lambda: pgd(model, x, y, eps=0.05, alpha=0.001, steps=1, start=start,  # noqa: B023
                                   centre_grad=True, precision=precision), device)  # noqa: B023
                 for _ in range(a.repeats))
        p40 = min(timed(lambda: plain_input_gradient_steps(model, x, y, steps=40, precision=precision),  # noqa: B023
                        device) for _ in range(a.repeats))
        p1 = min(timed(lambda: plain_input_gradient_steps(model, x, y, steps=1, precision=precision),  # noqa: B023
                       device) for _ in range(a.repeats))
        print(f"   {label}: PGD-40 {t40:.3f} s (plain {p40:.3f} s, ratio {t40 / p40:.2f}; paper {PAPER_PGD40_S} s) | "
              f"PGD-1+CRN10 {t1:.4f} s (plain {p1:.4f} s, ratio {t1 / p1:.2f}; paper {PAPER_CRN_S} s) | "
              f"PGD-40 / PGD-1+CRN10 {t40 / t1:.0f}x (paper {PAPER_PGD40_S / PAPER_CRN_S:.0f}x; CRN10's own "
              "50 passes an image were paid in training)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True


def section_compile(a, cfg, data, device) -> None:
    print("\n4. train.compile (torch.compile): local training throughput and warm-up")
    x = torch.cat([s.x for s in data.client_train])
    y = torch.cat([s.y for s in data.client_train])
    spec = federation_spec(cfg, data)
    local = spec.local.__class__(**{**spec.local.__dict__, "epochs": a.epochs_bench, "augment": False})
    out = {}
    for compiled in (False, True):
        c = load_config(overrides=[*a.overrides, f"train.compile={str(compiled).lower()}"])
        model = model_factory(c, data)()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        one = spec.local.__class__(**{**local.__dict__, "epochs": 1})
        warm = timed(lambda: local_train(model, state, x, y, one, seed=0, round_=1, client=0), device)  # noqa: B023
        best = min(timed(lambda: local_train(model, state, x, y, local, seed=0, round_=1, client=0),  # noqa: B023
                         device) for _ in range(a.repeats))
        out[compiled] = (len(x) * a.epochs_bench / best, warm)
    (eager, w0), (comp, w1) = out[False], out[True]
    print(f"   eager {eager:.0f} img/s (first epoch {w0:.1f} s); compiled {comp:.0f} img/s (first epoch {w1:.1f} s, "
          f"warm-up ~{w1 - w0:.1f} s); gain {100 * (comp / eager - 1):+.0f}% (design §10, H200: +19% after 18 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--images", type=int, default=1279, help="synthetic task size (meningioma de-duplicated: 1279)")
    ap.add_argument("--plain-rounds", type=int, default=3)
    ap.add_argument("--epochs-bench", type=int, default=8, help="local epochs of the throughput sections")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks that every section runs")
    a = ap.parse_args()
    if not torch.cuda.is_available() and not a.smoke:
        print("bench_gpu.py measures GPU throughput, but this machine has no usable CUDA device "
              f"(torch {torch.__version__}); run it on a GPU machine, or with --smoke for a functional check",
              file=sys.stderr)
        sys.exit(2)
    if a.smoke:
        a.overrides = ["profile=paper", "task.name=synthetic", "task.synthetic_size=200", "task.image_size=16",
                       "model.width=0.04", "train.rounds=2", "train.local_epochs=1", "train.batch_size=16",
                       "splits.client_test_size=20", "train.device=cpu", "train.precision=fp32"]
        a.epochs_bench, a.plain_rounds, a.repeats = 1, 1, 1
    else:
        a.overrides = ["profile=paper", "task.name=synthetic", f"task.synthetic_size={a.images}",
                       f"train.rounds={a.rounds}", f"train.local_epochs={a.epochs}", "train.device=cuda",
                       "train.precision=bf16"]
    cfg = load_config(overrides=a.overrides)
    data = prepare_data(cfg)
    device = data.device
    precision = federation_spec(cfg, data).local.precision
    print(f"device {describe_device(device)}; torch {torch.__version__}; paper CNN width {cfg.model.width}, "
          f"{cfg.task.image_size}x{cfg.task.image_size}x{cfg.task.channels}, batch {cfg.train.batch_size}, "
          f"{cfg.train.optimizer}, precision {precision}, channels_last {cfg.train.channels_last}; task "
          f"{data.task} [synthetic], {sum(len(s) for s in data.client_train)} training images")
    t0 = time.perf_counter()
    section_training(a, cfg, data, device, precision)
    section_federation(a, cfg, data, device, precision)
    section_attacks(a, cfg, data, device)
    if not a.skip_compile:
        section_compile(a, cfg, data, device)
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
