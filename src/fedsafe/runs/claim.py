"""Which folders a run may be written into, and the exclusive hold of one.

A run directory is new, empty, or a fedsafe run: the store writes the marker ``RUN/.fedsafe-run`` first, before
any other file. Any other folder (one holding files without the marker, the current folder, a data folder, a
folder inside another run) is refused with a one-line :class:`RunDirRefused` naming it, and nothing in it is
touched. A run written before the marker existed (a *legacy* run) is recognised by the header every run writes
before round 1 (``config.yaml``, ``data_report.json`` and ``splits.json``) and gets its marker when it is next
held.

The store deletes only temporary files it names itself: the ``.<name>.<random>.tmp`` files of the atomic writes
(:mod:`fedsafe.runs.atomic`) of the files the layout names (:mod:`fedsafe.runs.layout`), in the folders the
layout names; never a file of another name or one in another folder.

Example::

    with hold("runs/exp"):
        ...  # write the run
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from .atomic import write_json
from .errors import RunDirRefused, RunLockedError
from .layout import ATTACKS, AUDIT, HEADER, LOCK, MARKER, MODELS, ROOT_FILES

__all__ = ["MARKER_FORMAT", "clean_own_tmp", "hold", "inspect", "is_run", "own_tmp_files"]

log = logging.getLogger(__name__)

MARKER_FORMAT = 1
"""The format of the marker (``RUN/.fedsafe-run``, written first into every run directory)."""
_R = r"\.[A-Za-z0-9_]+\.tmp"  # mkstemp's random part, then .tmp
_OWN_TMP = {
    ".": re.compile(r"\.(?:" + "|".join(re.escape(n) for n in ROOT_FILES) + ")" + _R),
    f"{MODELS}/global": re.compile(r"\.round_\d{4}\.pt" + _R),
    f"{MODELS}/final": re.compile(r"\.client_\d{3}\.pt" + _R),
    f"{MODELS}/received/round_*": re.compile(r"\.client_\d{3}\.pt" + _R),
    ATTACKS: re.compile(r"\.[A-Za-z0-9_.=+-]+\.(?:json|csv|md|html|png|svg)" + _R),
    AUDIT: re.compile(r"\.[A-Za-z0-9_.=+-]+\.(?:json|csv|md|html|png|svg)" + _R),
}


def _is_marker(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("kind") == "fedsafe-run"
    except (OSError, UnicodeError, ValueError, AttributeError):
        return False


def is_run(root: Path) -> bool:
    """Whether ``root`` is a fedsafe run directory: its marker, or the header of a legacy run."""
    return (root / MARKER).is_file() or all((root / n).is_file() for n in HEADER)


def own_tmp_files(root: str | Path) -> list[Path]:
    """The stale temporary files of the run's own atomic writes under ``root`` (module docstring)."""
    root = Path(root)
    out = []
    for folder, pattern in _OWN_TMP.items():
        for d in (sorted(root.glob(folder)) if "*" in folder else [root / folder]):
            if d.is_dir() and not d.is_symlink():
                out += [p for p in sorted(d.iterdir()) if pattern.fullmatch(p.name) and p.is_file()]
    return out


def clean_own_tmp(root: str | Path) -> int:
    """Delete the run's stale temporary files (:func:`own_tmp_files`); returns how many."""
    n = 0
    for p in own_tmp_files(root):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    if n:
        log.info("%s: removed %d stale temporary file(s)", root, n)
    return n


def _enclosing_run(root: Path) -> Path | None:
    for parent in root.resolve().parents:
        if (parent / MARKER).is_file() and _is_marker(parent / MARKER):
            return parent
    return None


def inspect(root: str | Path) -> str:
    """``"new"`` (no such folder), ``"empty"``, ``"run"`` (marked) or ``"legacy"`` (a run of before the marker);
    RunDirRefused (one line naming the folder) for anything else."""
    root = Path(root)
    if str(root) == "":
        raise RunDirRefused("the run directory is an empty path: give -o a folder")
    outer = _enclosing_run(root)
    if outer is not None:
        raise RunDirRefused(f"{root}: is inside the fedsafe run {outer}: a run directory cannot hold another run; "
                            "choose a folder outside it")
    if not root.exists():
        return "new"
    if not root.is_dir():
        raise RunDirRefused(f"{root}: exists and is not a folder; choose another run directory")
    marker = root / MARKER
    if marker.exists():
        if not _is_marker(marker):
            raise RunDirRefused(f"{marker}: not a fedsafe run marker (damaged or foreign); nothing in {root} was "
                                "touched")
        return "run"
    own = {LOCK} | {p.name for p in own_tmp_files(root) if p.parent == root}
    others = sorted(p.name for p in root.iterdir() if p.name not in own)
    if not others:
        return "empty"
    if is_run(root):
        return "legacy"
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    raise RunDirRefused(f"{root}: not empty and not a fedsafe run directory (holds {shown}); a run is written "
                        "only into a new or empty folder or its own run directory: choose another -o "
                        "(nothing in it was touched)")


def _mark(root: Path, state: str) -> None:
    if state == "legacy":
        log.info("%s: a run written before run markers existed (recognised by its %s); marked as a fedsafe run",
                 root, ", ".join(HEADER))
    write_json(root / MARKER, {"kind": "fedsafe-run", "format": MARKER_FORMAT})


def _acquire(root: Path, *, wait: float, poll: float) -> int:
    """An open descriptor of ``RUN/.lock`` holding its exclusive ``flock``: the file the path names now (a holder
    that removed it on release leaves the next one to a fresh file)."""
    path = root / LOCK
    deadline = time.monotonic() + wait
    while True:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if time.monotonic() >= deadline:
                raise RunLockedError(f"{root}: in use by another fedsafe process (pid {holder}); wait for it to "
                                     "finish or choose another run directory") from None
            log.info("%s: waiting for pid %s, which holds the run", root, holder)
            time.sleep(poll)
            continue
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _only_claim(root: Path) -> bool:
    """Whether ``root`` holds nothing but the marker and the lock (the run wrote nothing)."""
    try:
        return {p.name for p in root.iterdir()} <= {MARKER, LOCK}
    except OSError:
        return False


@contextlib.contextmanager
def hold(root: str | Path, *, wait: float = 0.0, poll: float = 5.0) -> Iterator[None]:
    """Hold the run directory ``root`` exclusively for the block (``RUN/.lock``, an advisory ``flock``).

    Refuses a folder that is not new, empty or a run (:func:`inspect`) before touching anything; writes the marker;
    removes the run's own stale temporary files. Another holder: wait up to ``wait`` seconds for it (0: refuse at
    once), then RunLockedError naming its pid. A block that wrote nothing (it failed before the run's first file:
    an unknown task, missing data) leaves nothing behind: the marker and the lock go, and the folder if it was new.
    """
    root = Path(root)
    created = inspect(root) == "new"
    fd = _acquire(root, wait=wait, poll=poll)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        state = inspect(root)  # another process may have written it while we waited
        if state != "run":
            _mark(root, state)
        clean_own_tmp(root)
        yield
    finally:
        try:
            if _only_claim(root):
                for name in (MARKER, LOCK):
                    with contextlib.suppress(OSError):
                        (root / name).unlink()
                if created:
                    with contextlib.suppress(OSError):
                        root.rmdir()
        finally:
            os.close(fd)  # closing the descriptor releases the lock
