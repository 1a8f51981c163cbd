"""The records archives published under docs/results/records (``fedsafe reproduce --pack``): each one reads, holds
only finished runs of its own task with no model weights and no machine's absolute path, and is listed in the
folder's README with the seed it carries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fedsafe.runs.records import read_archive

RECORDS = Path(__file__).resolve().parents[2] / "docs" / "results" / "records"
ARCHIVES = sorted(RECORDS.glob("*/*/seed-*.tar.gz"))
ABSOLUTE = re.compile(rb'(?:"|: )/(?:work|home|tmp|root|Users|mnt|data)/')  # a JSON string or a YAML value


def test_records_are_published():
    assert ARCHIVES, f"no records archive under {RECORDS}"


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: str(p.relative_to(RECORDS)))
def test_a_published_archive_holds_finished_runs_of_its_task_and_seed_without_paths(archive):
    task, seed = archive.parent.name, int(archive.name.removeprefix("seed-").removesuffix(".tar.gz"))
    runs = read_archive(archive)  # refuses weights, links and anything outside runs/<run>/
    assert runs
    for name, files in runs.items():
        assert name.startswith(f"{task}-"), name
        rels = {str(r) for r in files}
        assert {"summary.json", "config.yaml", "metrics.json", "splits.json"} <= rels, name
        config = files[next(r for r in files if str(r) == "config.yaml")].decode()
        assert re.search(rf"^seed: {seed}$", config, re.MULTILINE), name
        summary = json.loads(files[next(r for r in files if str(r) == "summary.json")])
        assert isinstance(summary, dict)
        assert not [r for r, data in files.items() if ABSOLUTE.search(data)], name
    listed = (RECORDS / "README.md").read_text()
    assert str(archive.relative_to(RECORDS)) in listed
