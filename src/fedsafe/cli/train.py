"""``fedsafe train``: train a federation from a config into a run directory (resumes if interrupted)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..config import ConfigError, load_config
from ..data.tasks import TASKS
from .choices import OUTPUT, choice, output_dir, profile_choice
from .console import console, fail, out, progress_bars, usage_error

app = typer.Typer(add_completion=False)  # completion is the fedsafe group's (--install-completion)


def _fmt(x: object) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, float) else str(x)


@app.command()
def train(
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (over the profile)."),
    profile: str = typer.Option(None, "--profile", "-p", click_type=profile_choice(),
                                help="The shipped profile (default: the config's, else cpu)."),
    task: str = typer.Option(None, "--task", "-t", click_type=choice(TASKS), help="Shortcut for --set task.name=..."),
    data_root: str = typer.Option(None, "--data-root", help="Shortcut for --set task.data_root=..."),
    run_dir: str = typer.Option(None, *OUTPUT, "--run-dir", click_type=output_dir(),
                                help="The run directory to write (default runs/<task>-<profile>-<hash>)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="key=value overrides, e.g. train.rounds=5"),
    stop_after: int = typer.Option(None, "--stop-after", min=1, help="Stop after this round (resume later)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (shortcut for train.device)."),
) -> None:
    """Train a federation; a killed run restarts from its last completed round."""
    from ..config import config_hash
    from ..training.trainer import torch_threads
    from ..training.trainer import train as run_train

    overrides = list(set_)
    if task:
        overrides.append(f"task.name={task}")
    if data_root:
        overrides.append(f"task.data_root={data_root}")
    if device:
        overrides.append(f"train.device={device}")
    try:
        cfg = load_config(config, profile=profile, overrides=overrides)
    except ConfigError as e:
        raise fail(str(e)) from None
    if run_dir is not None and not run_dir.strip():
        raise usage_error(f"-o/--output is an empty path ({run_dir!r}): give the folder of the run")
    default = Path("runs") / f"{cfg.task.name}-{cfg.profile}-{config_hash(cfg)[:10]}"
    rd = Path(run_dir) if run_dir is not None else default
    try:
        with torch_threads(cfg.threads), progress_bars() as prog:
            outcome = run_train(cfg, rd, progress=prog, stop_after=stop_after)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise fail(str(e)) from None
    if outcome.skipped:
        console.print(f"{rd} is already complete: nothing to do.")
        return
    res = outcome.result
    assert res is not None
    label = " \\[synthetic]" if outcome.data.synthetic else ""
    tab = Table(title=f"{outcome.data.task}{label} - profile {cfg.profile}")
    tab.add_column("round")
    tab.add_column("global acc")
    for i in range(outcome.data.num_clients):
        tab.add_column(f"client {i} (received)")
    for m in res.metrics:
        if "global_acc" in m:
            tab.add_row(str(m["round"]), _fmt(m["global_acc"]), *[_fmt(a) for a in m["client_received_acc"]])
    out.print(tab)
    if stop_after is None:
        console.print(f"final client models: {', '.join(_fmt(a) for a in res.metrics[-1]['client_final_acc'])} "
                      "(each on its own test set)")
    console.print(f"run directory: {rd}  ({outcome.seconds:.1f} s)")
