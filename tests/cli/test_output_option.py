"""One meaning for ``-o``: in every command, ``-o/--output`` is the folder the command writes into (a run
directory, a results folder, the report's folder, the data folder); a single file gets a name of its own
(``report --html FILE``). The older long names (``--run-dir``, ``--results``, ``--to``) still work."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import typer
from typer.testing import CliRunner

from fedsafe.cli import app
from fedsafe.cli.commands import SUBCOMMANDS, load

TINY = ["--set", "task.image_size=16", "--set", "task.synthetic_size=300", "--set", "model.width=0.04",
        "--set", "splits.client_test_size=20", "--set", "train.local_epochs=1", "--set", "train.rounds=2",
        "--set", "train.precision=fp32"]


def flat(text: str) -> str:
    return " ".join(text.split())


def leaves(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from leaves(sub, f"{path} {name}")
    else:
        yield path, cmd


def output_problems(path: str, cmd: click.Command) -> list[str]:
    """What is wrong with ``cmd``'s ``-o`` / ``--output``: both names on one option, typed as a folder."""
    problems = []
    for p in cmd.params:
        if not {"-o", "--output"} & set(p.opts):
            continue
        if not {"-o", "--output"} <= set(p.opts):
            problems.append(f"{path}: {'/'.join(p.opts)} has -o or --output without the other")
        if not (isinstance(p.type, click.Path) and p.type.dir_okay and not p.type.file_okay):
            problems.append(f"{path}: {'/'.join(p.opts)} is {p.type!r}, not a folder")
    return problems


def every_command() -> list[tuple[str, click.Command]]:
    return [leaf for sub in SUBCOMMANDS for leaf in leaves(load(sub), f"fedsafe {sub.name}")]


def test_every_o_is_the_folder_the_command_writes_into():
    commands = every_command()
    problems = [x for path, cmd in commands for x in output_problems(path, cmd)]
    assert problems == []
    with_o = {path for path, cmd in commands if any("-o" in p.opts for p in cmd.params)}
    # the commands that write a folder have it (and the walk above saw them: the check is not vacuous)
    assert with_o == {"fedsafe train", "fedsafe reproduce", "fedsafe demo", "fedsafe report", "fedsafe data download",
                      "fedsafe flower simulate", "fedsafe flower run", "fedsafe flower deploy"}


def test_the_check_catches_an_o_of_another_kind():
    def build(*decls: str, **kw) -> click.Command:
        t = typer.Typer()

        @t.command()
        def cmd(output: str = typer.Option("x", *decls, **kw)) -> None:
            """A command."""

        return typer.main.get_command(t)

    assert output_problems("file", build("--output", "-o", click_type=click.Path(dir_okay=False)))
    assert output_problems("text", build("--output", "-o"))
    assert output_problems("alone", build("-o", click_type=click.Path(file_okay=False)))
    assert output_problems("folder", build("--output", "-o", click_type=click.Path(file_okay=False))) == []


def test_o_writes_into_the_folder_and_the_old_names_still_work(tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "-o", str(run), *TINY])
    assert r.exit_code == 0 and (run / "summary.json").is_file(), r.output
    again = CliRunner().invoke(app, ["train", "--run-dir", str(run), *TINY])  # the older name: the same run
    assert again.exit_code == 0 and "already complete" in flat(again.output), again.output

    r = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") or page.lstrip().lower().startswith("<!doctype html>")
    r = CliRunner().invoke(app, ["report", str(run), "--html", str(tmp_path / "men.html")])
    assert r.exit_code == 0 and _undated((tmp_path / "men.html").read_text()) == _undated(page), r.output


def _undated(page: str) -> str:
    """The page without its generation time (to the minute), which two reports a second apart may not share."""
    return re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} by fedsafe", "(time) by fedsafe", page)


def test_report_usage_errors_name_the_right_option(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = {("-o", str(tmp_path / "report.html")): "--html",  # the old habit: a file name after -o
             ("-o", str(tmp_path), "--html", str(tmp_path / "r.html")): "give one",
             ("-o", str(afile)): "is a file"}
    for args, says in cases.items():
        r = CliRunner().invoke(app, ["report", str(tmp_path), *args], env={"COLUMNS": "300"})
        assert r.exit_code == 2 and says in flat(r.output) and r.output.count("error:") == 1, (args, r.output)
    assert not (tmp_path / "report.html").exists() and afile.read_text() == "x"


def test_reproduce_takes_o_and_results_alike(tmp_path):
    common = ["crn-table1", "--task", "synthetic", "--quick", "--dry-run", "--set", "task.synthetic_size=150",
              "--set", "task.image_size=16"]
    outs = [CliRunner().invoke(app, ["reproduce", *common, opt, str(tmp_path / "res")]) for opt in ("-o", "--results")]
    assert [o.exit_code for o in outs] == [0, 0] and outs[0].output == outs[1].output
    assert "One seed: 1 training run(s)" in flat(outs[0].output)
