"""``fedsafe --help`` start-up benchmark: the wall time a user waits for the command's help (goal < 1 s), and the
heavy libraries imported on the way (goal: none of torch, dp-accounting, pandas, matplotlib).

    python benchmarks/bench_cli.py [--repeats 5]

Each call is a fresh process (``python -c "from fedsafe.cli import main; main()" ARGS``); the median and the best of
``--repeats`` are printed for ``--help``, ``--version`` and, for comparison, ``train --help`` (which imports the
command's module and so torch). ``tests/cli/test_conventions.py`` asserts the imports; the time is only measured here.

Measured 2026-12-06 on a 2-core AMD EPYC that was NOT quiet (other sessions' tests ran: load average ~10):
``--help`` 0.33-0.62 s (before the lazy command table: 6.8-7.4 s, in the same minutes), ``--version`` 0.21 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "dp_accounting", "pandas", "matplotlib", "flwr")
RUN = "from fedsafe.cli import main; main()"
PROBE = ("import sys, json; from typer.testing import CliRunner; from fedsafe.cli import app; "
         "CliRunner().invoke(app, {args!r}); print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, check=True)
    return time.perf_counter() - start


def heavy_imports(args: list[str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    a = parser.parse_args()
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    for args in (["--help"], ["--version"], ["train", "--help"]):
        times = [wall(args) for _ in range(a.repeats)]
        print(f"fedsafe {' '.join(args):14s} median {statistics.median(times):.2f} s, best {min(times):.2f} s; "
              f"heavy imports: {', '.join(heavy_imports(args)) or 'none'}")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
