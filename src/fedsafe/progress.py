"""Progress reporting without a console: library code calls a callback, the CLI draws rich bars.

A ``Progress`` callback receives (step name, completed, total). ``None`` means no reporting.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "report"]

Progress = Callable[[str, int, int], None]


def report(progress: Progress | None, step: str, completed: int, total: int) -> None:
    """Call ``progress`` if there is one."""
    if progress is not None:
        progress(step, completed, total)
