"""The layout of a run directory: every file and folder a run holds, named here and nowhere else.

    RUN/.fedsafe-run             written first: the folder is a fedsafe run (:mod:`fedsafe.runs.claim`)
    RUN/.lock                    held by the one process writing the run
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
    RUN/checkpoint.prev.pt       the round before (a resume falls back to it when the current one fails its check)
    RUN/summary.json             written last, when the run is complete
    RUN/attacks/KEY.json, KEY.csv    one attack evaluation (KEY: the attack's settings), its summary and its rows
    RUN/attacks/sanity.json          the sanity checks of the attacks (cached)
    RUN/attacks/crn_tables.md        the CRN paper's tables on this run
    RUN/audit/audit.json, audit.html the audit's summary and its page
    RUN/audit/masking-HASH.json      the gradient-masking checks (cached; HASH: their settings)
    RUN/audit/mia-KEY.json           the membership-inference audit (cached; KEY: its settings)
    RUN/audit/inputs.json            what a Flower run recorded for the audit (its inputs)

Every file is written atomically (see :mod:`fedsafe.runs.atomic`). No module outside :mod:`fedsafe.runs` spells one
of these names (a test checks the source): they ask :class:`RunLayout`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ATTACKS", "AUDIT", "CHECKPOINT", "CHECKPOINT_PREV", "CONFIG", "DATA_FINGERPRINT", "DATA_REPORT",
           "FILE_NAMES", "HEADER", "LOCK", "MARKER", "METRICS", "MODELS", "PRIVACY_REPORT", "ROOT_FILES", "RunLayout",
           "SPLITS", "SUMMARY"]

MARKER = ".fedsafe-run"
LOCK = ".lock"
CONFIG = "config.yaml"
DATA_FINGERPRINT = "data_fingerprint.json"
DATA_REPORT = "data_report.json"
PRIVACY_REPORT = "privacy_report.json"
METRICS = "metrics.json"
SPLITS = "splits.json"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_PREV = "checkpoint.prev.pt"
SUMMARY = "summary.json"
MODELS = "models"
ATTACKS = "attacks"
AUDIT = "audit"
_SANITY = "sanity.json"
_CRN_TABLES = "crn_tables.md"
_AUDIT_SUMMARY = "audit.json"
_AUDIT_PAGE = "audit.html"
_AUDIT_INPUTS = "inputs.json"

ROOT_FILES = (CONFIG, DATA_REPORT, PRIVACY_REPORT, METRICS, SPLITS, CHECKPOINT, SUMMARY, DATA_FINGERPRINT, MARKER)
"""The files at the top of a run directory whose temporary copies the store may clean (:mod:`fedsafe.runs.claim`)."""
HEADER = (CONFIG, DATA_REPORT, SPLITS)
"""What every run wrote before round 1, since the first version: a run of before the marker has all three."""
FILE_NAMES = (*ROOT_FILES, LOCK, CHECKPOINT_PREV, MODELS, ATTACKS, AUDIT, _SANITY, _CRN_TABLES, _AUDIT_SUMMARY,
              _AUDIT_PAGE, _AUDIT_INPUTS)
"""Every fixed name of the layout: no module outside :mod:`fedsafe.runs` spells one (tests/runs/test_layout.py)."""


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run directory at ``root`` (module docstring); it reads and writes nothing but
    :meth:`received_rounds`, :meth:`prune_received` and :meth:`is_complete`."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def data_fingerprint(self) -> Path:
        return self.root / DATA_FINGERPRINT

    @property
    def data_report(self) -> Path:
        return self.root / DATA_REPORT

    @property
    def privacy_report(self) -> Path:
        return self.root / PRIVACY_REPORT

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def splits(self) -> Path:
        return self.root / SPLITS

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT

    @property
    def previous_checkpoint(self) -> Path:
        return self.root / CHECKPOINT_PREV

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    def global_model(self, round_: int) -> Path:
        return self.root / MODELS / "global" / f"round_{round_:04d}.pt"

    def received_dir(self, round_: int) -> Path:
        return self.root / MODELS / "received" / f"round_{round_:04d}"

    def received(self, round_: int, client: int) -> Path:
        return self.received_dir(round_) / f"client_{client:03d}.pt"

    def final_model(self, client: int) -> Path:
        return self.root / MODELS / "final" / f"client_{client:03d}.pt"

    # -- what the evaluations and the audit keep beside the run ---------------------------------------------------

    @property
    def attacks(self) -> Path:
        return self.root / ATTACKS

    def attack_result(self, key: str, suffix: str) -> Path:
        """``attacks/KEY.json`` (``suffix`` ".json": the summary) or ``attacks/KEY.csv`` (".csv": the rows)."""
        return self.attacks / f"{key}{suffix}"

    def attack_summaries(self) -> list[Path]:
        """Every ``attacks/*.json`` (sorted; the sanity cache among them)."""
        return sorted(self.attacks.glob("*.json")) if self.attacks.is_dir() else []

    @property
    def sanity(self) -> Path:
        return self.attacks / _SANITY

    @property
    def crn_tables(self) -> Path:
        return self.attacks / _CRN_TABLES

    @property
    def audit(self) -> Path:
        return self.root / AUDIT

    @property
    def audit_summary(self) -> Path:
        return self.audit / _AUDIT_SUMMARY

    @property
    def audit_page(self) -> Path:
        return self.audit / _AUDIT_PAGE

    @property
    def audit_inputs(self) -> Path:
        return self.audit / _AUDIT_INPUTS

    def masking(self, digest: str) -> Path:
        return self.audit / f"masking-{digest}.json"

    def mia(self, key: str) -> Path:
        return self.audit / f"mia-{key}.json"

    @property
    def derived(self) -> tuple[Path, ...]:
        """The folders of results computed from the run (attacks, audit): stale once the run changes."""
        return self.attacks, self.audit

    # -- reading the layout ---------------------------------------------------------------------------------------

    def received_rounds(self) -> list[int]:
        base = self.root / MODELS / "received"
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
