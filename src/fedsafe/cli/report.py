"""``fedsafe report DIR -o report.html``: one self-contained HTML file (no network needed to read it)."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import console, fail

app = typer.Typer()


@app.command()
def report(
    path: Path = typer.Argument(..., help="A results directory (fedsafe reproduce / demo), one reproduction's "
                                          "folder, or a run directory (fedsafe train)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="The HTML file to write."),
) -> None:
    """Tables beside the papers' numbers, figures, verdicts, ASR heat-maps and the setup, in one HTML file."""
    from ..report.html import write_report

    try:
        written = write_report(path, output)
    except (FileNotFoundError, ValueError) as e:
        raise fail(" ".join(str(e).split())) from None
    console.print(f"report: {written} ({written.stat().st_size / 1e6:.1f} MB, self-contained)", highlight=False)
