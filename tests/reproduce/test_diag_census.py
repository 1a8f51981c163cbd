"""benchmarks/diag_census.py: on a hand-made reproduction folder and snapshot, each training's client labels are
counted by class, the rounds within the did-not-learn margin of the majority rate are counted, and the summary's
verdict is carried through."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import yaml

from fedsafe.data.snapshot import save_snapshot
from fedsafe.data.types import DataReport, ImageTable

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "diag_census.py"
spec = importlib.util.spec_from_file_location("diag_census", SCRIPT)
diag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diag)


def test_census_counts_labels_and_rounds_at_the_majority(tmp_path):
    ids = tuple(f"{i:064x}" for i in range(6))
    table = ImageTable(images=np.zeros((6, 4, 4, 1), dtype=np.uint8), labels=np.array([0, 1, 1, 1, 0, 1]),
                       class_names=("no tumour", "tumour"), ids=ids, origin=("train",) * 6, name="meningioma")
    save_snapshot(tmp_path / "m.npz", table, DataReport(task="meningioma", source="x"), {"name": "meningioma"})
    rd = tmp_path / "results" / "runs" / "meningioma-abc"
    rd.mkdir(parents=True)
    (rd / "config.yaml").write_text(yaml.safe_dump({"seed": 3, "splits": {"partition": "dirichlet"},
                                                    "defense": {"name": "fed-safe", "adaptation_data": "server"}}))
    (rd / "splits.json").write_text(json.dumps({"client_train": [[ids[0], ids[1]], [ids[2], ids[3], ids[5]]]}))
    # majority 0.70: rounds 1 (0.70) and 3 (0.60, below it) fail the rule, round 2 (0.80) passes it
    (rd / "metrics.json").write_text(json.dumps([{"global_acc": a} for a in (0.70, 0.80, 0.60)]))
    (rd / "summary.json").write_text(json.dumps({"global_acc": 0.72, "majority_class_rate": 0.70,
                                                 "client_final_acc": [0.7, 0.9], "learned": False}))
    folder = tmp_path / "results" / "fedsafe-table1" / "meningioma"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"all_runs": ["runs/meningioma-abc"]}))

    [rec] = diag.census(folder, tmp_path / "m.npz")

    assert rec["client_labels"] == [[1, 1], [0, 3]]
    assert rec["rounds_at_majority"] == 2 and rec["rounds"] == 3
    assert (rec["seed"], rec["partition"], rec["defense"], rec["learned"]) == (3, "dirichlet", "fed-safe", False)
