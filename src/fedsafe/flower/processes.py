"""Flower processes started and stopped by PID: every process in its own session (process group), stopped with
SIGTERM to its group then SIGKILL after a grace period; :class:`ProcessSet` stops all it started in reverse order
(nodes before the link), also when an exception leaves the block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FlowerProcess", "ProcessSet", "alive", "children", "descendants", "run_command"]

log = logging.getLogger(__name__)


def run_command(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 120.0,
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



# -- process trees (Linux /proc) ------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    """The PIDs of all live descendants of ``pid`` (Linux ``/proc``), children before grandchildren."""
    out, stack = [], children(pid)
    while stack:
        p = stack.pop(0)
        if p not in out:
            out.append(p)
            stack += children(p)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")



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
        while (left := [p for p in family if alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in left:
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


