"""``fedsafe report DIR -o FOLDER``: one self-contained HTML file, ``FOLDER/report.html`` (no network needed to read
it); ``--html FILE`` names the file instead."""

from __future__ import annotations

from pathlib import Path

import click
import typer

from .choices import OUTPUT, output_dir
from .console import console, fail, usage_error

app = typer.Typer(add_completion=False)  # completion is the fedsafe group's (--install-completion)

REPORT_NAME = "report.html"
"""The report's file name in the ``-o/--output`` folder."""


def report_path(output: Path | None, html: Path | None) -> Path:
    """The file the report goes to: ``--html FILE``, else ``report.html`` in the ``-o`` folder (default: here)."""
    if output is not None and html is not None:
        raise usage_error(f"-o/--output {output} and --html {html} both name where the report goes: give one")
    if html is not None:
        return html
    if output is not None and output.suffix.lower() in (".html", ".htm"):
        raise usage_error(f"-o/--output is the folder report.html is written into, not a file ({output}): to name "
                          f"the file, give --html {output}")
    return (output if output is not None else Path(".")) / REPORT_NAME


@app.command()
def report(
    path: Path = typer.Argument(..., help="A results directory (fedsafe reproduce / demo), one reproduction's "
                                          "folder, or a run directory (fedsafe train)."),
    output: Path = typer.Option(None, *OUTPUT, click_type=output_dir(), show_default=False,
                                help=f"The folder to write {REPORT_NAME} into (default: the current folder)."),
    html: Path = typer.Option(None, "--html", click_type=click.Path(dir_okay=False),
                              help="Write the report to this file instead (e.g. men-report.html)."),
) -> None:
    """Tables beside the papers' numbers, figures, verdicts, ASR heat-maps and the setup, in one HTML file."""
    from ..report.html import write_report

    target = report_path(output, html)
    try:
        written = write_report(path, target)
    except (FileNotFoundError, ValueError) as e:
        raise fail(" ".join(str(e).split())) from None
    console.print(f"report: {written} ({written.stat().st_size / 1e6:.1f} MB, self-contained)", highlight=False)
