"""The ``fedsafe`` command. Sub-commands live one module a concept in this package."""

from __future__ import annotations

import typer

from . import attack as _attack
from . import audit as _audit
from . import data as _data
from . import demo as _demo
from . import flower as _flower
from . import privacy as _privacy
from . import report as _report
from . import reproduce as _reproduce
from . import train as _train
from .runtime import OneLineErrors, tune_glibc_malloc

app = typer.Typer(cls=OneLineErrors, help="fedsafe: attack and defend federated learning on medical images.",
                  no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(_data.app, name="data", help="Read, check and download the data sets.")
app.registered_commands += _train.app.registered_commands
app.registered_commands += _attack.app.registered_commands
app.registered_commands += _audit.app.registered_commands
app.registered_commands += _reproduce.app.registered_commands
app.registered_commands += _report.app.registered_commands
app.registered_commands += _demo.app.registered_commands
app.add_typer(_privacy.app, name="privacy", help="Differential-privacy calibration and accounting (NbAFL).")
app.add_typer(_flower.app, name="flower", help="Run on Flower: simulation, or TLS-authenticated SuperLink/SuperNodes.")


def main() -> None:
    tune_glibc_malloc()  # process-wide: ~1.5x faster CPU passes (see fedsafe.cli.runtime)
    app()
