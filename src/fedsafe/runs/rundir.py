"""The layout of a run directory: everything a run leaves behind, and the checkpoint it resumes from.

    RUN/.fedsafe-run             written first: the folder is a fedsafe run (:mod:`fedsafe.runs.claim`)
    RUN/config.yaml              resolved configuration (profile, precision and every setting)
    RUN/data_fingerprint.json    the data the run trained on (:mod:`fedsafe.runs.fingerprint`)
    RUN/data_report.json         what was read, de-duplicated and split
    RUN/privacy_report.json      the (epsilon, delta) the run's noise gives (accountant) and defense cost
    RUN/metrics.json             per-round metrics (clean accuracy of the global model and every client's)
    RUN/splits.json              the image ids of every set (global test, server, client test/train)
    RUN/models/global/round_XXXX.pt          the global model after every round (after any server defense)
    RUN/models/received/round_XXXX/client_YYY.pt   each client's received copy, last K rounds (CRN needs them)
    RUN/models/final/client_YYY.pt           each client's final model (its last received copy)
    RUN/checkpoint.pt            the last completed round: global state, per-client hook state, metrics
    RUN/summary.json             written last, when the run is complete

Every file is written atomically (see :mod:`fedsafe.runs.atomic`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunDir"]


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data_report(self) -> Path:
        return self.root / "data_report.json"

    @property
    def privacy_report(self) -> Path:
        return self.root / "privacy_report.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def global_model(self, round_: int) -> Path:
        return self.root / "models" / "global" / f"round_{round_:04d}.pt"

    def received_dir(self, round_: int) -> Path:
        return self.root / "models" / "received" / f"round_{round_:04d}"

    def received(self, round_: int, client: int) -> Path:
        return self.received_dir(round_) / f"client_{client:03d}.pt"

    def final_model(self, client: int) -> Path:
        return self.root / "models" / "final" / f"client_{client:03d}.pt"

    def received_rounds(self) -> list[int]:
        base = self.root / "models" / "received"
        if not base.is_dir():
            return []
        return sorted(int(p.name.split("_")[1]) for p in base.iterdir() if p.is_dir() and p.name.startswith("round_"))

    def prune_received(self, keep_from: int) -> None:
        """Delete received copies of rounds before ``keep_from``."""
        for r in self.received_rounds():
            if r < keep_from:
                shutil.rmtree(self.received_dir(r), ignore_errors=True)

    def is_complete(self) -> bool:
        """Whether ``summary.json`` (written last) is there and a valid JSON object (a damaged one is not)."""
        try:
            return isinstance(json.loads(self.summary.read_text()), dict)
        except (OSError, UnicodeError, ValueError):
            return False
