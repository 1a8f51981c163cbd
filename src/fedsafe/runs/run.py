"""One run directory, opened once (:func:`open_run`): its layout, its config, its store, and its records.

:func:`open_run` is the one way in. Opened without a config it reads the run's own ``config.yaml`` (a folder
without one is not a run: RunFileError, one line); opened with the config of a run to write (training, a resume,
the Flower server) it refuses a folder that is not new, empty or a fedsafe run and one that holds a run of another
config. A :class:`Run` reaches everything of the directory: the paths (:attr:`Run.layout`), the verified reader
and writer of its files (:attr:`Run.store`), and the JSON records the reproductions and the report show (summary,
privacy report, data report, per-round metrics; read on first use: a missing one reads as empty, a run still
training, a damaged one is refused naming it). The run loaded for attacking it (its data and models) is
:func:`fedsafe.evaluation.run_context.load_context` of the opened run.

Example::

    run = open_run("runs/exp")
    run.config.train.rounds, run.summary.get("global_acc"), run.store.load_final(0)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, ExperimentConfig, config_hash
from ..yaml12 import YAMLError, read_yaml
from .claim import inspect
from .errors import RunFileError, RunFileMissing, RunIncomplete
from .layout import RunLayout
from .store import RunStore, read_config_text

__all__ = ["Noise", "Run", "open_run"]


@dataclass(frozen=True)
class Noise:
    """The noise a run used (its privacy report): s_U, s_D, the uplink clip C, and how they were set."""

    uplink: float
    downlink: float
    clip: float | None
    how: str  # "hand-set" or "calibrated (NbAFL)"


class Run:
    """The run directory at ``root`` (:func:`open_run`). ``config`` is None for a folder that is not a run (opened
    with ``missing_ok``); ``config_hash`` keys the store (default: the config's hash)."""

    def __init__(self, root: str | Path, config: ExperimentConfig | None, *, config_hash: str | None = None) -> None:
        self.root = Path(root)
        self.layout = RunLayout(self.root)
        self.config = config
        self._hash = config_hash

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    @property
    def exists(self) -> bool:
        return self.config is not None or self._hash is not None

    @functools.cached_property
    def store(self) -> RunStore:
        """The run's store (its own config's hash: model files are verified against it)."""
        if self._hash is None and self.config is None:
            raise RunFileError(f"{self.root}: not a fedsafe run directory (no readable config.yaml)")
        return RunStore(self.root, config_hash=self._hash or config_hash(self.config))  # type: ignore[arg-type]

    # -- the records ----------------------------------------------------------------------------------------------

    def _read(self, path: Path, empty: Any) -> Any:
        if not self.exists:
            return empty
        try:
            return self.store.read_json(path)
        except RunFileMissing:
            return empty
        except RunFileError as e:
            raise RunFileError(f"{e}; training the run again with its own config (fedsafe train --config "
                               f"{self.layout.config} -o {self.root}) recomputes it") from None

    @functools.cached_property
    def summary(self) -> dict[str, Any]:
        """``summary.json`` (written last); empty while the run is not complete."""
        return self._read(self.layout.summary, {})

    @functools.cached_property
    def privacy(self) -> dict[str, Any]:
        return self._read(self.layout.privacy_report, {})

    @functools.cached_property
    def data_report(self) -> dict[str, Any]:
        return self._read(self.layout.data_report, {})

    @functools.cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return self._read(self.layout.metrics, [])

    def read_records(self) -> Run:
        """Read every record now (a damaged one is refused here, not on first use); returns the run."""
        for name in ("summary", "privacy", "data_report", "metrics"):
            getattr(self, name)
        return self

    @property
    def complete(self) -> bool:
        return bool(self.summary)

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

    def incomplete(self) -> RunIncomplete:
        """The error of a run that has no final models yet: how far it got."""
        return self.store.incomplete(self.config.train.rounds if self.config is not None else 0)


def _first(*values: Any) -> float:
    for v in values:
        if v is not None:
            return float(v)
    return math.nan


def read_config(root: str | Path) -> ExperimentConfig:
    """The config of the run at ``root`` (its ``config.yaml``); RunFileError (one line) otherwise."""
    text = read_config_text(root)
    try:
        return ExperimentConfig.model_validate(read_yaml(text))
    except (YAMLError, ValueError) as e:
        raise RunFileError(f"{RunLayout(Path(root)).config}: not a valid fedsafe config "
                           f"({' '.join(str(e).split())[:200]})") from None


def _for_writing(root: Path, cfg: ExperimentConfig) -> Run:
    inspect(root)
    run = Run(root, cfg)
    if run.store.has_config():
        try:
            old = read_yaml(read_config_text(root))
        except YAMLError:
            raise ConfigError(f"{run.layout.config}: unreadable config of an earlier run") from None
        if config_hash(old) != config_hash(cfg):
            raise ConfigError(f"{run.root}: holds a run with a different config; choose another -o")
    return run


def open_run(root: str | Path, *, config: ExperimentConfig | None = None, config_hash: str | None = None,
             missing_ok: bool = False) -> Run:
    """The run directory at ``root``, the one way to open one.

    * no ``config``: a run on disk, keyed by its own ``config.yaml``; RunFileError (one line) when there is no such
      directory or it has no valid ``config.yaml``, unless ``missing_ok`` (then a :class:`Run` with ``config`` None
      and empty records, so that a report over moved or deleted runs says so instead of failing);
    * ``config``: the run of ``config`` to write or resume: RunDirRefused (one line, nothing touched) if ``root`` is
      not new, empty or a fedsafe run (:func:`fedsafe.runs.claim.inspect`), ConfigError if it holds a run of another
      config;
    * ``config_hash``: a run whose files are keyed by this hash and whose config is not an experiment's (a recorded
      Flower app, :mod:`fedsafe.flower.recording`); nothing is read or checked.
    """
    root = Path(root)
    if config is not None:
        return _for_writing(root, config)
    if config_hash is not None:
        return Run(root, None, config_hash=config_hash)
    try:
        if not root.is_dir():
            raise RunFileMissing(f"{root}: no such directory")
        return Run(root, read_config(root))
    except (RunFileError, OSError):
        if missing_ok:
            return Run(root, None)
        raise
