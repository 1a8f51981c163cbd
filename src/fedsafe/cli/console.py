"""Console helpers shared by the sub-commands: rich progress bars and one-line errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..progress import Progress as ProgressFn

console = Console(stderr=True)
out = Console()


@contextlib.contextmanager
def progress_bars() -> Iterator[ProgressFn]:
    """A progress callback drawing one rich bar per step name."""
    bars: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as prog:

        def update(step: str, completed: int, total: int) -> None:
            if step not in bars:
                bars[step] = prog.add_task(step, total=total)
            prog.update(bars[step], completed=completed, total=total)

        yield update


def fail(message: str) -> typer.Exit:
    """Print a one-line error (never wrapped at the terminal's width) and return the exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, emoji=False, soft_wrap=True)
    return typer.Exit(code=2)
