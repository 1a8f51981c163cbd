"""Process-wide settings the ``fedsafe`` command makes at start-up (never the library: they belong to whoever owns
the process), and the command's last word on an operating-system error.

The glibc allocator: a CNN's activations of 41 MiB and more lie above glibc's dynamic mmap threshold, so every
forward/backward pass maps, page-faults and unmaps them (measured: ~70,000 page faults and 25-31% system time a PGD
step at the cpu profile, batch 100). Keeping freed blocks in the heap (``M_MMAP_THRESHOLD`` 1 GiB) and never trimming
it (``M_TRIM_THRESHOLD``) removes that: ~1.55x faster attack steps, system time ~0 (``benchmarks/bench_attacks.py``,
section 5). The price: the heap's peak is not returned to the OS before the process exits. Set
``FEDSAFE_DEFAULT_MALLOC=1`` to keep glibc's defaults.

OS errors: a full disk, a read-only folder, a run directory that is a file... reach the user as one line naming the
path and the cause (:func:`os_error_line`), from every sub-command (:class:`OneLineErrors`, the command group), never
as a traceback; so do the sub-commands' usage errors (exit code 2, click's convention). A broken pipe is no error:
``fedsafe ... | head`` ends quietly, exit code 141 (128 + SIGPIPE), as Unix tools do.

>>> import errno
>>> os_error_line(OSError(errno.ENOSPC, "No space left on device", "runs/a/summary.json"))
'runs/a/summary.json: no space left on the device (disk full)'
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
from typing import Any

import click
from click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from .console import broken_pipe_exit, fail, usage_error

__all__ = ["OneLineErrors", "os_error_line", "tune_glibc_malloc"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

_CAUSES = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "exists and is not a folder",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EIO: "input/output error (a failing disk or a lost network share?)",
}


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


def os_error_line(exc: OSError) -> str:
    """``"<path>: <cause>"`` for an OSError (its second path too, for a rename), the cause in words."""
    cause = _CAUSES.get(exc.errno, exc.strerror or str(exc)) if exc.errno is not None else str(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else cause


class OneLineErrors(TyperGroup):
    """The ``fedsafe`` command group: an OSError from any sub-command ends in one line (:func:`os_error_line`)
    and exit code 1, like every other error the commands name while running; a sub-command's usage error (a value
    its option does not accept, a missing argument) in one line and exit code 2; a Flower command without the
    ``[flower]`` extra in one line naming it. A broken pipe on standard output (``fedsafe ... | head``) ends
    quietly, the group's own version too (:func:`~fedsafe.cli.console.broken_pipe_exit`: exit code 141, where
    click would exit 1; help, drawn by typer's own rich console, ends quietly with rich's exit code 1)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except BrokenPipeError:
            raise broken_pipe_exit() from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
            raise usage_error(" ".join(exc.format_message().split()) + where) from None
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "flwr":
                raise
            raise fail(f"this command needs Flower ({exc.name} is missing): pip install 'fedsafe[flower]'") from None
        except BrokenPipeError:
            raise broken_pipe_exit() from None
        except OSError as exc:
            raise fail(" ".join(os_error_line(exc).split())) from None
