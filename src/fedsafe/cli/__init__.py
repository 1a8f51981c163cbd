"""The ``fedsafe`` command. Sub-commands live one module a concept in this package; the group lists them from
:data:`fedsafe.cli.commands.SUBCOMMANDS` and imports a module only when its command runs, so ``fedsafe --help``
and ``fedsafe --version`` answer without importing torch."""

from __future__ import annotations

import typer

from .. import __version__
from .commands import LazyGroup
from .console import set_verbosity
from .runtime import tune_glibc_malloc

app = typer.Typer(cls=LazyGroup, help="fedsafe: attack and defend federated learning on medical images.",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  pretty_exceptions_enable=False, add_completion=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fedsafe {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False, metavar="",
                                help="Show the library's log (-v: progress notes such as resuming; -vv: debug)."),
) -> None:
    set_verbosity(verbose)


def main() -> None:
    tune_glibc_malloc()  # process-wide: ~1.5x faster CPU passes (see fedsafe.cli.runtime)
    app(prog_name="fedsafe")
