"""Atomic file writes: a reader never sees a half-written file, even after ``kill -9``.

Each write goes to a temporary file in the same folder, is flushed and fsynced, then renamed over the
target with ``os.replace`` (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

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


def json_safe(o: Any) -> Any:
    """``o`` with every value JSON can hold: NaN becomes null and +-inf the strings "inf" / "-inf" (JSON has
    neither), arrays and tensors lists, paths strings."""
    if isinstance(o, float):
        if math.isnan(o):
            return None
        if math.isinf(o):
            return "inf" if o > 0 else "-inf"
        return o
    if isinstance(o, dict):
        return {str(k) if not isinstance(k, str) else k: json_safe(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [json_safe(v) for v in o]
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return json_safe(o.tolist())
    return o


def write_json(path: str | Path, obj: Any) -> None:
    """Always valid JSON (:func:`json_safe`), written atomically."""
    write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def torch_save(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def torch_load(path: str | Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)
