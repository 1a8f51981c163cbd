"""Explicit, independent random streams derived from one root seed.

Every random draw in fedsafe comes from a generator made here for one *purpose* and a key
(round, client, ...). Streams are derived with :class:`numpy.random.SeedSequence` spawn keys, so:

* the same (root, purpose, key) always gives the same stream (any round can be replayed);
* adding a client (a new key) changes no other client's stream;
* no global RNG (``random``, ``np.random``, ``torch`` default generator) is ever touched.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["purpose_id", "seed_for", "numpy_rng", "torch_generator"]


def purpose_id(purpose: str) -> int:
    """A stable 32-bit integer for a purpose name (Python's ``hash`` is salted per process)."""
    if not purpose:
        raise ValueError("purpose must be a non-empty string")
    return int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:4], "little")


def _sequence(root: int, purpose: str, key: tuple[int, ...]) -> np.random.SeedSequence:
    if root < 0:
        raise ValueError(f"seed must be >= 0, got {root}")
    if any(k < 0 for k in key):
        raise ValueError(f"seed keys must be >= 0, got {key}")
    return np.random.SeedSequence(entropy=root, spawn_key=(purpose_id(purpose), *key))


def seed_for(root: int, purpose: str, *key: int) -> int:
    """A 63-bit integer seed for (root, purpose, key)."""
    return _state64(_sequence(root, purpose, key))


def _state64(seq: np.random.SeedSequence) -> int:
    lo, hi = seq.generate_state(2, dtype=np.uint32)
    return ((int(hi) << 32) | int(lo)) & ((1 << 63) - 1)


def numpy_rng(root: int, purpose: str, *key: int) -> np.random.Generator:
    """A numpy Generator for (root, purpose, key)."""
    return np.random.default_rng(_sequence(root, purpose, key))


def torch_generator(root: int, purpose: str, *key: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch Generator for (root, purpose, key)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed_for(root, purpose, *key))
    return g
