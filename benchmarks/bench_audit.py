"""Audit benchmark: the wall time of ``fedsafe audit`` on one cpu-profile run, with its parts.

    python benchmarks/bench_audit.py [--rounds 3] [--synthetic-size 1200] [--eot 8] [--shadows 4]
                                     [--max-shadow-epochs 30] [--quick] [--keep DIR]

Measured on the shared 2-core AMD EPYC (other jobs running), ``--rounds 2 --synthetic-size 400 --quick`` but
with EOT K = 8 and 4 shadows, before the masking checks were cut to 50 images a client: audit 385 s wall =
attacks 185 s (PGD-10 3.9 s a batch of 100, EOT8-PGD-10 32.7 s: 8.4x), masking 121 s, membership 73 s (16 shadows
x 10 epochs), the rest 6 s; a second call 5.3 s (all cached). On an H200 (``--rounds 2 --synthetic-size 400
--quick``, fp32 attacks): 17.5 s wall = attacks 1.2 s (PGD-10 0.028 s a batch, EOT2-PGD-10 0.126 s), masking 0.9 s,
membership 6.6 s (8 shadows x 5 epochs), the rest 8.8 s (start-up, data, CUDA initialisation); cached 9.4 s.

Trains a synthetic federation with the ``cpu`` profile (the papers' CNN at width 0.25, 64x64 grey, 3 clients, Adam,
bf16 where the CPU has it) for ``--rounds`` rounds in the script, then runs ``fedsafe audit RUN`` as a user would (a
child process: imports, data preparation and the run's loading included) and prints:

  1. the training's wall time, and the audit's cost estimate beside its wall time;
  2. the audit's parts as its summary records them: the attack evaluations (PGD-20, PGD-20+CRN(R), EOT-PGD-K at the
     run's s_D; R = the rounds kept, at most 10), the masking checks, the membership inference (its shadow models:
     S a view x (1 server + 3 insiders), each min(T x E, cap) epochs on the attacker's data), and the rest (start-up,
     data, loading, writing);
  3. the wall time of a second, identical call (everything read back from the cache).

The EOT-K over K x PGD-step ratio is ``benchmarks/bench_attacks.py``'s, not repeated here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedsafe.cli.runtime import tune_glibc_malloc
from fedsafe.config import load_config
from fedsafe.experiments.train import train


def _audit(run: Path, args: argparse.Namespace) -> tuple[float, str]:
    options = {"--eot": args.eot, "--shadows": args.shadows, "--max-shadow-epochs": args.max_shadow_epochs}
    cmd = [sys.executable, "-c", "from fedsafe.cli import main; main()", "audit", str(run),
           *[a for k, v in options.items() if v is not None for a in (k, str(v))], *(["--quick"] if args.quick else [])]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"fedsafe audit failed:\n{done.stdout}\n{done.stderr}")
    return wall, done.stdout + done.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--synthetic-size", type=int, default=1200)
    p.add_argument("--eot", help="K values of EOT-PGD (the audit's default: 8; --quick 2)")
    p.add_argument("--shadows", type=int, help="shadow models a view (the audit's default: 4; --quick 2)")
    p.add_argument("--max-shadow-epochs", type=int, help="cap on a shadow's epochs (default 30; --quick 5)")
    p.add_argument("--quick", action="store_true", help="the audit's --quick (PGD-10, EOT K = 2, 2 short shadows)")
    p.add_argument("--keep", type=Path, help="train into this directory and keep it (default: a temporary one)")
    args = p.parse_args()
    tune_glibc_malloc()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-audit-"))
    run = root / "run"
    try:
        cfg = load_config(profile="cpu", overrides=[f"train.rounds={args.rounds}", "federation.downlink_noise=0.01",
                                                    f"task.synthetic_size={args.synthetic_size}"])
        t0 = time.perf_counter()
        out = train(cfg, run)
        train_s = time.perf_counter() - t0
        wall, text = _audit(run, args)
        s = json.loads((run / "audit" / "audit.json").read_text())
        cached_wall, _ = _audit(run, args)
        estimate = next((" ".join(line.split()) for line in text.splitlines() if "Estimated cost" in line), "n/a")
        sec, m = s["seconds"], s.get("membership") or {}
        parts = {"attacks": sec["attacks"], "masking checks": sec["masking"], "membership (shadows + scores)":
                 sec["membership"]}
        print(f"cpu-profile run: {args.rounds} rounds x {cfg.train.local_epochs} epochs, {args.synthetic_size} "
              f"synthetic images, 3 clients; trained in {train_s:.1f} s ({'skipped' if out.skipped else 'fresh'}); "
              f"global accuracy {s['global_acc']}")
        print(f"fedsafe audit: {wall:.1f} s wall ({estimate})")
        for name, v in parts.items():
            print(f"  {name:32s} {v:7.1f} s  {100 * v / wall:5.1f}%")
        rest = wall - sum(parts.values())
        print(f"  {'rest (start-up, data, writing)':32s} {rest:7.1f} s  {100 * rest / wall:5.1f}%")
        for a in s["attacks"]:
            print(f"    {a['label']:18s} {a['fb_passes_per_image']:5d} passes/image, {a['seconds_per_batch']:.3f} s a "
                  f"batch, ASR other clients {a['asr_avg_benign']}")
        if m:
            print(f"    shadows: {m['shadows_trained']} models x {m['shadow_epochs']} epochs ({m['budget']})")
        print(f"second call (cached): {cached_wall:.1f} s wall")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
