"""``fedsafe reproduce NAME``: one command per table and figure of the papers (trains what is not cached).

The experiment modules are imported inside the command so that ``fedsafe --help`` starts without them; ``fedsafe
reproduce --help`` imports the registry to list every reproduction by name with one line each."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import click
import typer
from rich.markup import escape
from rich.table import Table as RichTable
from typer.core import TyperCommand

from ..config import ConfigError, TrainConfig, load_config
from ..data.tasks import TASKS
from ..defaults import ATTACK_BATCH_SIZE, ATTACK_PRECISION
from .choices import OUTPUT, choice, literal_values, output_dir, profile_choice
from .console import console, fail, out, progress_bars
from .runtime import tune_glibc_malloc

app = typer.Typer(add_completion=False)  # completion is the fedsafe group's (--install-completion)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the block, as Ctrl-C does (the process's signal handler: the CLI's)."""
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def worker_thread_count(jobs: int, cores: int | None = None) -> int:
    """Torch threads of each of ``jobs`` workers: the cores this process may use, shared out (at least 1)."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(1, cores // jobs)


_STATUS_STYLE = {"holds": "green", "does not hold": "red", "partly holds": "yellow", "partly does not hold": "yellow",
                 "mixed": "yellow", "inconclusive": "yellow", "undetermined": "dim"}


def reproductions_help(reproductions, groups) -> str:
    """The epilog of ``fedsafe reproduce --help``: every reproduction by name with its one-line title, then the
    groups (paragraphs: typer keeps one line each)."""
    width = max(len(n) for n in [*reproductions, *groups])
    lines = ["Reproductions:"]
    lines += [f"  {name.ljust(width)}  {escape(r.title)}" for name, r in reproductions.items()]
    lines += ["Groups:"] + [f"  {name.ljust(width)}  {', '.join(members)}" for name, members in groups.items()]
    return "\n\n".join(lines)


class ReproduceCommand(TyperCommand):
    """The ``reproduce`` command, whose help lists the registry (read only when the help is asked for)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from ..reproduce.reproductions import GROUPS, REPRODUCTIONS

        self.epilog = reproductions_help(REPRODUCTIONS, GROUPS)
        return super().format_help(ctx, formatter)


def print_written(written) -> None:
    """The tables, verdicts and file paths of one reproduction on one task."""
    built = written.built
    out.rule(f"{written.reproduction} — {written.task}")
    for t in built.tables:
        tab = RichTable(title=t.title, title_justify="left")
        for c in t.frame.columns:
            tab.add_column(str(c), overflow="fold")
        for row in t.frame.itertuples(index=False):
            tab.add_row(*[escape(str(v)) for v in row])
        out.print(tab)
        for n in t.notes:
            out.print(f"[dim]{escape(n)}[/]", highlight=False)
    for v in built.verdicts:
        style = _STATUS_STYLE.get(v.status.removeprefix("indicative: "), "")
        out.print(f"- {escape(v.claim)}: [bold {style}]{v.status}[/]. {escape(v.evidence)}", highlight=False)
    if built.verdicts:
        from ..verdicts.claims import RULES

        out.print(f"[dim]{escape(RULES)}[/]", highlight=False)
    out.print(f"written: {written.markdown} (and CSVs, figures, verdicts.json in {written.folder})", highlight=False)


@app.command(cls=ReproduceCommand)
def reproduce(
    name: str = typer.Argument(..., help="A reproduction or a group (listed below), or several, comma-separated."),
    task: list[str] = typer.Option(None, "--task", "-t", click_type=choice([*TASKS, "all"]),
                                   help="A task (default meningioma), or all (every paper task whose data is "
                                        "present); repeatable."),
    profile: str = typer.Option("cpu", "--profile", "-p", click_type=profile_choice(), help="The shipped profile."),
    seeds: str = typer.Option("5", "--seeds", help="The seeds, fixed before running: N for seeds 0..N-1 (default "
                                                   "0..4), or a list such as 0,1,2 (one seed k alone: k,)."),
    results: Path = typer.Option(Path("results"), *OUTPUT, "--results", click_type=output_dir(),
                                 help="The results folder to write into (runs are cached in OUTPUT/runs)."),
    quick: bool = typer.Option(False, "--quick", help="10 rounds of 1 local epoch, for smoke tests (labelled QUICK)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Extra key=value overrides, e.g. task.data_root=DIR."),
    precision: str = typer.Option(ATTACK_PRECISION, "--precision",
                                  click_type=choice(literal_values(TrainConfig, "precision")),
                                  help="Precision of the attack evaluation."),
    batch_size: int = typer.Option(ATTACK_BATCH_SIZE, "--batch-size", help="Images attacked at a time."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what it would train and cost, then stop."),
    cached_only: bool = typer.Option(False, "--cached-only",
                                     help="Write the tables, figures and verdicts from cached runs and evaluations "
                                          "alone (e.g. a newer fedsafe's texts); refuse if anything is missing."),
    unpack: list[Path] = typer.Option([], "--unpack", help="A records archive (from --pack) to merge into "
                                                           "OUTPUT/runs first: its runs and evaluations count as "
                                                           "cached (with --dry-run too: the plan then shows what "
                                                           "remains); repeatable."),
    pack: Path = typer.Option(None, "--pack", help="At the end, write the records of every run used (all but "
                                                   "the model weights: configs, summaries, attack and audit "
                                                   "records) to this .tar.gz, to merge elsewhere with --unpack."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write OUTPUT/report.html at the end."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (shortcut for train.device)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes for the trainings and attack "
                                                            "evaluations (torch threads: cores / jobs each, unless "
                                                            "threads is set; on a GPU they share it)."),
) -> None:
    """Train (or reuse) the federations a table needs, run its attacks, and write the table beside the papers'
    numbers, its figures and a verdict per claim. An interrupted run continues where it stopped."""
    from ..reproduce.execution import JobFailed, execute
    from ..reproduce.planning import expand_tasks, plan
    from ..reproduce.reproductions.base import Options, parse_seeds
    from ..runs.records import pack_records, unpack_records
    from ..training.trainer import torch_threads

    set_ = [*set_, *([f"train.device={device}"] if device else [])]
    try:
        if pack is not None and dry_run:
            raise ValueError(f"--pack {pack}: --dry-run runs nothing, so there is nothing to pack")
        options = Options(profile=profile, seeds=parse_seeds(seeds), quick=quick, overrides=tuple(set_),
                          precision=precision, batch_size=batch_size)
        tasks, skipped = expand_tasks(task or ["meningioma"], options)
        for archive in unpack:  # after the options are checked: a typo merges nothing
            done = unpack_records(archive, results / "runs")
            console.print(f"unpacked {archive}: {done.describe()}", highlight=False)
        for t, why in skipped.items():
            console.print(f"[yellow]skipping {t}:[/] {escape(why)}", highlight=False)
        threads = load_config(profile=profile, overrides=list(set_)).threads
        worker_threads = threads or worker_thread_count(jobs)
        with torch_threads(threads), progress_bars() as prog:
            names = [n.strip() for n in name.split(",") if n.strip()]
            p = plan(names, tasks=tasks, results=results, options=options, progress=prog)
            for line in p.describe(jobs=jobs):
                console.print(line, highlight=False)
            if dry_run:
                return
            if cached_only and (gaps := p.missing()):
                raise ValueError(f"--cached-only: {len(gaps)} item(s) not cached in {results / 'runs'}, e.g. "
                                 + "; ".join(gaps[:3]) + "; run without --cached-only to compute them")
            with sigterm_interrupts():  # a kill stops the workers too (execute terminates them on an interrupt)
                written = execute(p, progress=prog, jobs=jobs, threads=worker_threads, worker_setup=tune_glibc_malloc)
            if pack is not None:
                files = pack_records(p.runs, pack)
                console.print(f"packed the records of {len(p.runs)} run(s) ({files} files) into {pack}",
                              highlight=False)
    except (ConfigError, ValueError, FileNotFoundError, JobFailed) as e:
        raise fail(" ".join(str(e).split())) from None
    for w in written:
        print_written(w)
    if report:
        from ..report.html import write_report

        path = write_report(results, results / "report.html")
        console.print(f"report: {path}", highlight=False)
