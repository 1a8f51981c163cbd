"""A whole TLS-authenticated Flower deployment on one machine (``fedsafe flower deploy``): a SuperLink with
SuperNode authentication, one registered SuperNode per client, the fedsafe app, all stopped by PID at the end.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs.layout import RunLayout
from .app import run_config_for, write_app_project
from .certs import make_certs, make_node_keys
from .command_lines import (
    flower_env,
    flwr_run,
    free_port,
    register_nodes,
    superlink_argv,
    supernode_argv,
    write_flower_config,
)
from .processes import ProcessSet

__all__ = ["DeployOutcome", "deploy"]


# -- a whole deployment on one machine ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeployOutcome:
    run_dir: Path
    seconds: float
    returncode: int
    workdir: Path
    complete: bool


def deploy(cfg: Any, run_dir: str | Path, *, certs_dir: str | Path | None = None, host: str = "127.0.0.1",
           port: int | None = None, threads: int | None = None, timeout: float = 1800.0,
           workdir: str | Path | None = None, stop_after: int = 0) -> DeployOutcome:
    """Run ``cfg`` on real processes on this machine: a SuperLink with TLS and SuperNode authentication, one
    registered SuperNode per client (``partition-id`` = the client index), the fedsafe app; then stop them all
    by PID. Certificates and keys are made in ``certs_dir`` (default ``WORKDIR/certs``) if missing.
    Raises RuntimeError (with the log's tail) when a process fails, TimeoutError after ``timeout`` seconds."""
    t0 = time.perf_counter()
    n = cfg.splits.num_clients
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fedsafe-flower-deploy-"))
    work.mkdir(parents=True, exist_ok=True)
    certs = make_certs(certs_dir or work / "certs", hosts=(host, "localhost") if host != "localhost" else (host,))
    make_node_keys(certs.directory, n)
    home = work / "flwr-home"
    env = flower_env(home, threads=threads or cfg.threads)
    port = port or free_port(host)
    address = f"{host}:{port}"
    write_flower_config(home, address, root_certificates=certs.ca)
    app_dir = write_app_project(work / "app")
    run_dir = Path(run_dir).resolve()
    with ProcessSet() as procs:
        link = procs.start("superlink", superlink_argv(host=host, port=port, database=work / "superlink.db",
                                                       certs=certs), env=env, log_path=work / "superlink.log")
        link.wait_port(host, port)
        register_nodes([certs.node_pub(i) for i in range(n)], env=env)
        nodes = []
        for i in range(n):
            node_port = free_port("127.0.0.1")
            nodes.append(procs.start(f"supernode-{i}", supernode_argv(
                superlink=address, port=node_port, partition=i, num_partitions=n, ca=certs.ca,
                key=certs.node_key(i)), env=env, log_path=work / f"supernode_{i:03d}.log"))
        rc = flwr_run(app_dir, run_config_for(cfg, run_dir=str(run_dir), threads=threads or cfg.threads,
                                              stop_after=stop_after, engine="flower-deployment"),
                      env=env, log_path=work / "flwr_run.log", timeout=timeout)
        dead = [p for p in nodes if not p.running()]
        if dead:
            raise RuntimeError(f"{dead[0].name} exited with code {dead[0].popen.returncode}:\n{dead[0].log_tail()}")
    complete = RunLayout(run_dir).summary.is_file()
    return DeployOutcome(run_dir=run_dir, seconds=time.perf_counter() - t0, returncode=rc, workdir=work,
                         complete=complete)
