"""benchmarks/diag_noise.py: on two tiny trained runs, one with large uplink noise and one without, the averaged
noise's norm is computed from the clients' sizes and equals what the final global model measures when the noise
dominates it, and is 0 without noise."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from fedsafe.config import load_config
from fedsafe.training.trainer import train

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "diag_noise.py"
spec = importlib.util.spec_from_file_location("diag_noise", SCRIPT)
diag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diag)

SYN = ["task.name=synthetic", "task.image_size=16", "task.synthetic_size=150", "model.width=0.04",
       "splits.client_test_size=10", "train.local_epochs=1", "train.rounds=2", "train.precision=fp32", "threads=1"]


def test_the_averaged_noise_norm_is_what_a_noise_dominated_global_model_measures(tmp_path):
    results = tmp_path / "results"
    noisy = ["federation.uplink_clip=50", "federation.uplink_noise=3.0"]
    for name, sets in (("noisy", noisy), ("clean", [])):
        train(load_config(overrides=[*SYN, *sets]), results / "runs" / name)
    folder = results / "fedsafe-table2" / "synthetic"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"all_runs": ["runs/noisy", "runs/clean"]}))

    noisy_rec, clean_rec = diag.noise_census(folder)

    sizes = json.loads((results / "runs" / "noisy" / "privacy_report.json").read_text())["client_sizes"]
    p = [s / sum(sizes) for s in sizes]
    assert len(sizes) == 3 and noisy_rec["entries"] > 1000
    expected = 3.0 * math.sqrt(noisy_rec["entries"]) * math.sqrt(sum(w * w for w in p))
    assert noisy_rec["averaged_noise_norm"] == pytest.approx(expected)
    # noise of std 3 on every entry swamps the tiny model: the final global model's norm is the noise's (to a few %)
    assert noisy_rec["global_norm"] == pytest.approx(expected, rel=0.05)
    assert (noisy_rec["uplink_clip"], noisy_rec["uplink_noise"], noisy_rec["run"]) == (50.0, 3.0, "noisy")
    assert clean_rec["averaged_noise_norm"] == 0.0 and 0 < clean_rec["global_norm"] < expected / 10
    assert clean_rec["seed"] == 0 and clean_rec["uplink_clip"] is None
