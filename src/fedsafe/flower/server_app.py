"""The fedsafe ServerApp (Flower Message API): drives :class:`fedsafe.flower.strategy.FedSafeStrategy` over the
federation of the run's fedsafe config and leaves the same run directory as ``fedsafe train``:

    config.yaml, data_report.json, splits.json, privacy_report.json      (before round 1)
    models/global/round_XXXX.pt, models/received/... (last K rounds), metrics.json, checkpoint.pt  (every round)
    models/final/client_YYY.pt                                           (the final downlink, round T + 1)
    summary.json                                                         (last, when the run is complete)

so ``fedsafe attack`` and ``fedsafe report`` read a Flower run unchanged. A run directory holding a checkpoint
of the same config resumes from its last completed round (the client hooks' states are sent back to the
clients with their first downlink); a complete one is left as it is.

The run directory is on the machine of the SuperLink (the ServerApp runs there); its path comes from the run
config (``run-dir``), set by ``fedsafe flower simulate`` / ``fedsafe flower run``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from ..build import write_header
from ..config import ExperimentConfig
from ..federation.state import clone
from ..runs.run import open_run
from ..runs.store import RunStore
from ..training.trainer import write_run_summary
from .app import build_flower_run, decode_config, encode_config, set_threads, state_to_record
from .strategy import FedSafeStrategy, discover_partitions

__all__ = ["app", "serve", "ServeOutcome"]

log = logging.getLogger(__name__)

app = ServerApp()


@dataclass(frozen=True)
class ServeOutcome:
    run_dir: RunStore | None
    completed_round: int
    seconds: float
    skipped: bool = False
    resumed_from: int = 0


def serve(grid: Grid, cfg: ExperimentConfig, run_dir: str | Path | None, *, stop_after: int = 0,
          round_timeout: float = 3600.0, connect_timeout: float = 600.0, engine: str = "flower",
          device: str = "") -> ServeOutcome:
    """Run (or resume, or skip if complete) the federation of ``cfg`` on ``grid``, writing ``run_dir``.

    Raises ClientFailure (a client missing or failing), ValueError / ConfigError (a run directory of another
    config or federation), RunLockedError (another process writes the run directory).
    """
    store = open_run(run_dir, config=cfg).store if run_dir else None
    if store is not None and store.is_complete():
        log.info("%s is already complete: nothing to do", store.root)
        return ServeOutcome(run_dir=store, completed_round=cfg.train.rounds, seconds=0.0, skipped=True)
    if store is None:
        return _serve(grid, cfg, None, stop_after=stop_after, round_timeout=round_timeout,
                      connect_timeout=connect_timeout, engine=engine, device=device)
    with store.lock():
        return _serve(grid, cfg, store, stop_after=stop_after, round_timeout=round_timeout,
                      connect_timeout=connect_timeout, engine=engine, device=device)


def _serve(grid: Grid, cfg: ExperimentConfig, store: RunStore | None, *, stop_after: int, round_timeout: float,
           connect_timeout: float, engine: str, device: str) -> ServeOutcome:
    t_start = time.perf_counter()
    run = build_flower_run(encode_config(cfg), device)
    spec, data = run.spec, run.data
    global_state = clone(run.initial_state)
    client_states, metrics, start = None, [], 1
    if store is not None:
        write_header(store, run.cfg, run.data, run.spec)
        ck = store.load_checkpoint(rounds=spec.rounds, num_clients=data.num_clients)
        if ck is not None:
            start = ck.round + 1
            global_state, client_states, metrics = ck.global_state, ck.client_states, list(ck.metrics)
            log.info("resuming from round %d of %d", start, spec.rounds)
    last = spec.rounds if not stop_after else min(int(stop_after), spec.rounds)
    nodes = discover_partitions(grid, data, timeout=connect_timeout)
    log.info("%d clients connected; partitions mapped to nodes", len(nodes))
    strategy = FedSafeStrategy(spec=spec, data=data, nodes=nodes, model=run.model, server_hook=run.hooks.server,
                               store=store, first_round=min(start, spec.rounds), client_states=client_states,
                               metrics=metrics)
    if start <= last:
        strategy.start(grid=grid, initial_arrays=state_to_record(global_state), num_rounds=last - start + 1,
                       timeout=round_timeout)
    elif start == spec.rounds + 1:  # killed during the final downlink: only that is left
        replies = grid.send_and_receive(strategy.configure_evaluate(1, state_to_record(global_state), ConfigRecord(),
                                                                    grid), timeout=round_timeout)
        strategy.aggregate_evaluate(1, replies)
    seconds = time.perf_counter() - t_start
    done = max(start - 1, min(last, spec.rounds))
    if store is not None and last == spec.rounds:
        write_run_summary(store, run.cfg, run.data, run.spec, run.model, [*strategy.metrics, strategy.final_row or {}],
                          seconds=seconds, resumed_from=start - 1, extra={"engine": engine})
    return ServeOutcome(run_dir=store, completed_round=done, seconds=seconds, resumed_from=start - 1)


def _configure_logging() -> None:
    # The ServerApp process is an entry point: its log lines reach the `flwr run --stream` console.
    root = logging.getLogger("fedsafe")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("fedsafe %(asctime)s %(levelname)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The ServerApp entry point: everything comes from the run config (see :mod:`fedsafe.flower.app`)."""
    _configure_logging()
    rc = context.run_config
    set_threads(rc)
    cfg = decode_config(str(rc.get("fedsafe-config", "")))
    run_dir = str(rc.get("run-dir", "")) or None
    if run_dir is None:
        log.warning("no run-dir in the run config: the run is kept in memory only")
    outcome = serve(grid, cfg, run_dir, stop_after=int(rc.get("stop-after", 0) or 0),
                    round_timeout=float(rc.get("round-timeout", 3600.0)), engine=str(rc.get("engine", "flower")),
                    device=str(rc.get("device", "") or ""))
    log.info("fedsafe run finished: round %d of %d, %.1f s, run directory %s", outcome.completed_round,
             cfg.train.rounds, outcome.seconds, outcome.run_dir.root if outcome.run_dir else "-")
