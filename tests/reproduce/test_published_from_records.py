"""A table published from records (docs/results/records/NAME/TASK/seed-*.tar.gz, all five seeds) is what
``fedsafe reproduce NAME --task TASK --unpack ... --cached-only`` writes from those archives alone, on the real data
(whose content keys the runs): every CSV and every verdict, to the last digit (or
the last bits of a float, should another CPU's math library round differently). Slow (it hashes the task's images
and writes the table) and skipped without the shared data."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsafe.cli import app

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "docs" / "results" / "records"
NUMBERS = ("rows.csv", "summary.csv", "table.csv", "points.csv", "verdicts.json")  # figures' bytes vary by library


def _complete() -> list[tuple[str, str]]:
    """(reproduction, task) whose five seeds' archives are published beside a written table."""
    return [(d.parent.name, d.name) for d in sorted(RECORDS.glob("*/*"))
            if all((d / f"seed-{s}.tar.gz").is_file() for s in range(5))
            and (ROOT / "docs" / "results" / d.parent.name / d.name / "verdicts.json").is_file()]


def test_some_published_table_is_written_from_records():
    assert _complete(), f"no reproduction with its five seeds' archives under {RECORDS} beside a published table"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task"), _complete(), ids="/".join)
def test_the_published_table_equals_the_one_its_records_write(name, task, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSAFE_DATA", str(shared_data))
    monkeypatch.chdir(tmp_path)  # `-o results`, as the published command: rows.csv names results/runs/<run>
    unpack = [a for s in range(5) for a in ("--unpack", str(RECORDS / name / task / f"seed-{s}.tar.gz"))]
    out = CliRunner().invoke(app, ["reproduce", name, "--task", task, "--seeds", "5", "--precision", "fp32",
                                   "--batch-size", "100", "-o", "results", "--cached-only", "--no-report", *unpack])
    assert out.exit_code == 0, out.output
    published, written = ROOT / "docs" / "results" / name / task, tmp_path / "results" / name / task
    for f in NUMBERS:
        if (published / f).exists():
            got, want = (written / f).read_text(), (published / f).read_text()
            assert got == want or _same_numbers(got, want), f"{name}/{task}/{f}"


def _same_numbers(a: str, b: str) -> bool:
    """Equal but for the last bits of a float (another CPU's math library): every token the same, numbers to a
    relative 1e-12."""
    ta, tb = re.split(r"([,\s:\[\]{}\"])", a), re.split(r"([,\s:\[\]{}\"])", b)
    return len(ta) == len(tb) and all(x == y or _close(x, y) for x, y in zip(ta, tb, strict=True))


def _close(x: str, y: str) -> bool:
    try:
        return math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=1e-15)
    except ValueError:
        return False
