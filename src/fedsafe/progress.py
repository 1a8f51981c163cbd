"""Progress reporting without a console: library code calls a callback, the CLI draws rich bars; and how a
duration is written for a person (``duration``).

A ``Progress`` callback receives (step name, completed, total). ``None`` means no reporting.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "duration", "report"]

Progress = Callable[[str, int, int], None]


def report(progress: Progress | None, step: str, completed: int, total: int) -> None:
    """Call ``progress`` if there is one."""
    if progress is not None:
        progress(step, completed, total)


def duration(seconds: float) -> str:
    """"40 s", "12 min", "3.5 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
