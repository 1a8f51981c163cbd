"""``fedsafe reproduce --jobs N``: the worker pool gives the outputs of one process, byte for byte (wall-clock
fields aside), reports a worker's error as one line naming the run, and shares the cores out."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsafe.attacks.spec import AttackSpec, Start
from fedsafe.audit import mia
from fedsafe.cli import app
from fedsafe.cli.reproduce import worker_thread_count
from fedsafe.reproduce.execution import JobFailed, chunks, execute
from fedsafe.reproduce.planning import plan
from fedsafe.reproduce.reproductions.base import Options
from fedsafe.runs.layout import RunLayout

# Fed-Safe Table 1 (8 trainings: 3 clean, 2 leaky, 3 Dirichlet sensitivity; 4 attacks each) at the smallest size
# that trains; one torch thread a process in both runs (CPU kernels sum in an order that depends on the thread
# count: execution's docstring)
TINY = ("task.synthetic_size=150", "task.image_size=16", "model.width=0.05", "splits.client_test_size=10",
        "threads=1")
FS_TINY = (*TINY, "train.rounds=2")  # Fed-Safe Table 1 needs no CRN: 2 rounds are enough
WALL_CLOCK = re.compile(r"\d+(\.\d+)? (s|min|h)\b")
TIMING_HEADER = re.compile(r"seconds|wall|s/batch|time", re.IGNORECASE)
CELL = re.compile(r"(?<!\\)\|")  # a Markdown cell border (an escaped pipe is text)


def _run(root: Path, monkeypatch, jobs: int) -> dict[str, bytes]:
    """Every output file of the reproduction (relative path -> bytes), written with ``jobs`` workers into
    ``root/results`` (a relative results path, so that both runs write the same run_dir strings)."""
    root.mkdir()
    monkeypatch.chdir(root)
    p = plan(["fedsafe-table1"], tasks=["synthetic"], results="results",
             options=Options(quick=True, overrides=FS_TINY, sanity=False))
    execute(p, jobs=jobs, threads=1)
    folder = Path("results/fedsafe-table1/synthetic")
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def _csv_without_timing(data: bytes) -> list[list[str]]:
    """The cells of a CSV as written (strings, not parsed numbers), the wall-clock columns blanked."""
    rows = list(csv.reader(io.StringIO(data.decode())))
    return [rows[0], *(_blank(rows[0], r) for r in rows[1:])]


def _blank(header: list[str], row: list[str]) -> list[str]:
    return ["" if TIMING_HEADER.search(h) else v for h, v in zip(header, row, strict=True)]


def _markdown_without_timing(text: str) -> str:
    """The Markdown with its wall-clock numbers replaced, and the cells of timing columns of its tables blanked."""
    out, header = [], None
    for line in WALL_CLOCK.sub("<time>", text).splitlines():
        cells = CELL.split(line.strip("|")) if line.startswith("|") else None
        if cells is None:
            header = None
        elif header is None:
            header = cells
        elif len(cells) == len(header) and not line.startswith("|---"):
            line = "|".join(_blank(header, cells))
        out.append(line)
    return "\n".join(out)


def _manifest_without_timing(text: str) -> str:
    m = json.loads(text)
    m.pop("written")
    for t in m["tables"]:
        t["rows"] = [_blank(t["columns"], r) for r in t["rows"]]
    return WALL_CLOCK.sub("<time>", json.dumps(m, sort_keys=True))


@pytest.mark.slow  # 30-60 s on 2 cores: the reproduction runs twice, once with worker processes (make test-slow)
def test_two_workers_write_the_outputs_of_one_process_byte_for_byte(tmp_path, monkeypatch):
    one = _run(tmp_path / "one", monkeypatch, jobs=1)
    two = _run(tmp_path / "two", monkeypatch, jobs=2)
    assert sorted(one) == sorted(two) and {"rows.csv", "summary.csv", "table.csv", "table1.png"} <= set(one)
    for name in one:
        if name.endswith(".csv"):
            assert _csv_without_timing(one[name]) == _csv_without_timing(two[name]), name
        elif name.endswith(".md"):
            assert _markdown_without_timing(one[name].decode()) == _markdown_without_timing(two[name].decode())
        elif name == "manifest.json":
            assert _manifest_without_timing(one[name].decode()) == _manifest_without_timing(two[name].decode())
        else:  # figures, verdicts: no wall-clock number in them
            assert one[name] == two[name], name
    # the comparison is not vacuous: 8 trainings x 4 attacks x 3 attackers x 3 targets, and timing columns exist
    rows = _csv_without_timing(one["rows.csv"])
    assert len(rows) == 1 + 8 * 4 * 3 * 3 and any(TIMING_HEADER.search(h) for h in rows[0])


@pytest.mark.slow  # 10-20 s: starts a worker pool (torch imported in its server)
def test_a_workers_error_is_one_line_naming_the_run(tmp_path):
    p = plan(["crn-table1"], tasks=["synthetic"], results=tmp_path,
             options=Options(quick=True, overrides=TINY, sanity=False))
    (rd,) = p.runs
    rd.mkdir(parents=True)
    (rd / RunLayout(rd).config.name).write_text("{not a config")  # an earlier run's damaged config
    with pytest.raises(JobFailed) as err:
        execute(p, jobs=2, threads=1)
    message = str(err.value)
    assert rd.name in message and "unreadable config" in message and "\n" not in message


def test_chunks_keep_a_crn_start_together_and_balance_the_cost():
    crn = Start.crn(10, alpha=0.001)
    specs = [AttackSpec(steps=1, start=crn), AttackSpec(steps=20), AttackSpec(steps=40),
             AttackSpec(steps=2, start=crn), AttackSpec(steps=5)]
    two = chunks(specs, 2, cost=lambda s: float(s.steps))
    assert sorted(s.steps for c in two for s in c) == [1, 2, 5, 20, 40]  # every spec once
    assert [[s.steps for s in c] for c in two] == [[40], [1, 20, 2, 5]]  # 40 vs 28, each in the plan's order
    assert chunks(specs, 1) == [specs] and len(chunks(specs, 9)) == 4  # 4 groups: the CRN pair is one


@pytest.mark.parametrize(("jobs", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (8, 2, 1), (3, 16, 5)])
def test_workers_share_the_cores(jobs, cores, threads):
    assert worker_thread_count(jobs, cores) == threads


def test_the_command_takes_jobs_and_refuses_zero(tmp_path):
    args = ["reproduce", "crn-table1", "--task", "synthetic", "--quick", "--dry-run", "--results", str(tmp_path),
            *[a for o in TINY for a in ("--set", o)]]
    ok = CliRunner().invoke(app, [*args, "--jobs", "2"])
    assert ok.exit_code == 0, ok.output
    assert "training run(s)" in ok.output and not (tmp_path / "runs").exists()  # planned, nothing trained
    bad = CliRunner().invoke(app, [*args, "--jobs", "0"])
    assert bad.exit_code == 2 and "--jobs" in bad.output


@pytest.mark.slow  # ~1 min on 2 cores: the adaptive reproduction runs twice, once with worker processes
def test_workers_run_the_membership_inferences_as_one_process_does(tmp_path, monkeypatch):
    found = {}
    for jobs in (1, 2):
        (tmp_path / str(jobs)).mkdir()
        monkeypatch.chdir(tmp_path / str(jobs))
        p = plan(["fedsafe-adaptive"], tasks=["synthetic"], results="results",
                 options=Options(quick=True, overrides=TINY, sanity=False))
        if jobs == 2:  # the main process only reads: the workers computed every inference before the build
            monkeypatch.setattr(mia, "membership_audit", _never)
        execute(p, jobs=jobs, threads=1)
        found[jobs] = {(rd.name, key): {k: v for k, v in json.loads(RunLayout(rd).mia(key).read_text()).items()
                                        if k != "seconds"} for rd, key in p.audits}
    assert len(found[1]) == 3 and found[1] == found[2]


def _never(*args, **kwargs):
    raise AssertionError("the main process computed a membership inference the workers should have")
