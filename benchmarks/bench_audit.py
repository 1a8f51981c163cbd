"""Audit benchmark (design §13): the wall time of ``fedsafe audit`` on one cpu-profile run at the default budget and
with ``--full`` (the audit as it was before), their ratio, and both audits' verdicts side by side.

    python benchmarks/bench_audit.py --run RUN [--skip-full] [--fresh]
    python benchmarks/bench_audit.py [--rounds 3] [--synthetic-size 1200] [--skip-full]

``--run``: an existing run directory, e.g. one trained with
``fedsafe train --task meningioma --profile cpu --set threads=2 -o RUN`` (the run's ``threads`` is the audit's).
Without it a synthetic cpu-profile federation (downlink noise 0.01) is trained first in a temporary directory.
Each audit is a child process as a user runs it (imports, data preparation, loading included); ``--fresh`` deletes
the run's ``audit/`` and ``attacks/`` caches first, and the once-a-run sanity checks again before the full audit,
so that nothing is read back. The default audit runs first; the
full one shares none of its cached results (other precision, K, shadows and masking images). Printed: each
audit's wall time, its parts (attacks, masking checks, membership inference, the rest) and image passes as
estimated before it ran, the ratio of the wall times, and the verdicts of both side by side with the headline
numbers and their 95% intervals.

Latest, quiet 2-core AMD EPYC (AVX512-BF16, no AMX), nothing else running, ``--run`` of a learned cpu-profile
meningioma run, ``--fresh``: default 146.5 s (attacks 70, masking 21, membership 50), full 444.5 s, ratio 0.33,
every verdict the same (docs/results/bench-cpu.md), after the attacker's CRN replay moved to the audit's precision.

Earlier, on the shared 2-core AMD EPYC, with 6-8 other helpers' jobs on the two cores (load 10-16), so
every absolute figure is several times an idle machine's: ``--run`` of a cpu-profile meningioma run of 4 rounds
(``--set threads=1 --set train.rounds=4``: the 20-round run took 530 s a round under that load) that did not learn,
``--fresh``: the default audit 1322 s wall = attacks 482 s (PGD-20 23 s a batch of 100, PGD-20+CRN4 16 s,
EOT2-PGD-20 32 s; s_D = 0, so one gradient a step), masking checks 215 s, membership 594 s (8 shadow models x 10
epochs), the rest 30 s. The full audit was stopped after the default one: at that load it would have taken about an
hour. Where the time went before (cProfile of the old default on a 3-round synthetic run): the first 218 s of
attacks were 182 s of the once-a-run sanity checks (fp32), the rest PGD steps; conv2d forward passes took more time
than the backward ones. One input-gradient pass of the cpu profile's CNN (64 x 64, width 0.25, 1 thread, CPU time):
6.4 ms an image in fp32, 3.0 in bf16, flat from batch 32 to 300: bf16 halves the attacks, the batch size does not
matter on this CPU. A tiny user model (README route 2: a 1-conv net at 32 x 32, 3 clients, 40 attack images
each), ``--fresh``: default 235 s, full 266 s (0.89; attacks 133 vs 53 s: the default paid the sanity checks that
the full audit then read back, which ``--fresh`` now recomputes, and bf16 autocast does not pay on a model this
small; masking 24 vs 44 s, membership 49 vs 152 s), every verdict the same.
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
from typing import Any


def _audit(run: Path, extra: list[str]) -> tuple[float, str, dict[str, Any]]:
    cmd = [sys.executable, "-c", "from fedsafe.cli import main; main()", "audit", str(run), *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"fedsafe audit {' '.join(extra)} failed:\n{done.stdout}\n{done.stderr}")
    summary = json.loads((run / "audit" / "audit.json").read_text())
    return wall, done.stdout + done.stderr, summary


def _headline(s: dict[str, Any]) -> dict[str, str]:
    out = {}
    for a in s["attacks"]:
        ci = a.get("asr_avg_benign_ci") or [float("nan")] * 2
        out[f"ASR others, {a['label']}"] = f"{100 * a['asr_avg_benign']:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    m = s.get("membership")
    for view in ("server", "insider") if m else ():
        for attack in ("lira", "loss"):
            r = m[view]["mean"][attack]
            lo, hi = r.get("auc_ci") or [float("nan")] * 2
            out[f"AUC {view} {attack}"] = f"{r['auc']:.3f} [{lo:.3f}, {hi:.3f}]"
    return out


def _report(name: str, wall: float, text: str, s: dict[str, Any]) -> None:
    estimate = next((" ".join(line.split()) for line in text.splitlines() if "Estimated cost" in line), "n/a")
    sec = s["seconds"]
    print(f"{name}: {wall:.1f} s wall ({estimate})")
    for part in ("attacks", "masking", "membership"):
        print(f"  {part:12s} {sec[part]:7.1f} s  {100 * sec[part] / wall:5.1f}%")
    rest = wall - sum(sec[p] for p in ("attacks", "masking", "membership"))
    print(f"  {'rest':12s} {rest:7.1f} s  {100 * rest / wall:5.1f}%  (start-up, data, loading, writing)")
    print(f"  {s['budget']['text']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="audit this run directory (default: train a synthetic one)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--synthetic-size", type=int, default=1200)
    p.add_argument("--skip-full", action="store_true", help="time the default audit only")
    p.add_argument("--fresh", action="store_true", help="delete RUN/audit and RUN/attacks first")
    args = p.parse_args()
    root = None
    if args.run is None:
        from fedsafe.config import load_config
        from fedsafe.training.trainer import train

        root = Path(tempfile.mkdtemp(prefix="bench-audit-"))
        run = root / "run"
        cfg = load_config(profile="cpu", overrides=[f"train.rounds={args.rounds}", "federation.downlink_noise=0.01",
                                                    f"task.synthetic_size={args.synthetic_size}"])
        train(cfg, run)
    else:
        run = args.run
        if args.fresh:
            for sub in ("audit", "attacks"):
                shutil.rmtree(run / sub, ignore_errors=True)
    try:
        wall, text, s = _audit(run, [])
        _report("fedsafe audit (default budget)", wall, text, s)
        if args.fresh:  # the sanity checks are cached once a run: the full audit pays them too, as it did alone
            (run / "attacks" / "sanity.json").unlink(missing_ok=True)
        if args.skip_full:
            print("full audit skipped (--skip-full): no ratio")
            full = None
        else:
            full_wall, full_text, full = _audit(run, ["--full"])
            _report("fedsafe audit --full", full_wall, full_text, full)
            print(f"ratio default / full: {wall / full_wall:.2f} ({full_wall / wall:.1f}x faster)")
        rows = [("verdict", "default", "full")]
        for k, v in s["verdicts"].items():
            rows.append((k, v, (full or {}).get("verdicts", {}).get(k, "-")))
        for k, v in _headline(s).items():
            rows.append((k, v, _headline(full).get(k, "-") if full else "-"))
        for k, a, b in rows:
            same = "" if full is None or k == "verdict" else ("  same" if a == b else "  DIFFERS")
            print(f"{k:28s} | {a:60s} | {b}{same if k in s['verdicts'] else ''}")
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
