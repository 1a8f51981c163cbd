"""Atomic file writes: a reader never sees a half-written file, even after ``kill -9``.

Each write goes to a temporary file in the same folder, is flushed and fsynced, then renamed over the
target with ``os.replace`` (atomic on POSIX).
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

__all__ = ["json_safe", "write_bytes", "write_text", "write_json", "torch_save", "torch_load"]


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically. An OSError (a full disk, a read-only folder) names ``path``, not the
    temporary file (a failed write names none)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
