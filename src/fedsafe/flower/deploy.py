"""Running fedsafe on real Flower processes: certificates and node keys, the SuperLink and SuperNode command
lines, and starting / stopping them by PID.

Security set-up (what ``fedsafe flower certs`` makes, with openssl and ssh-keygen):

* ``ca.pem`` / ``ca.key``: a private certificate authority (keep ``ca.key`` offline);
* ``server.pem`` / ``server.key``: the SuperLink's TLS certificate, signed by the CA, with the SuperLink's
  addresses as subject alternative names (default ``IP:127.0.0.1,DNS:localhost``; add the server's public name);
* ``node_III`` / ``node_III.pub``: one ECDSA P-384 key pair per SuperNode (``ssh-keygen -t ecdsa -b 384``); the
  SuperLink runs with ``--enable-supernode-auth`` and accepts only nodes whose public key was registered
  (``flwr supernode register``). A node with another key, or without TLS, is refused.

Every process is started in its own session (process group) and stopped by its PID: SIGTERM to its group, then
SIGKILL after a grace period; :class:`ProcessSet` stops all it started in reverse order (nodes before the
link), also when an exception leaves the block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CertPaths", "make_certs", "make_node_keys", "flower_env", "flower_bin", "free_port", "FlowerProcess",
    "ProcessSet", "superlink_argv", "supernode_argv", "write_flower_config", "register_node", "register_nodes",
    "flwr_run", "tree_pss_bytes", "descendants", "PeakMemory", "deploy", "DeployOutcome", "DEFAULT_SUPERLINK_PORT",
    "DEFAULT_SUPERNODE_PORT",
]

log = logging.getLogger(__name__)

DEFAULT_SUPERLINK_PORT = 8000  # Flower's: one HTTPS port for the Fleet, Control and Runtime APIs
DEFAULT_SUPERNODE_PORT = 9094  # Flower's: each SuperNode's local ClientApp API (loopback only)
FEDERATION = "fedsafe"  # name of the SuperLink connection in the private $FLWR_HOME/config.toml


# -- certificates and keys ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertPaths:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def node_key(self, i: int) -> Path:
        return self.directory / f"node_{i:03d}"

    def node_pub(self, i: int) -> Path:
        return self.directory / f"node_{i:03d}.pub"

    def node_keys(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.directory.glob("node_*.pub"))


def _run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 120.0,
         what: str = "") -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(list(argv), env=dict(env) if env is not None else None, capture_output=True, text=True,
                             timeout=timeout, check=False)
    except FileNotFoundError:
        raise RuntimeError(f"{argv[0]} not found: {what or 'it'} needs it on PATH") from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{what or argv[0]} failed (exit {res.returncode}): {' | '.join(tail)}")
    return res


def make_certs(directory: str | Path, *, hosts: Sequence[str] = ("127.0.0.1", "localhost"), days: int = 365,
               overwrite: bool = False) -> CertPaths:
    """A CA and a SuperLink certificate signed by it (EC P-384), with ``hosts`` as subject alternative names
    (IP addresses as ``IP:``, names as ``DNS:``). Existing files are kept unless ``overwrite``."""
    paths = CertPaths(Path(directory))
    paths.directory.mkdir(parents=True, exist_ok=True)
    if paths.server_cert.is_file() and not overwrite:
        return paths
    if not hosts:
        raise ValueError("the server certificate needs at least one host name or IP address")
    san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes"]
    _run(["openssl", "req", "-x509", *ec, "-keyout", str(paths.ca_key), "-out", str(paths.ca), "-days", str(days),
          "-subj", "/CN=fedsafe federation CA", "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], what="openssl (CA)")
    csr = paths.directory / "server.csr"
    _run(["openssl", "req", *ec, "-keyout", str(paths.server_key), "-out", str(csr), "-subj", f"/CN={hosts[0]}"],
         what="openssl (server key)")
    ext = paths.directory / "server.ext"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(paths.ca), "-CAkey", str(paths.ca_key),
          "-CAcreateserial", "-out", str(paths.server_cert), "-days", str(days), "-extfile", str(ext)],
         what="openssl (server certificate)")
    for p in (paths.ca_key, paths.server_key):
        p.chmod(0o600)
    return paths


def make_node_keys(directory: str | Path, num_nodes: int, *, start: int = 0) -> list[Path]:
    """One ECDSA P-384 key pair per node (``node_III``, ``node_III.pub``); existing keys are kept."""
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    paths = CertPaths(Path(directory))
    paths.directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + num_nodes):
        key = paths.node_key(i)
        if not key.is_file():
            _run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C", f"fedsafe-node-{i}", "-f",
                  str(key)], what="ssh-keygen")
        out.append(key)
    return out


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


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
                   key: str | Path | None, max_retries: int | None = None, max_wait: float | None = None
                   ) -> list[str]:
    """The ``flower-supernode`` command of the node holding fedsafe client ``partition``. ``ca`` None connects
    without TLS (refused by a TLS SuperLink); ``key`` None connects without a node key."""
    if not 0 <= partition < num_partitions:
        raise ValueError(f"partition must be in 0..{num_partitions - 1}, got {partition}")
    argv = [flower_bin("flower-supernode"), "--superlink", superlink, "--port", str(port), "--node-config",
            f"partition-id={partition} num-partitions={num_partitions}"]
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
    import tomli_w

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
    res = _run([flower_bin("flwr"), "supernode", "register", str(public_key), connection], env=env,
               timeout=timeout, what=f"flwr supernode register {Path(public_key).name}")
    return res.stdout.strip()


def register_nodes(public_keys: Sequence[str | Path], *, env: Mapping[str, str], connection: str = FEDERATION,
                   timeout: float = 60.0, parallel: int = 4) -> list[str]:
    """:func:`register_node` for several keys, a few at a time (each call is a ``flwr`` process)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda k: register_node(k, env=env, connection=connection, timeout=timeout),
                             public_keys))


def flwr_run(app_dir: str | Path, run_config: Mapping[str, Any], *, env: Mapping[str, str], log_path: str | Path,
             connection: str = FEDERATION, federation_config: str | None = None, timeout: float | None = None,
             on_line: Callable[[str], None] | None = None) -> int:
    """``flwr run APP CONNECTION --stream`` with ``run_config`` (written to a TOML file beside the log); returns
    the exit code. The console output goes to ``log_path``, and line by line to ``on_line`` if given.
    Raises TimeoutError after ``timeout`` seconds (the ``flwr run`` process is stopped)."""
    import tomli_w

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


# -- processes ----------------------------------------------------------------------------------------------------
@dataclass
class FlowerProcess:
    """One started process, in its own process group; its output goes to ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def terminate(self) -> list[int]:
        """Send SIGTERM to the process's group; returns the descendants seen just before (see :meth:`stop`)."""
        if self.popen.poll() is not None:
            return []
        family = descendants(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        return family

    def stop(self, grace: float = 15.0, family: Sequence[int] | None = None) -> int | None:
        """SIGTERM to the process's group, SIGKILL after ``grace`` s. Flower starts its helpers in sessions of
        their own (they exit when their parent does): the descendants seen before the stop are waited for and,
        if still alive after the grace period, killed by PID."""
        family = list(family) if family is not None else self.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)
        deadline = time.monotonic() + grace
        while (alive := [p for p in family if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # anything left in its own group
        return self.popen.returncode

    def wait_port(self, host: str, port: int, timeout: float = 60.0) -> None:
        """Wait until ``host:port`` accepts connections; raise (with the log's tail) if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited with code {self.popen.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not listen on {host}:{port} within {timeout:.0f} s:\n{self.log_tail()}")


@dataclass
class ProcessSet:
    """Processes started together and stopped together, by PID, whatever happens: first all but the first one
    at once (the SuperNodes), then the first (the SuperLink); each gets ``grace`` seconds after SIGTERM (see
    :meth:`FlowerProcess.stop`)."""

    processes: list[FlowerProcess] = field(default_factory=list)
    grace: float = 15.0

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: str | Path,
              cwd: str | Path | None = None) -> FlowerProcess:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        proc = FlowerProcess(name=name, argv=list(argv), log_path=log_path, popen=popen)
        self.processes.append(proc)
        log.debug("started %s (pid %d): %s", name, popen.pid, " ".join(argv))
        return proc

    def stop_all(self) -> None:
        later = self.processes[1:]
        families = [p.terminate() for p in later]
        for p, family in zip(later, families, strict=True):
            p.stop(self.grace, family)
        if self.processes:
            self.processes[0].stop(self.grace)

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


# -- memory -----------------------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    """The PIDs of all live descendants of ``pid`` (Linux ``/proc``), children before grandchildren."""
    out, stack = [], _children(pid)
    while stack:
        p = stack.pop(0)
        if p not in out:
            out.append(p)
            stack += _children(p)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def tree_pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages split between sharers) of ``pid`` and all its descendants (Linux)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        stack += _children(p)
    return total


class PeakMemory:
    """Samples :func:`tree_pss_bytes` of the given PIDs in a background thread; ``peak`` holds the largest sum."""

    def __init__(self, pids: Sequence[int] | None = None, interval: float = 0.5) -> None:
        self.pids, self.interval, self.peak = list(pids or []), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(tree_pss_bytes(p) for p in list(self.pids)))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
    from .app import run_config_for, write_app_project

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
    complete = (run_dir / "summary.json").is_file()
    return DeployOutcome(run_dir=run_dir, seconds=time.perf_counter() - t0, returncode=rc, workdir=work,
                         complete=complete)
