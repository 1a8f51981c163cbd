"""The Flower command lines fedsafe runs: a private, offline ``FLWR_HOME``, the SuperLink and SuperNode argv, node
registration and ``flwr run``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tomli_w

from ..device import resolve_device
from .certs import CertPaths
from .processes import ProcessSet, run_command

__all__ = ["DEFAULT_SUPERLINK_PORT", "DEFAULT_SUPERNODE_PORT", "FEDERATION", "flower_bin", "flower_env", "flwr_run",
           "free_port", "register_node", "register_nodes", "superlink_argv", "supernode_argv", "write_flower_config"]

DEFAULT_SUPERLINK_PORT = 8000  # Flower's: one HTTPS port for the Fleet, Control and Runtime APIs
DEFAULT_SUPERNODE_PORT = 9094  # Flower's: each SuperNode's local ClientApp API (loopback only)
FEDERATION = "fedsafe"  # name of the SuperLink connection in the private $FLWR_HOME/config.toml


# -- environment and command lines ------------------------------------------------------------------------------
def flower_env(flwr_home: str | Path, *, threads: int | None = None, base: Mapping[str, str] | None = None
               ) -> dict[str, str]:
    """The environment of every Flower process: a private ``FLWR_HOME``, no telemetry, no update check (they
    would try to reach the internet), and the thread count of the numeric libraries when given."""
    env = dict(os.environ if base is None else base)
    env.update(FLWR_HOME=str(flwr_home), FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
               PYTHONUNBUFFERED="1")
    # Flower starts its helpers (flower-superexec, flwr-serverapp, ...) by name: this Python's bin first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if threads:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(threads)
    return env


def flower_bin(name: str) -> str:
    """The path of a Flower executable: beside this Python first (a venv not on PATH), then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Flower with pip install 'fedsafe[flower]'")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def superlink_argv(*, host: str, port: int, database: str | Path | None, certs: CertPaths | None,
                   supernode_auth: bool = True, simulation: bool = False) -> list[str]:
    """The ``flower-superlink`` command: TLS with ``certs`` (None: plaintext, for simulation on loopback only),
    node authentication, and no runtime installation of app dependencies."""
    argv = [flower_bin("flower-superlink"), "--host", host, "--port", str(port),
            "--disable-runtime-dependency-installation"]
    if database is not None:
        argv += ["--database", str(database)]
    if certs is None:
        if supernode_auth:
            raise ValueError("SuperNode authentication needs TLS: give the certificates")
        argv.append("--insecure")
    else:
        argv += ["--ssl-ca-certfile", str(certs.ca), "--ssl-certfile", str(certs.server_cert), "--ssl-keyfile",
                 str(certs.server_key)]
        if supernode_auth:
            argv.append("--enable-supernode-auth")
    if simulation:
        argv.append("--simulation")
    return argv


def supernode_argv(*, superlink: str, port: int, partition: int, num_partitions: int, ca: str | Path | None,
                   key: str | Path | None, max_retries: int | None = None, max_wait: float | None = None,
                   device: str | None = None) -> list[str]:
    """The ``flower-supernode`` command of the node holding fedsafe client ``partition``. ``ca`` None connects
    without TLS (refused by a TLS SuperLink); ``key`` None connects without a node key; ``device`` (auto, cpu,
    cuda, cuda:N) is the device this node's ClientApp trains on (default: the config's ``train.device``), so a
    hospital's GPU node and a CPU node can join one run."""
    if not 0 <= partition < num_partitions:
        raise ValueError(f"partition must be in 0..{num_partitions - 1}, got {partition}")
    node_config = f"partition-id={partition} num-partitions={num_partitions}"
    if device:
        resolve_device(device)  # a device this machine does not have fails here, not in the first round
        node_config += f' device="{device}"'
    argv = [flower_bin("flower-supernode"), "--superlink", superlink, "--port", str(port), "--node-config",
            node_config]
    argv += ["--insecure"] if ca is None else ["--root-certificates", str(ca)]
    if key is not None:
        argv += ["--auth-supernode-private-key", str(key)]
    if max_retries is not None:
        argv += ["--max-retries", str(max_retries)]
    if max_wait is not None:
        argv += ["--max-wait-time", str(max_wait)]
    return argv


def write_flower_config(flwr_home: str | Path, address: str, *, root_certificates: str | Path | None = None,
                        name: str = FEDERATION) -> Path:
    """``$FLWR_HOME/config.toml`` with one SuperLink connection ``name`` (the default): TLS with the CA
    ``root_certificates``, or plaintext when None."""
    conn: dict[str, Any] = {"address": address}
    if root_certificates is None:
        conn["insecure"] = True
    else:
        conn["root-certificates"] = str(Path(root_certificates).resolve())
    path = Path(flwr_home) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({"superlink": {"default": name, name: conn}}))
    return path


def register_node(public_key: str | Path, *, env: Mapping[str, str], connection: str = FEDERATION,
                  timeout: float = 60.0) -> str:
    """Register a SuperNode's public key with the SuperLink (``flwr supernode register``); returns its output."""
    res = run_command([flower_bin("flwr"), "supernode", "register", str(public_key), connection], env=env,
                      timeout=timeout, what=f"flwr supernode register {Path(public_key).name}")
    return res.stdout.strip()


def register_nodes(public_keys: Sequence[str | Path], *, env: Mapping[str, str], connection: str = FEDERATION,
                   timeout: float = 60.0, parallel: int = 4) -> list[str]:
    """:func:`register_node` for several keys, a few at a time (each call is a ``flwr`` process)."""

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda k: register_node(k, env=env, connection=connection, timeout=timeout),
                             public_keys))


def flwr_run(app_dir: str | Path, run_config: Mapping[str, Any], *, env: Mapping[str, str], log_path: str | Path,
             connection: str = FEDERATION, federation_config: str | None = None, timeout: float | None = None,
             on_line: Callable[[str], None] | None = None) -> int:
    """``flwr run APP CONNECTION --stream`` with ``run_config`` (written to a TOML file beside the log); returns
    the exit code. The console output goes to ``log_path``, and line by line to ``on_line`` if given.
    Raises TimeoutError after ``timeout`` seconds (the ``flwr run`` process is stopped)."""
    log_path = Path(log_path)
    rc_file = log_path.with_suffix(".run-config.toml")
    rc_file.write_text(tomli_w.dumps(dict(run_config)))
    argv = [flower_bin("flwr"), "run", str(app_dir), connection, "--stream", "--run-config", str(rc_file)]
    if federation_config:
        argv += ["--federation-config", federation_config]
    deadline = None if timeout is None else time.monotonic() + timeout
    with ProcessSet() as procs:
        p = procs.start("flwr-run", argv, env=env, log_path=log_path)
        with open(log_path, errors="replace") as follow:
            while True:
                if on_line is not None:
                    for line in follow.readlines():
                        on_line(line.rstrip("\n"))
                if not p.running():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"flwr run did not finish within {timeout:.0f} s (log: {log_path})")
                time.sleep(0.2)
            if on_line is not None:
                for line in follow.readlines():
                    on_line(line.rstrip("\n"))
        return p.wait()


