"""``fedsafe ... | head``: a reader that stops reading ends the command quietly, exit code 141 (128 + SIGPIPE) as a
Unix tool's, never "error: Broken pipe" and never a traceback.

The pipe is closed before the command starts, so its first write fails whatever the machine's speed."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from fedsafe.cli.runtime import OneLineErrors


def run_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-c", "from fedsafe.cli import main; main()", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)


def test_the_version_into_a_closed_pipe_ends_quietly_with_141():
    done = run_into_a_closed_pipe("--version")
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.parametrize("args", [("--help",), ("data", "--help")], ids=["help", "subcommand-help"])
def test_help_into_a_closed_pipe_ends_quietly(args):
    done = run_into_a_closed_pipe(*args)
    assert done.stderr == "" and done.returncode in (1, 141)  # typer draws help with its own rich console: rich's 1


def test_a_table_into_a_closed_pipe_ends_quietly_with_141():
    done = run_into_a_closed_pipe("privacy", "account", "--sigma-up", "1", "--m", "100", "--T", "3", "--N", "3")
    assert (done.returncode, done.stderr) == (141, "")


def test_a_broken_pipe_in_a_subcommand_is_no_error_but_other_os_errors_are():
    group = OneLineErrors(name="fedsafe")

    @group.command()
    @click.argument("what")
    def write(what: str) -> None:
        raise (BrokenPipeError(32, "Broken pipe") if what == "pipe" else PermissionError(13, "denied", "x.json"))

    piped = CliRunner().invoke(group, ["write", "pipe"])
    assert (piped.exit_code, piped.output) == (141, "")
    denied = CliRunner().invoke(group, ["write", "file"])
    assert denied.exit_code == 1 and "error: x.json: permission denied" in " ".join(denied.output.split())
