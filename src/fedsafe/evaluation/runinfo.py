"""What the reproductions and the report show of a finished run, read through its one reader
(:class:`fedsafe.runs.store.RunStore` and :func:`fedsafe.build.load_run_config`): the typed config, the summary, the
privacy report (the noise the run really used, and what the accountant gives), the data report and the per-round
metrics. Nothing here reads a file of the run directory by hand.

A directory without a readable ``config.yaml`` is not a run: :func:`read_run` gives a :class:`RunInfo` with
``config`` None and nothing else, so that a report over moved or deleted runs says so instead of failing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..build import load_run_config
from ..config import ExperimentConfig, config_hash
from ..runs.store import RunFileError, RunFileMissing, RunStore

__all__ = ["Noise", "RunInfo", "open_run", "read_run"]


@dataclass(frozen=True)
class Noise:
    """The noise a run used (its privacy report): s_U, s_D, the uplink clip C, and how they were set."""

    uplink: float
    downlink: float
    clip: float | None
    how: str  # "hand-set" or "calibrated (NbAFL)"


@dataclass(frozen=True)
class RunInfo:
    root: Path
    config: ExperimentConfig | None
    summary: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.config is not None

    @property
    def complete(self) -> bool:
        return bool(self.summary)

    def store(self) -> RunStore:
        """The run's store (its own config's hash: model files are verified against it)."""
        if self.config is None:
            raise RunFileError(f"{self.root}: not a fedsafe run directory (no readable config.yaml)")
        return RunStore(self.root, config_hash=config_hash(self.config))

    def noise(self) -> Noise:
        """s_U, s_D and C as the run applied them (calibrated ones included), from its privacy report; the config's
        hand-set values only for a run written before the privacy report named them."""
        p, f = self.privacy, (self.config.federation if self.config is not None else None)
        return Noise(uplink=_first(p.get("sigma_uplink"), f and f.uplink_noise),
                     downlink=_first(p.get("sigma_downlink"), f and f.downlink_noise),
                     clip=p.get("clip", f.uplink_clip if f is not None else None),
                     how=str(p.get("noise", "hand-set")))

    def epsilon(self) -> float:
        """The PLD epsilon the accountant gives for the run's noise (NaN when the report has none)."""
        try:
            return float((self.privacy.get("pld") or {}).get("epsilon"))
        except (TypeError, ValueError):
            return math.nan


def _first(*values: Any) -> float:
    for v in values:
        if v is not None:
            return float(v)
    return math.nan


def open_run(root: str | Path) -> RunStore:
    """The store of the run at ``root``, keyed by its own config; RunFileError (one line) when it is not a run."""
    return RunStore(root, config_hash=config_hash(load_run_config(root)))


def read_run(root: str | Path) -> RunInfo:
    """Everything :class:`RunInfo` holds; a missing JSON file reads as empty (a run still training), a damaged one
    is refused (RunFileError naming it: read as empty it would report a run without numbers as a run with none)."""
    root = Path(root)
    try:
        cfg = load_run_config(root)
    except (RunFileError, OSError):
        return RunInfo(root=root, config=None)
    store = RunStore(root, config_hash=config_hash(cfg))
    d = store.dir

    def read(path: Path, empty: Any) -> Any:
        try:
            return store.read_json(path)
        except RunFileMissing:
            return empty
        except RunFileError as e:
            raise RunFileError(f"{e}; training the run again with its own config (fedsafe train --config {d.config} "
                               f"--run-dir {root}) recomputes it") from None

    return RunInfo(root=root, config=cfg, summary=read(d.summary, {}), privacy=read(d.privacy_report, {}),
                   data_report=read(d.data_report, {}), metrics=read(d.metrics, []))
