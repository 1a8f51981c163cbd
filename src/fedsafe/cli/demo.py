"""``fedsafe demo``: the README's first command: a federation attacked from inside, with and without Fed-Safe.

The experiment modules are imported inside the command so that ``fedsafe --help`` starts without them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table as RichTable
from rich.text import Text

from ..config import ConfigError, load_config
from .choices import OUTPUT, output_dir
from .console import console, fail, out, progress_bars

app = typer.Typer(add_completion=False)  # completion is the fedsafe group's (--install-completion)


def _heatmaps(manifest: Path) -> None:
    for h in json.loads(manifest.read_text()).get("heatmaps", []):
        # the title on a line of its own: a table's title wraps at the table's width (4 narrow columns)
        out.print(Text(f"ASR (attacker x target): {h['title']}", style="italic"), soft_wrap=True)
        tab = RichTable()
        tab.add_column("attacker")
        for j in range(len(h["matrix"][0])):
            tab.add_column(f"client {j}", justify="right")
        for a, row in zip(h["attackers"], h["matrix"], strict=True):
            cells = ["n/a" if v is None or v != v else f"{100 * v:.0f}%" for v in row]
            cells[a] = f"[bold]{cells[a]}[/]"
            tab.add_row(f"client {a}", *cells)
        out.print(tab)


@app.command()
def demo(
    results: Path = typer.Option(Path("results"), *OUTPUT, "--results", click_type=output_dir(),
                                 help="The results folder to write into (the demo's runs, tables and report)."),
    tiny: bool = typer.Option(False, "--tiny", help="A much smaller demo (seconds; for tests, numbers meaningless)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Extra key=value overrides."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (shortcut for train.device)."),
) -> None:
    """Train plain FedAvg and Fed-Safe on the synthetic task, attack each from every client with PGD and PGD+CRN,
    print the transfer tables and write an HTML report (a few minutes on 2 CPU cores)."""
    from ..reproduce.demo_reproduction import DEMO_OVERRIDES, TINY_OVERRIDES, demo_plan, run_demo
    from ..training.trainer import torch_threads
    from .reproduce import print_written

    set_ = [*set_, *([f"train.device={device}"] if device else [])]
    size = ", ".join((*DEMO_OVERRIDES, *(TINY_OVERRIDES if tiny else ()), *set_))
    console.print(f"fedsafe demo on the embedded synthetic task (procedurally generated, not real data); profile cpu "
                  f"at demo size: {size}", highlight=False)
    try:
        threads = load_config(profile="cpu", overrides=[*DEMO_OVERRIDES, *set_]).threads
        with torch_threads(threads), progress_bars() as prog:
            p = demo_plan(results, tiny=tiny, overrides=tuple(set_), progress=prog)
            for line in p.describe()[1:]:
                console.print(line, highlight=False)
            res = run_demo(results, progress=prog, p=p)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        raise fail(" ".join(str(e).split())) from None
    print_written(res.written)
    _heatmaps(res.written.manifest)
    out.print(f"\n[bold]Report:[/] {escape(str(res.report.resolve()))}  ({res.seconds:.0f} s)", highlight=False)
    out.print("The same on real data (brain MRI; the papers' tables, ours beside theirs):\n"
              "  fedsafe data download brain-tumor-mri -o data\n"
              "  fedsafe reproduce crn-table1 --task meningioma --set task.data_root=data/brain-tumor-mri\n"
              "  fedsafe reproduce all --task meningioma      # every table and figure; prints its cost first\n"
              "  fedsafe report results -o .                  # all of them in one HTML page, ./report.html",
              highlight=False)
