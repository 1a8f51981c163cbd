"""The conventions of the ``fedsafe`` command: a fast ``--help`` (no torch, dp-accounting, pandas or matplotlib at
start-up), ``--version``, ``-h`` everywhere, shell completion, choices for fixed sets, exit code 1 for an error while
running and 2 for a usage error, ``-v`` showing the library's log, tables that do not wrap when piped, and the config
given by ``-c/--config`` everywhere."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys

import click
import pytest
import typer
from typer.testing import CliRunner

import fedsafe
from fedsafe.cli import app
from fedsafe.cli.commands import SUBCOMMANDS, load
from fedsafe.cli.console import PIPED_WIDTH
from fedsafe.config import PROFILES

HEAVY = ("torch", "dp_accounting", "pandas", "matplotlib", "flwr")
TINY = ["--set", "task.image_size=16", "--set", "task.synthetic_size=300", "--set", "model.width=0.04",
        "--set", "splits.client_test_size=20", "--set", "train.local_epochs=1", "--set", "train.rounds=3",
        "--set", "train.precision=fp32"]


def flat(text: str) -> str:
    return " ".join(text.split())


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_help_and_version_import_no_heavy_library():
    code = ("import sys, json; from typer.testing import CliRunner; from fedsafe.cli import app; "
            "r = [CliRunner().invoke(app, a) for a in (['--help'], ['-h'], ['--version'])]; "
            f"print(json.dumps([[x.exit_code for x in r], r[0].output, [m for m in {HEAVY!r} if m in sys.modules]]))")
    r = _python(code)
    codes, help_text, heavy = json.loads(r.stdout)
    assert codes == [0, 0, 0] and heavy == [], (codes, heavy, r.stderr)
    for sub in SUBCOMMANDS:  # every sub-command listed, with its summary, none of them imported
        assert sub.name in help_text
    # the control: running a command does import torch (the check above can fail)
    r = _python("import sys; from typer.testing import CliRunner; from fedsafe.cli import app; "
                "CliRunner().invoke(app, ['train', '-h']); print('torch' in sys.modules)")
    assert r.stdout.strip() == "True", r.stderr


def test_version_prints_the_installed_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output == f"fedsafe {importlib.metadata.version('fedsafe')}\n"
    assert fedsafe.__version__ == importlib.metadata.version("fedsafe")


@pytest.mark.parametrize("args", [[s.name] for s in SUBCOMMANDS] + [["data", "check"], ["privacy", "account"],
                                                                      ["flower", "simulate"]], ids=" ".join)
def test_dash_h_is_help_everywhere(args):
    r = CliRunner().invoke(app, [*args, "-h"])
    assert r.exit_code == 0, r.output
    assert f"Usage: root {' '.join(args)}" in flat(r.output) and "--help" in r.output


def test_the_table_of_subcommands_matches_their_modules():
    for sub in SUBCOMMANDS:
        cmd = load(sub)
        assert cmd.name == sub.name
        # the summary is the one the command's own help begins with (one text, not two that drift)
        assert flat(cmd.help or "").startswith(flat(sub.summary).rstrip(".")), (sub.name, cmd.help)
        assert isinstance(cmd, click.Group) == sub.group
        leaves = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
        assert all(any("--verbose" in p.opts for p in c.params) for c in leaves), sub.name
    # every command a module of fedsafe.cli defines is in the table
    listed = {(s.module, s.name) for s in SUBCOMMANDS}
    for module in {s.module for s in SUBCOMMANDS if not s.group}:
        typer_app = importlib.import_module(f"fedsafe.cli.{module}").app
        for c in typer_app.registered_commands:
            name = c.name or c.callback.__name__.replace("_", "-")
            assert (module, name) in listed, (module, name)


def test_shell_completion_completes_commands_and_choices():
    def complete(words: str, cword: int) -> list[str]:
        r = subprocess.run([sys.executable, "-c", "from fedsafe.cli import main; main()"], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "_FEDSAFE_COMPLETE": "complete_bash",
                                                        "COMP_WORDS": words, "COMP_CWORD": str(cword)})
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("fedsafe tr", 1) == ["train"]
    assert complete("fedsafe train --profile p", 3) == [p for p in PROFILES if p.startswith("p")]
    # typer's switch for tests: --show-completion takes the shell's name instead of detecting the parent shell
    r = subprocess.run([sys.executable, "-c", "from fedsafe.cli import main; main()", "--show-completion", "bash"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert r.returncode == 0 and "_FEDSAFE_COMPLETE=complete_bash" in r.stdout, r.stdout + r.stderr


def test_completion_options_are_the_groups_only():
    def commands(cmd: click.Command):
        yield cmd
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                yield from commands(sub)

    def has_completion(cmd: click.Command) -> bool:
        return any("--install-completion" in p.opts for p in cmd.params)

    assert has_completion(typer.main.get_command(app))  # the control: the fedsafe group offers it
    # the sub-commands do not repeat it in their help (typer adds it to each app unless told not to)
    assert [c.name for s in SUBCOMMANDS for c in commands(load(s)) if has_completion(c)] == []


def test_fixed_sets_are_choices_from_the_registries():
    from fedsafe.attacks.registry import ADAPTIVE_ATTACKS, ATTACKS, QUERY_ATTACKS
    from fedsafe.data.tasks import TASKS

    def choices(cmd: click.Command, opt: str) -> list[str]:
        (param,) = [p for p in cmd.params if opt in p.opts]
        assert isinstance(param.type, click.Choice), (cmd.name, opt)
        return list(param.type.choices)

    by_name = {s.name: load(s) for s in SUBCOMMANDS}
    assert choices(by_name["attack"], "--attack") == [*ATTACKS, *ADAPTIVE_ATTACKS, *QUERY_ATTACKS]
    assert choices(by_name["attack"], "--precision") == ["fp32", "bf16", "auto"]
    assert choices(by_name["audit"], "--precision") == choices(by_name["reproduce"], "--precision")
    assert choices(by_name["train"], "--profile") == list(PROFILES) and "paper-sgd" in PROFILES
    assert choices(by_name["train"], "--task") == list(TASKS)
    assert choices(by_name["reproduce"], "--task") == [*TASKS, "all"]
    assert choices(by_name["flower"].commands["simulate"], "--profile") == list(PROFILES)
    r = CliRunner().invoke(app, ["train", "--profile", "gpu"])
    assert r.exit_code == 2 and r.output.count("error:") == 1
    assert "'gpu' is not one of 'cpu', 'paper', 'paper-sgd'" in flat(r.output)


def test_runtime_errors_exit_1_and_usage_errors_exit_2(tmp_path):
    missing = tmp_path / "missing.yaml"
    r = CliRunner().invoke(app, ["train", "-c", str(missing), "-o", str(tmp_path / "run")])
    assert r.exit_code == 1 and r.output.count("error:") == 1 and str(missing) in flat(r.output), r.output
    r = CliRunner().invoke(app, ["train", "--stop-after", "0"])
    assert r.exit_code == 2 and r.output.count("error:") == 1 and "--stop-after" in r.output, r.output
    r = CliRunner().invoke(app, ["train", "-o", " "])
    assert r.exit_code == 2 and "-o/--output is an empty path" in flat(r.output)
    r = CliRunner().invoke(app, ["privacy", "calibrate", "--epsilon", "1"])
    assert r.exit_code == 2 and "Missing option '--clip'" in flat(r.output) and r.output.count("error:") == 1
    assert CliRunner().invoke(app, ["nosuch"]).exit_code == 2


def test_verbose_shows_the_library_log(tmp_path):
    run = ["train", "-o", str(tmp_path / "run"), *TINY]
    assert CliRunner().invoke(app, [*run, "--stop-after", "1"]).exit_code == 0
    quiet = CliRunner().invoke(app, [*run, "--stop-after", "2"])
    assert quiet.exit_code == 0 and "resuming from round" not in quiet.output
    loud = CliRunner().invoke(app, [*run, "-v"])
    assert loud.exit_code == 0 and "resuming from round 3 of 3" in flat(loud.output), loud.output


def test_piped_tables_and_prose_do_not_wrap():
    code = ("from rich.table import Table; from fedsafe.cli.console import out; t = Table(title='t'); "
            "[t.add_column(f'column {i}') for i in range(4)]; t.add_row('FedAvg (no defense) ' * 3, 'a', 'b', 'c'); "
            "print(out.width); out.print(t); out.print('prose ' * 60)")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    width, *lines = r.stdout.splitlines()
    assert int(width) == PIPED_WIDTH, r.stderr
    assert any("FedAvg (no defense) FedAvg (no defense) FedAvg (no defense)" in line for line in lines), r.stdout
    assert any(("prose " * 60).strip() in line for line in lines), r.stdout  # nor is a paragraph
    assert _python("from fedsafe.cli.console import out; print(out.width)", {"COLUMNS": "97"}).stdout.strip() == "97"


def test_flower_takes_the_config_by_dash_c_and_still_by_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  rounds: x\n")
    r = CliRunner().invoke(app, ["flower", "simulate", "-c", str(bad)])
    assert r.exit_code == 1 and "train.rounds" in flat(r.output) and "deprecated" not in r.output, r.output
    r = CliRunner().invoke(app, ["flower", "simulate", str(bad)])
    assert r.exit_code == 1 and "train.rounds" in flat(r.output), r.output
    assert "the positional CONFIG is deprecated: give it as -c/--config CONFIG" in flat(r.output)
    r = CliRunner().invoke(app, ["flower", "simulate", str(bad), "-c", str(bad)])
    assert r.exit_code == 2 and "the config is given twice" in flat(r.output)
