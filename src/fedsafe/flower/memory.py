"""Peak memory of a process tree (proportional set size from /proc/*/smaps_rollup), sampled while it runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PeakMemory", "tree_pss_bytes"]


from .processes import children


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
        stack += children(p)
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


