"""``fedsafe flower simulate``: a fedsafe config on Flower's simulation engine (Ray), on this machine.

What happens: a private ``FLWR_HOME`` (no telemetry, no update check), the app project written into it, a
simulation SuperLink on a free loopback port (plaintext: it never leaves 127.0.0.1), ``flwr run --stream`` with
``num-supernodes`` = the config's clients and ``client-resources-num-cpus`` CPUs per ClientApp (so
``cpus // cpus_per_client`` clients train at once), then the SuperLink is stopped by its PID (also on failure
or Ctrl-C). The ServerApp writes the run directory (see :mod:`fedsafe.flower.server_app`).

Example::

    outcome = simulate(load_config("exp.yaml"), "runs/exp-flower")
    outcome.complete, outcome.seconds, outcome.peak_memory_bytes
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ExperimentConfig
from ..runs.run import open_run
from .app import run_config_for, write_app_project
from .command_lines import flower_env, flwr_run, free_port, superlink_argv, write_flower_config
from .memory import PeakMemory
from .processes import ProcessSet

__all__ = ["simulate", "SimulationOutcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationOutcome:
    run_dir: Path
    complete: bool
    skipped: bool
    returncode: int
    seconds: float  # wall time, SuperLink start to stop
    peak_memory_bytes: int  # PSS of the SuperLink's process tree (ServerApp, Ray, ClientApps), sampled
    log_path: Path | None


def simulate(cfg: ExperimentConfig, run_dir: str | Path, *, cpus_per_client: int = 1, threads: int | None = None,
             timeout: float | None = None, stop_after: int = 0, workdir: str | Path | None = None,
             keep_workdir: bool = False, on_line: Callable[[str], None] | None = None) -> SimulationOutcome:
    """Run ``cfg`` on Flower's simulation engine into ``run_dir`` (resumes a checkpointed run, skips a complete one).

    Args:
        cpus_per_client: Ray CPUs reserved by each ClientApp (1: as many clients in parallel as cores).
        threads: torch threads of every ServerApp / ClientApp process (default: ``cfg.threads``, else 1).
        timeout: seconds before the run is abandoned (TimeoutError); None: no limit.
        workdir: where FLWR_HOME, the app and the logs go (default: a temporary folder, deleted after a
            successful run unless ``keep_workdir``).
        on_line: called with every line of the ``flwr run --stream`` console (the ServerApp's log).
    Raises:
        RuntimeError: the run did not complete (the message has the tail of the log).
    """
    if cpus_per_client < 1:
        raise ValueError(f"cpus_per_client must be >= 1, got {cpus_per_client}")
    rd = open_run(Path(run_dir).resolve(), config=cfg).layout
    if rd.is_complete():
        return SimulationOutcome(run_dir=rd.root, complete=True, skipped=True, returncode=0, seconds=0.0,
                                 peak_memory_bytes=0, log_path=None)
    threads = threads or cfg.threads or 1
    own_work = workdir is None
    work = Path(tempfile.mkdtemp(prefix="fedsafe-flower-sim-")) if own_work else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    home = work / "flwr-home"
    env = flower_env(home, threads=threads)
    port = free_port()
    write_flower_config(home, f"127.0.0.1:{port}")
    app_dir = write_app_project(work / "app")
    federation = f"num-supernodes={cfg.splits.num_clients} client-resources-num-cpus={cpus_per_client}"
    run_config = run_config_for(cfg, run_dir=str(rd.root), threads=threads, stop_after=stop_after,
                                engine="flower-simulation")
    log_path = work / "flwr_run.log"
    t0 = time.perf_counter()
    with ProcessSet() as procs:
        link = procs.start("superlink", superlink_argv(host="127.0.0.1", port=port, database=work / "superlink.db",
                                                       certs=None, supernode_auth=False, simulation=True),
                           env=env, log_path=work / "superlink.log")
        link.wait_port("127.0.0.1", port)
        with PeakMemory([link.pid], interval=2.0) as mem:  # each sample reads smaps of ~20 processes
            rc = flwr_run(app_dir, run_config, env=env, log_path=log_path, federation_config=federation,
                          timeout=timeout, on_line=on_line)
    seconds = time.perf_counter() - t0
    done = rd.is_complete() or (stop_after and rd.checkpoint.is_file())
    if not done:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:]) if log_path.is_file() else ""
        raise RuntimeError(f"Flower simulation did not complete (flwr run exit {rc}; logs in {work}):\n{tail}")
    if own_work and not keep_workdir:
        shutil.rmtree(work, ignore_errors=True)
        log_path = None
    elif os.environ.get("FEDSAFE_DEBUG"):
        log.info("Flower logs in %s", work)
    return SimulationOutcome(run_dir=rd.root, complete=rd.is_complete(), skipped=False, returncode=rc,
                             seconds=seconds, peak_memory_bytes=mem.peak, log_path=log_path)
