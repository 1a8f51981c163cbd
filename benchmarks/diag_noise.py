"""How big the uplink noise is beside the model it noises: the measurement behind the Fed-Safe Table 2 section of
docs/results/did-not-learn.md.

For every training of a finished reproduction (its ``manifest.json``'s ``all_runs``), it prints one JSON line with
the seed, the partition, the uplink clip C and noise std s_U, the number d of floating-point entries the noise is
added to, the L2 norm the noise has after FedAvg's weighted average (s_U sqrt(d) sqrt(sum_i p_i^2), p_i the clients'
weights by training size, from the privacy report; :mod:`fedsafe.privacy.noise_scale`), the measured L2 norm of the
final global model (:func:`fedsafe.federation.state.global_norm`), the final global accuracy, the majority-class
rate and whether the run learned (``summary.json``). Where the averaged noise is much larger than a learned model's
norm, the global model a client starts its round from is mostly noise.

    python benchmarks/diag_noise.py RESULTS/TABLE/TASK > noise.jsonl

Nothing is trained or evaluated: the run directories are only read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedsafe.federation.state import global_norm
from fedsafe.privacy.noise_scale import noise_scale
from fedsafe.runs.run import open_run


def noise_census(folder: Path) -> list[dict]:
    """One record per training of the reproduction written in ``folder``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    results = folder.parent.parent
    out = []
    for rel in manifest["all_runs"]:
        run = open_run(results / rel).read_records()
        cfg, summary = run.config, run.summary
        state = run.store.load_global(cfg.train.rounds)
        d = sum(v.numel() for v in state.values() if v.is_floating_point())
        scale = noise_scale(std_uplink=cfg.federation.uplink_noise, std_downlink=0.0, entries=d,
                            weights=run.privacy["client_sizes"], clip=cfg.federation.uplink_clip)  # FedAvg's weights
        out.append({
            "run": run.root.name, "seed": cfg.seed, "partition": cfg.splits.partition,
            "uplink_clip": scale.clip, "uplink_noise": scale.std_uplink, "entries": d,
            "averaged_noise_norm": scale.averaged_uplink_norm,
            "global_norm": global_norm(state), "global_acc": summary["global_acc"],
            "majority_class_rate": summary["majority_class_rate"], "learned": summary["learned"]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a reproduction's output folder: RESULTS/TABLE/TASK")
    for record in noise_census(ap.parse_args(argv).folder):
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
