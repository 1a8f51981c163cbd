"""The table of ``fedsafe``'s sub-commands, and the command group that imports each one only when it runs.

``fedsafe --help`` must answer at once; the commands' modules need torch, dp-accounting, pandas or matplotlib
(seconds to import). So the group knows every sub-command by its name, the module that defines it and a one-line
summary (:data:`SUBCOMMANDS`, the only list of them), lists them from this table, and imports a module
(:func:`load`) only when its command is resolved: to run it, to print its own help, or to complete its options.
Like every import of the ``cli`` package that is deferred, it is visible to ``tests/test_architecture.py`` as a
module name in this table, which a test checks against the modules.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import click
import typer

from .console import set_verbosity
from .runtime import OneLineErrors

__all__ = ["SUBCOMMANDS", "LazyGroup", "Subcommand", "load", "verbose_option"]


@dataclass(frozen=True)
class Subcommand:
    """A sub-command: its name, the module of ``fedsafe.cli`` whose typer ``app`` defines it, and its summary.
    ``group``: the whole app is the sub-command (``fedsafe data check``), not one command of it."""

    name: str
    module: str
    summary: str
    group: bool = False


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("data", "data", "Read, check and download the data sets.", group=True),
    Subcommand("train", "train", "Train a federation; a killed run restarts from its last completed round."),
    Subcommand("attack", "attack", "Each client attacks from its own final model and test set; every client's model "
                                   "is evaluated on it."),
    Subcommand("crn-tables", "attack", "The CRN paper's Table I (ACC, AASR, time) and Table II (AETR), ours beside "
                                       "the paper's, as Markdown."),
    Subcommand("audit", "audit", "Audit a finished federation: the insider transfer matrix, membership inference, "
                                 "epsilon and clean accuracy, as one HTML page and a JSON summary in RUN/audit/."),
    Subcommand("reproduce", "reproduce", "Train (or reuse) the federations a table needs, run its attacks, and write "
                                         "the table beside the papers' numbers, its figures and a verdict per claim."),
    Subcommand("report", "report", "Tables beside the papers' numbers, figures, verdicts, ASR heat-maps and the "
                                   "setup, in one HTML file."),
    Subcommand("demo", "demo", "Train plain FedAvg and Fed-Safe on the synthetic task, attack each from every "
                               "client with PGD and PGD+CRN, print the transfer tables and write an HTML report."),
    Subcommand("privacy", "privacy", "Differential-privacy calibration and accounting (NbAFL).", group=True),
    Subcommand("flower", "flower", "Run on Flower: simulation, or TLS-authenticated SuperLink/SuperNodes.",
               group=True),
)


def _count_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        set_verbosity(value)


def verbose_option() -> click.Option:
    """``-v/--verbose`` (repeatable) on a sub-command, as on the group: ``fedsafe train -v`` = ``fedsafe -v train``."""
    return click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_count_verbosity, metavar="",
                        help="Show the library's log (-v: progress notes such as resuming; -vv: debug).")


def _with_verbose(cmd: click.Command) -> click.Command:
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _with_verbose(sub)
    elif not any("--verbose" in p.opts for p in cmd.params):
        cmd.params.append(verbose_option())
    return cmd


def load(sub: Subcommand) -> click.Command:
    """The click command of ``sub``, its module imported now."""
    module = importlib.import_module(f"{__package__}.{sub.module}")
    built = typer.main.get_command(module.app)
    if sub.group:
        built.name = sub.name
        built.help = built.help or sub.summary
        built.short_help = sub.summary
        return _with_verbose(built)
    cmd = built.commands[sub.name] if isinstance(built, click.Group) else built
    if cmd.name != sub.name:
        raise LookupError(f"fedsafe.cli.{sub.module} defines {cmd.name!r}, not {sub.name!r}")
    return _with_verbose(cmd)


class _Unloaded(click.Command):
    """What the group's help and its name completion see of a sub-command not imported yet: name and summary."""

    def __init__(self, sub: Subcommand) -> None:
        super().__init__(sub.name, short_help=sub.summary, help=sub.summary)


class LazyGroup(OneLineErrors):
    """The ``fedsafe`` group: :data:`SUBCOMMANDS` listed without importing them, each loaded when resolved."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for sub in SUBCOMMANDS:
            self.commands.setdefault(sub.name, _Unloaded(sub))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                             list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if isinstance(cmd, _Unloaded):
            cmd = self.commands[cmd.name] = load(next(s for s in SUBCOMMANDS if s.name == cmd.name))
        return name, cmd, rest
