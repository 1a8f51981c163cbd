"""Equivalence on the real Flower simulation engine (Ray): the same config and seed give the same run as the
in-process simulator - downlink noise, uplink clipping and noise, the fed-safe defense and online CRN on."""

from __future__ import annotations

import time

import pytest
import torch

pytest.importorskip("flwr", reason="the Flower tests need flwr: pip install -e '.[dev,flower]'")

from fedsafe.flower.simulate import simulate
from fedsafe.runs.atomic import torch_load
from fedsafe.runs.layout import RunLayout
from fedsafe.training.trainer import train

from ._helpers import assert_same_run, run_files, tiny_config


@pytest.mark.slow  # 50-110 s on 2 cores: a Flower simulation in Ray (make test-slow)
@pytest.mark.timeout(300, method="signal")
def test_flower_simulation_equals_in_process_simulator(tmp_path):
    cfg = tiny_config()
    assert torch.get_num_threads() == 1  # tests/conftest.py; the Flower processes get threads=1 from cfg.threads
    ref = RunLayout(tmp_path / "inproc")
    train(cfg, ref.root)

    t0 = time.perf_counter()
    out = simulate(cfg, tmp_path / "flower", timeout=240, workdir=tmp_path / "work")
    seconds = time.perf_counter() - t0
    rd = RunLayout(tmp_path / "flower")

    assert out.complete and not out.skipped and out.returncode == 0
    worst = assert_same_run(ref, rd, atol=1e-5)
    assert worst <= 1e-5
    assert run_files(ref.root) == run_files(rd.root)
    summary = (rd.root / "summary.json").read_text()
    assert '"engine": "flower-simulation"' in summary
    ck = torch_load(rd.checkpoint)
    assert all("crn2.delta" in s for s in ck["client_states"])  # CRN persisted in context.state across rounds
    print(f"\nflower simulation: {seconds:.1f} s wall, peak {out.peak_memory_bytes / 2**30:.2f} GiB, "
          f"max |final diff| {worst:.2e}")
    # a complete run directory is left alone
    assert simulate(cfg, tmp_path / "flower").skipped
