"""Atomic file writes: a reader never sees a half-written file, even after ``kill -9``.

Each write goes to a temporary file in the same folder, is flushed and fsynced, then renamed over the
target with ``os.replace`` (atomic on POSIX). The file gets the mode a plain ``open`` would give it (0o666 less the
umask): ``tempfile.mkstemp`` alone makes it 0o600, which would hide a shared results folder from the rest of a team.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..jsonsafe import dumps_json, json_safe

__all__ = ["json_safe", "new_file_mode", "temp_file", "write_bytes", "write_text", "write_json", "torch_save",
           "torch_load"]


def new_file_mode(*, directory: bool = False) -> int:
    """The mode ``open(path, "w")`` gives a new file (``directory``: ``mkdir`` a new folder): 0o666 (0o777) less the
    process's umask, read from /proc/self/status where Linux has it, so the umask is never changed; elsewhere set
    and restored at once."""
    full = 0o777 if directory else 0o666
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return full & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return full & ~mask


def temp_file(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``folder``, with the mode of a plainly opened file (:func:`new_file_mode`) so that
    the file renamed over its target is as readable as one written in place. Returns (fd, path)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, new_file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically. An OSError (a full disk, a read-only folder) names ``path``, not the
    temporary file (a failed write names none)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path.parent, f".{path.name}.", ".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and str(exc.filename) != str(path.parent):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # the folder's own fault keeps its name
        raise


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    """Always valid JSON (:func:`fedsafe.jsonsafe.json_safe`), written atomically."""
    write_text(path, dumps_json(obj, indent=2) + "\n")


def torch_save(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def torch_load(path: str | Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)
