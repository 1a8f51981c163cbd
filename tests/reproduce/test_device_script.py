"""``scripts/device_reproduce.sh run``: the reproductions a borrowed GPU machine runs, here on the CPU with a tiny
synthetic task (the script's flow: a budget, the runs, the archive of the finished outputs)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "device_reproduce.sh"
TINY = ("--quick --set task.synthetic_size=200 --set task.image_size=16 --set model.width=0.05 "
        "--set splits.client_test_size=20")


def _run(tmp_path, *args, **env):
    e = {**os.environ, "PY": sys.executable, "DEVICE": "cpu", "SEEDS": "1", "JOBS": "1", "EXTRA": TINY,
         "RESULTS": str(tmp_path / "results-device"), "OUT": str(tmp_path / "out"),
         "WHEEL_DIR": str(tmp_path / "no-wheels"), **env}  # the machine's own packages: no wheels to install
    (tmp_path / "out").mkdir(exist_ok=True)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=e, timeout=600)


def test_usage_errors_exit_2(tmp_path):
    for args in ([], ["run", "60"], ["nonsense"]):
        done = _run(tmp_path, *args)
        assert done.returncode == 2 and "usage:" in done.stderr, (args, done.stderr)


@pytest.mark.slow  # 20-60 s on 2 cores: one tiny reproduction through the script (make test-slow)
def test_a_run_packs_the_finished_reproductions_outputs_and_logs(tmp_path):
    done = _run(tmp_path, "run", "600", "crn-table2:synthetic")
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "results-device" / "logs" / "progress.txt").read_text()
    assert "end crn-table2 synthetic rc=0" in log
    with tarfile.open(tmp_path / "out" / "results-device.tgz") as tar:
        names = tar.getnames()
    assert {"results-device/crn-table2/synthetic/crn-table2.md", "results-device/logs/progress.txt",
            "results-device/logs/crn-table2-synthetic.log"} <= set(names)
    assert not any("/runs/" in n for n in names)  # the trained runs stay on the machine


def test_a_spent_budget_stops_the_running_reproduction_and_starts_no_other(tmp_path):
    done = _run(tmp_path, "run", "2", "crn-table2:synthetic", "crn-fig2:synthetic")
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "results-device" / "logs" / "progress.txt").read_text()
    assert "end crn-table2 synthetic rc=124" in log  # stopped at the budget
    assert "not started" in log and "start crn-fig2" not in log
    with tarfile.open(tmp_path / "out" / "results-device.tgz") as tar:
        assert not any("crn-table2/synthetic" in n for n in tar.getnames())  # nothing unfinished is packed
