"""Which runs of a reproduction learned, and what their clients held: the census behind docs/results/did-not-learn.md.

For every training of a finished reproduction (its ``manifest.json``'s ``all_runs``), it prints one JSON line with
the seed, the partition, the defense and its adaptation data, each client's training labels counted by class (from
a snapshot of the task, ``fedsafe data snapshot FILE.npz --task T``, which holds every image's label by content id),
how many rounds the global model would not have passed the did-not-learn rule (at most the majority rate plus
the margin, :func:`fedsafe.training.trainer.did_not_learn`; from ``metrics.json``),
the final global accuracy, each attacked client model's accuracy and whether the run learned (``summary.json``).

    python benchmarks/diag_census.py RESULTS/TABLE/TASK SNAPSHOT.npz [--out FILE]

Nothing is trained or evaluated: the run directories are only read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from fedsafe.data.snapshot import load_snapshot
from fedsafe.training.trainer import did_not_learn


def census(folder: Path, snapshot: Path) -> list[dict]:
    """One record per training of the reproduction written in ``folder``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    table, _ = load_snapshot(snapshot)
    label = dict(zip((str(i) for i in table.ids), (int(y) for y in table.labels), strict=True))
    results = folder.parent.parent
    out = []
    for rel in manifest["all_runs"]:
        rd = results / rel
        cfg = yaml.safe_load((rd / "config.yaml").read_text())
        summary = json.loads((rd / "summary.json").read_text())
        metrics = json.loads((rd / "metrics.json").read_text())
        clients = json.loads((rd / "splits.json").read_text())["client_train"]
        majority = summary["majority_class_rate"]
        out.append({
            "run": rd.name, "seed": cfg["seed"], "partition": cfg["splits"].get("partition"),
            "defense": cfg["defense"]["name"], "adaptation_data": cfg["defense"].get("adaptation_data"),
            "client_labels": [[sum(1 for i in ids if label[i] == k) for k in range(len(table.class_names))]
                              for ids in clients],
            "rounds_at_majority": sum(1 for r in metrics if did_not_learn(r["global_acc"], majority)),
            "rounds": len(metrics), "global_acc": summary["global_acc"], "majority_class_rate": majority,
            "client_final_acc": summary["client_final_acc"], "learned": summary["learned"]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a reproduction's output folder: RESULTS/TABLE/TASK")
    ap.add_argument("snapshot", type=Path, help="the task's snapshot (fedsafe data snapshot FILE.npz --task T)")
    ap.add_argument("--out", type=Path, help="also write the lines to this file")
    a = ap.parse_args(argv)
    lines = [json.dumps(r) for r in census(a.folder, a.snapshot)]
    print("\n".join(lines))
    if a.out:
        a.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
