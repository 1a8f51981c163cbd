"""The audit data set of a recorded Flower run (``fedsafe audit RUN --data FILE.npz``): the data stayed with the
clients, so the user names it. One ``.npz`` file (numpy, no pickles), every set as images ``*_x`` and integer
labels ``*_y``:

    test_x_<i>, test_y_<i>     client i's attack/test set: what insider i perturbs, where every client is scored
    train_x_<i>, train_y_<i>   client i's training images: its members for membership inference, and insider
                               i's own data for its shadow models
    heldout_x, heldout_y       images no client trained on: the non-members (and the global model's accuracy)
    server_x, server_y         the server's own images, none of them a candidate: its shadow models' data
    class_names (optional)     one string a class

for every client i = 0..N-1. Images are float (N, C, H, W) in [0, 1] or uint8 (N, H, W, C) / (N, C, H, W);
square, one size and channel count for all. ``train_*`` and ``server_*`` may be left out with ``--no-membership``.
A missing or malformed array is a one-line error naming the file and the key.

Example::

    np.savez("audit.npz", test_x_0=..., test_y_0=..., train_x_0=..., ..., heldout_x=..., server_x=..., ...)
    data = load_audit_data("audit.npz")
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.types import DataReport
from ..federation.federated_data import FederatedData, Split

__all__ = ["AuditDataError", "audit_data_from_arrays", "describe", "load_audit_data"]


class AuditDataError(ValueError):
    """The audit data file is missing, unreadable, or an array in it is malformed (one line, naming it)."""


def _images(x: np.ndarray, where: str) -> torch.Tensor:
    if x.ndim != 4:
        raise AuditDataError(f"{where}: images must be 4-D (N, C, H, W) or (N, H, W, C), got shape {x.shape}")
    if x.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(x))
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            t = t.permute(0, 3, 1, 2)
        return t.float().div_(255.0).contiguous()
    if not np.issubdtype(x.dtype, np.floating):
        raise AuditDataError(f"{where}: images must be uint8 or float in [0, 1], got {x.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not bool(torch.isfinite(t).all()) or (t.numel() and (t.min() < 0 or t.max() > 1)):
        raise AuditDataError(f"{where}: float images must be finite pixels in [0, 1]")
    return t


def _split(arrays: dict[str, np.ndarray], name: str, origin: str, *, required: bool, like: torch.Tensor | None
           ) -> Split | None:
    kx = f"{name}_x" if name in ("heldout", "server") else f"{name.split('_')[0]}_x_{name.split('_')[1]}"
    ky = kx.replace("_x", "_y", 1)
    if kx not in arrays or ky not in arrays:
        if required:
            raise AuditDataError(f"{origin}: missing {kx if kx not in arrays else ky}")
        return None
    x = _images(arrays[kx], f"{origin}: {kx}")
    y = arrays[ky]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
        raise AuditDataError(f"{origin}: {ky} must be {len(x)} integer labels, got shape {y.shape} {y.dtype}")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise AuditDataError(f"{origin}: {kx} has images of shape {tuple(x.shape[1:])}, {tuple(like.shape[1:])} "
                             "elsewhere")
    if x.shape[-1] != x.shape[-2]:
        raise AuditDataError(f"{origin}: {kx}: images must be square, got {tuple(x.shape[-2:])}")
    return Split(x=x, y=torch.from_numpy(y.astype(np.int64)), ids=tuple(f"{kx}[{j}]" for j in range(len(x))))


def audit_data_from_arrays(arrays: dict[str, np.ndarray], *, origin: str = "audit data", membership: bool = True,
                           name: str = "audit-data") -> FederatedData:
    """The federation's sets from the arrays of the module docstring (``origin`` names them in errors)."""
    clients = sorted({int(m.group(1)) for k in arrays if (m := re.fullmatch(r"test_x_(\d+)", k))})
    if not clients:
        raise AuditDataError(f"{origin}: no client attack sets (test_x_0, test_y_0, ...)")
    if clients != list(range(len(clients))):
        raise AuditDataError(f"{origin}: client sets must be numbered 0..N-1, got {clients}")
    held = _split(arrays, "heldout", origin, required=True, like=None)
    assert held is not None
    test = [_split(arrays, f"test_{i}", origin, required=True, like=held.x) for i in clients]
    train = [_split(arrays, f"train_{i}", origin, required=membership, like=held.x) for i in clients]
    server = _split(arrays, "server", origin, required=membership, like=held.x)
    empty = Split(x=held.x[:0], y=held.y[:0], ids=())
    labels = torch.cat([held.y, *(s.y for s in test if s is not None)])
    if labels.min() < 0:
        raise AuditDataError(f"{origin}: labels must be >= 0")
    k = int(labels.max()) + 1
    if "class_names" in arrays:
        names = tuple(str(c) for c in arrays["class_names"])
        if len(names) < k:
            raise AuditDataError(f"{origin}: class_names names {len(names)} classes, the labels use {k}")
    else:
        names = tuple(f"class {c}" for c in range(max(k, 2)))
    sets = {"heldout": held, "server": server, **{f"test {i}": s for i, s in enumerate(test)},
            **{f"train {i}": s for i, s in enumerate(train)}}
    report = DataReport(task=name, source=origin, synthetic=False)
    report.notes.append("audit data of a recorded Flower run: " + ", ".join(
        f"{k} {len(v)}" for k, v in sets.items() if v is not None))
    return FederatedData(task=name, class_names=names, synthetic=False,
                         client_train=tuple(s or empty for s in train), client_test=tuple(test),  # type: ignore[misc]
                         server=server or empty, global_test=held, report=report)


def load_audit_data(path: str | Path, *, membership: bool = True) -> FederatedData:
    """Read the ``.npz`` audit data set at ``path`` (module docstring); AuditDataError (one line) otherwise."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise AuditDataError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise AuditDataError(f"{path}: not a readable .npz file ({e.__class__.__name__})") from None
    return audit_data_from_arrays(arrays, origin=str(path), membership=membership, name=path.stem)


def describe(data: FederatedData, path: str | Path | None = None) -> dict[str, Any]:
    """What the audit used, for its report: the file (and its sha256), the sets and their sizes."""
    out: dict[str, Any] = {
        "file": str(path) if path is not None else None,
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest() if path is not None else None,
        "insider_data": [f"test_x_{i} ({len(s)} images)" for i, s in enumerate(data.client_test)],
        "members": [f"train_x_{i} ({len(s)} images)" for i, s in enumerate(data.client_train)],
        "nonmembers": f"heldout_x ({len(data.global_test)} images)",
        "server_shadow_data": f"server_x ({len(data.server)} images)",
        "classes": list(data.class_names), "image_size": data.image_size, "channels": data.in_channels,
    }
    return out
