"""The fingerprint of the data a run trained on (``RUN/data_fingerprint.json``), and what changed since.

A run's config does not pin its data: ``task.data_root`` may be unset (the default folders are looked up at run
time) and a folder's files may change. The fingerprint records what the run really read: the resolved data root,
the preprocessing, and one short hash per image used (its id, which is the content hash of its source file for
real data, its label and its decoded pixels), sorted. A resume, an attack or an audit on data whose fingerprint
differs is refused, saying what changed (:func:`data_changes`). The same images under another root are the same
data.

Example::

    fp = fingerprint(root=None, source="synthetic", synthetic=True, preprocessing={"size": 16},
                     images=[("synthetic:0", 1, b"\\x00" * 256)])
    assert data_changes(fp, fp) is None
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FINGERPRINT_FORMAT", "data_changes", "fingerprint", "image_digest"]

FINGERPRINT_FORMAT = 1


def image_digest(image_id: str, label: int, pixels: bytes) -> str:
    """16 hex digits of sha256 over (id, label, the decoded pixels as bytes)."""
    h = hashlib.sha256(f"{image_id}\0{int(label)}\0".encode())
    h.update(pixels)
    return h.hexdigest()[:16]


def fingerprint(*, root: str | None, source: str, synthetic: bool, preprocessing: Mapping[str, Any],
                images: Iterable[tuple[str, int, bytes]]) -> dict[str, Any]:
    """The fingerprint (a JSON object) of the images ``(id, label, pixel bytes)`` read from ``root``."""
    entries = sorted(image_digest(i, y, p) for i, y, p in images)
    return {"format": FINGERPRINT_FORMAT, "root": root, "source": source, "synthetic": synthetic,
            "preprocessing": dict(preprocessing), "images": len(entries),
            "sha256": hashlib.sha256("\n".join(entries).encode()).hexdigest(), "entries": entries}


def _images(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    if old.get("sha256") == new.get("sha256"):
        return None
    a, b = set(old.get("entries") or []), set(new.get("entries") or [])
    gone, added = len(a - b), len(b - a)
    if gone == added:
        return f"{gone} image(s) differ"
    return f"{gone} of its {len(a)} images are missing or changed, {added} are new"


def data_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """None when ``new`` is the data of ``old`` (the same images, preprocessed the same way; the root may have
    moved), else what changed in words, e.g. ``3 image(s) differ (root /x -> /y)``."""
    parts = []
    images = _images(old, new)
    if images:
        parts.append(images)
    po, pn = old.get("preprocessing") or {}, new.get("preprocessing") or {}
    parts += [f"preprocessing {k} {po.get(k)!r} -> {pn.get(k)!r}" for k in sorted(set(po) | set(pn))
              if po.get(k) != pn.get(k)]
    if not parts:
        return None
    if old.get("root") != new.get("root"):
        parts.append(f"root {old.get('root') or old.get('source')} -> {new.get('root') or new.get('source')}")
    return parts[0] + (f" ({'; '.join(parts[1:])})" if len(parts) > 1 else "")
