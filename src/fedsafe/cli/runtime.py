"""Process-wide settings the ``fedsafe`` command makes at start-up (never the library: they belong to whoever owns
the process).

The glibc allocator: a CNN's activations of 41 MiB and more lie above glibc's dynamic mmap threshold, so every
forward/backward pass maps, page-faults and unmaps them (measured: ~70,000 page faults and 25-31% system time a PGD
step at the cpu profile, batch 100). Keeping freed blocks in the heap (``M_MMAP_THRESHOLD`` 1 GiB) and never trimming
it (``M_TRIM_THRESHOLD``) removes that: ~1.55x faster attack steps, system time ~0 (``benchmarks/bench_attacks.py``,
section 5). The price: the heap's peak is not returned to the OS before the process exits. Set
``FEDSAFE_DEFAULT_MALLOC=1`` to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["tune_glibc_malloc"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_glibc_malloc(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1) -> bool:
    """Keep freed blocks below ``mmap_threshold`` bytes in the heap and never trim it (glibc ``mallopt``); False
    where this is not glibc, the user opted out, or glibc refused."""
    if os.environ.get("FEDSAFE_DEFAULT_MALLOC") or platform.system() != "Linux":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                            trim_threshold))
    except (OSError, AttributeError):
        return False
