"""Flower benchmark: what running fedsafe on Flower's simulation engine costs over the in-process simulator.

    python benchmarks/bench_flower.py [--rounds 2 10] [--size 32] [--width 0.25] [--big-clients 100] [--skip-big]

Prints:
  1. time per round after start-up, Flower simulation over in-process, for the same work (same config and seed;
     the runs give the same models): the mean ``round_seconds`` of rounds >= 2 from metrics.json (downlink,
     messages to and from the ClientApps, local training, uplink, aggregation, evaluation), and as a cross-check the
     marginal wall time of a round, (wall(T2 rounds) - wall(T1 rounds)) / (T2 - T1), in which start-up cancels
     out (noisy on a shared machine: Flower's start-up alone varies by seconds). Two settings:
       serial:   one client at a time in both (1 torch thread; Flower reserves 2 CPUs a client)
                 -> the pure overhead of Flower (target <= 1.3);
       parallel: Flower trains 2 clients at once (1 CPU, 1 thread each) against the same in-process run
                 -> what Flower's parallel clients buy on this machine (informational);
  2. the 100-client Flower simulation: peak memory (PSS of the SuperLink's whole process tree: ServerApp, Ray,
     ClientApp workers) and time per round, beside the in-process simulator's on the same config.
Every run is a subprocess (``fedsafe train`` / ``fedsafe flower simulate``), its memory sampled by PSS; each wall
time is the best of ``--repeats`` (the machines are shared: the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedsafe.flower.memory import PeakMemory

BASE = [
    "seed=0", "task.name=synthetic", "train.precision=fp32", "train.local_epochs=1", "train.batch_size=32",
    "federation.downlink_noise=0.01", "federation.uplink_clip=50.0", "federation.uplink_noise=0.001",
    "federation.keep_received_rounds=2",
]


def _fedsafe(*args: str) -> list[str]:
    return [sys.executable, "-c", "from fedsafe.cli import main; main()", *args]


def run(kind: str, overrides: list[str], work: Path, *, threads: int, cpus_per_client: int = 1) -> dict:
    """One subprocess run; returns its wall time, peak PSS and per-round times."""
    rd = work / f"{kind}-{len(os.listdir(work))}"
    sets = [a for o in [*overrides, f"threads={threads}"] for a in ("--set", o)]
    if kind == "inproc":
        argv = _fedsafe("train", "-o", str(rd), *sets)
    else:
        argv = _fedsafe("flower", "simulate", "-o", str(rd), "--cpus-per-client", str(cpus_per_client),
                        "--threads", str(threads), *sets)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    with open(work / f"{rd.name}.log", "wb") as log:
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        with PeakMemory([p.pid], interval=1.0) as mem:
            code = p.wait()
    wall = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"{kind} run failed ({code}); see {work / (rd.name + '.log')}")
    rows = json.loads((rd / "metrics.json").read_text())
    later = [r["round_seconds"] for r in rows[1:]] or [rows[0]["round_seconds"]]
    return {"wall": wall, "peak_gib": mem.peak / 2**30, "round_seconds": statistics.mean(later), "rounds": len(rows)}


def per_round(kind: str, overrides: list[str], work: Path, t1: int, t2: int, repeats: int = 1, **kw) -> dict:
    def best(t: int) -> dict:
        runs = [run(kind, [*overrides, f"train.rounds={t}"], work, **kw) for _ in range(repeats)]
        return min(runs, key=lambda r: r["wall"])

    a, b = best(t1), best(t2)
    return {"marginal": (b["wall"] - a["wall"]) / (t2 - t1), "round_seconds": b["round_seconds"],
            "wall": b["wall"], "peak_gib": b["peak_gib"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, nargs=2, default=(2, 10), metavar=("T1", "T2"))
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--synthetic", type=int, default=1200)
    ap.add_argument("--big-clients", type=int, default=100)
    ap.add_argument("--big-rounds", type=int, default=3)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-ratio", action="store_true")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="Also write the numbers as JSON here.")
    args = ap.parse_args()
    t1, t2 = args.rounds
    work = Path(tempfile.mkdtemp(prefix="bench-flower-"))
    results: dict[str, object] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    model = [f"task.image_size={args.size}", f"model.width={args.width}", f"task.synthetic_size={args.synthetic}"]

    if not args.skip_ratio:
        small = [*BASE, *model, "splits.num_clients=3"]
        print(f"1. Flower simulation vs in-process, 3 clients, {args.size}px, width {args.width}, "
              f"rounds {t1} and {t2}")
        a = per_round("inproc", small, work, t1, t2, args.repeats, threads=1)
        for name, flower_cpus in (("serial", 2), ("parallel", 1)):
            b = per_round("flower", small, work, t1, t2, args.repeats, threads=1, cpus_per_client=flower_cpus)
            ratio, ratio_wall = b["round_seconds"] / a["round_seconds"], b["marginal"] / a["marginal"]
            results[name] = {"inproc": a, "flower": b, "ratio_round_seconds": ratio, "ratio_marginal": ratio_wall}
            print(f"   {name:8s} time per round after start-up: in-process {a['round_seconds']:.3f} s, Flower "
                  f"{b['round_seconds']:.3f} s -> ratio {ratio:.2f}  (marginal wall {a['marginal']:.3f} vs "
                  f"{b['marginal']:.3f} s -> {ratio_wall:.2f}); wall for {t2} rounds: Flower {b['wall']:.1f} s, "
                  f"in-process {a['wall']:.1f} s")

    if not args.skip_big:
        n = args.big_clients
        big = [*BASE, *model, f"splits.num_clients={n}", f"splits.num_shards={2 * n}", "splits.client_test_size=20",
               f"task.synthetic_size={max(args.synthetic, 100 * n)}", f"train.rounds={args.big_rounds}"]
        print(f"2. {n} clients, {args.big_rounds} rounds, synthetic {max(args.synthetic, 100 * n)} images")
        f = run("flower", big, work, threads=1, cpus_per_client=1)
        i = run("inproc", big, work, threads=1)
        results["big"] = {"clients": n, "flower": f, "inproc": i}
        print(f"   Flower simulation: peak memory {f['peak_gib']:.2f} GiB (PSS, whole process tree), "
              f"{f['round_seconds']:.2f} s a round (rounds >= 2), {f['wall']:.1f} s wall")
        print(f"   in-process:        peak memory {i['peak_gib']:.2f} GiB, {i['round_seconds']:.2f} s a round, "
              f"{i['wall']:.1f} s wall")
    results["load_after"] = os.getloadavg()[0]
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"runs and logs in {work}")


if __name__ == "__main__":
    main()
