"""Console helpers shared by the sub-commands: rich progress bars, one-line errors with their exit codes, and the
log handler of ``-v/--verbose``.

Exit codes follow click's convention: 2 for a usage error (a bad option, a wrong combination of options: click's own
and :func:`usage_error`), 1 for an error while running (:func:`fail`: a missing file, a bad config, a run that
cannot continue).

Tables go to standard output (:data:`out`); when it is a pipe or a file, they are laid out :data:`PIPED_WIDTH`
columns wide (or ``$COLUMNS``), not rich's default 80, and prose is not wrapped, so that ``fedsafe demo | tee log``
keeps one row a line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..progress import Progress as ProgressFn

__all__ = ["EXIT_BROKEN_PIPE", "PIPED_WIDTH", "broken_pipe_exit", "console", "fail", "out", "progress_bars",
           "set_verbosity", "usage_error"]

PIPED_WIDTH = 200
"""Width of the tables when standard output is not a terminal and ``$COLUMNS`` is unset."""

EXIT_FAILURE, EXIT_USAGE = 1, 2
EXIT_BROKEN_PIPE = 128 + 13
"""128 + SIGPIPE: what a shell reports of a Unix tool whose reader stopped reading (``yes | head``)."""


def _stdout_width() -> int | None:
    """None (rich's own choice: the terminal's width, or ``$COLUMNS``) on a terminal, :data:`PIPED_WIDTH` else."""
    if os.environ.get("COLUMNS") or sys.stdout is None or sys.stdout.isatty():
        return None
    return PIPED_WIDTH


def broken_pipe_exit() -> typer.Exit:
    """The quiet end of a command whose reader has gone (``fedsafe ... | head``), as a Unix tool's: no message,
    exit code :data:`EXIT_BROKEN_PIPE`. Standard output is pointed at /dev/null first, so that Python's flush at exit
    fails no more (Python's note on SIGPIPE, in the ``signal`` module's documentation); returns the exit to raise."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass  # standard output is no file descriptor (a test runner's capture): nothing to flush into the pipe
    return typer.Exit(code=EXIT_BROKEN_PIPE)


class _Stdout(Console):
    """rich's console, ending on a broken pipe like the rest of the command (rich's own end: exit code 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise broken_pipe_exit()


console = Console(stderr=True)
_PIPED = _stdout_width() is not None
out = _Stdout(width=_stdout_width(), soft_wrap=_PIPED)  # piped: prose on one line a paragraph, as the tools downstream
                                                        # (grep, less -S) expect


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


def _error(message: str, code: int) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, emoji=False, soft_wrap=True)
    return typer.Exit(code=code)


def fail(message: str) -> typer.Exit:
    """Print a one-line error (never wrapped at the terminal's width) and return the exit to raise: code 1, an
    error while running."""
    return _error(message, EXIT_FAILURE)


def usage_error(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise: code 2, the command line itself is wrong (a value no
    option accepts, options that do not go together)."""
    return _error(message, EXIT_USAGE)


_HANDLER: list[logging.Handler] = []  # the one handler this module installed, replaced on a second call


def set_verbosity(verbosity: int) -> None:
    """Show the library's log records on standard error through rich: warnings always, ``fedsafe``'s info records
    (e.g. "resuming from round 3 of 10") from ``-v``, its debug records from ``-vv``."""
    root = logging.getLogger()
    for handler in _HANDLER:
        root.removeHandler(handler)
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    _HANDLER[:] = [handler]
    root.addHandler(handler)
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.getLogger("fedsafe").setLevel(logging.NOTSET if verbosity <= 0 else level)  # 0: the root's level
    handler.setLevel(level)
