"""The result cache of the reproductions: a training run is keyed by everything that determines it, so
tables that share a federation train it once, and an interrupted reproduction continues where it stopped.

Run key (:func:`run_key`): the sha256 of

* the data's content: :func:`data_fingerprint` of the task's decoded images (ids = content hashes of the
  source files, labels and the decoded pixels, so a changed file or another decoder gives another key);
* every configuration part that changes the trained models: task name, image size and channels, splits,
  model, train (with ``precision: auto`` resolved to what this machine runs, since bf16 and fp32 train
  differently, and the device resolved to its type: CPU and GPU kernels differ), federation, privacy, defense,
  CRN and the seed;
* ``CACHE_VERSION`` (bumped when the run format or the training changes).

Not in the key: where things are (``task.data_root``, ``task.cache_dir``, ``task.snapshot``: a snapshot holds the
same table as its source, :mod:`fedsafe.data.snapshot`), ``threads``, the profile's name (only
its settings count), and how often the run is evaluated (``train.eval_every``, ``train.eval_batch_size``).

Runs live in ``RESULTS/runs/<task>-<first 12 hex digits of the key>/`` (a normal run directory, see
:mod:`fedsafe.runs.layout`): a complete one (``summary.json``) is reused, a partial one resumes from its last
checkpointed round (:func:`fedsafe.training.trainer.train`).

Attack evaluations are cached by :mod:`fedsafe.evaluation.results` in ``RUN/attacks/<key>.{csv,json}``, the key
covering every field of the :class:`~fedsafe.attacks.spec.AttackSpec` and the precision and batch size;
:meth:`RunCache.evaluate` reads them back instead of attacking again (the run itself is fixed by its directory).
In use: ``cache = RunCache("results"); cache.train(cfg)`` (trains, resumes, or skips), then
``cache.evaluate(cfg, [AttackSpec(attack="pgd", steps=20)])``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..attacks.spec import AttackSpec
from ..build import default_data_root, load_table, prepare_data, run_device
from ..config import ExperimentConfig, hashed_dump
from ..data.tasks import TASKS
from ..data.types import ImageTable
from ..defaults import ATTACK_BATCH_SIZE, ATTACK_PRECISION
from ..evaluation.results import read_evaluation
from ..evaluation.run_context import load_context
from ..evaluation.transfer_evaluation import evaluate_transfer
from ..precision import resolve_precision
from ..progress import Progress
from ..runs.layout import RunLayout
from ..runs.run import open_run
from ..runs.store import RunFileError
from ..training.trainer import TrainOutcome, train

__all__ = [
    "CACHE_VERSION", "Evaluation", "RunCache", "data_fingerprint", "determining", "run_key", "task_data_root",
]

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bump when the run directory format or the training code changes what a config produces."""

LOCK_WAIT_SECONDS = 24 * 3600.0
"""How long a reproduction waits for a run another process is training (they share ``RESULTS/runs``)."""

NOT_DETERMINING = ("profile", "threads", "task.data_root", "task.cache_dir", "task.snapshot", "train.eval_every",
                   "train.eval_batch_size")
"""Config fields that do not change the trained models (dotted paths)."""


def data_fingerprint(table: ImageTable) -> str:
    """sha256 over a task's content: its name, classes, image ids (content hashes of the source files, or
    "synthetic:<index>"), labels, the decoded pixels (shape and bytes), and the split groups (near-duplicates and
    same-scan slices, which decide the splits) unless every image is its own group (keys made before groups
    counted stay valid for such tasks)."""
    h = hashlib.sha256()
    h.update(json.dumps({"name": table.name, "classes": list(table.class_names),
                         "shape": list(table.images.shape)}).encode())
    h.update("\n".join(table.ids).encode())
    h.update(np.ascontiguousarray(table.labels, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(table.images).tobytes())
    if not np.array_equal(table.groups, np.arange(len(table))):
        h.update(b"groups")
        h.update(np.ascontiguousarray(table.groups, dtype=np.int64).tobytes())
    return h.hexdigest()


def determining(cfg: ExperimentConfig) -> dict[str, Any]:
    """The part of ``cfg`` that determines the trained models (``NOT_DETERMINING`` removed, precisions resolved,
    fields added later left out at their old value as in the config hash)."""
    device = run_device(cfg)
    data = cfg.model_dump(mode="json")
    for section in ("train", "crn"):
        data[section]["precision"] = resolve_precision(getattr(cfg, section).precision, device)
    data = hashed_dump(data)
    for dotted in NOT_DETERMINING:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        node.pop(leaf, None)
    data["train"]["device"] = device.type  # kernels differ between CPU and GPU (the random draws do not)
    return data


def run_key(cfg: ExperimentConfig, fingerprint: str) -> str:
    """sha256 hex of (``determining(cfg)``, the data fingerprint, ``CACHE_VERSION``)."""
    blob = json.dumps({"config": determining(cfg), "data": fingerprint, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def task_data_root(cfg: ExperimentConfig) -> Path | None:
    """Where ``cfg``'s task reads its data: its snapshot file when it has one, else its data root (None for the
    embedded synthetic task)."""
    if cfg.task.snapshot:
        return Path(cfg.task.snapshot).expanduser()
    if TASKS.get(cfg.task.name) is not None and TASKS[cfg.task.name].data_root is None:
        return None
    return Path(cfg.task.data_root) if cfg.task.data_root else default_data_root(cfg.task.name)


@dataclass(frozen=True)
class Evaluation:
    """One attack configuration evaluated on one run: the JSON summary and the tidy rows that
    :func:`fedsafe.evaluation.transfer_evaluation.evaluate_transfer` wrote (``cached``: read back, not recomputed)."""

    spec: AttackSpec
    key: str
    record: dict[str, Any]
    frame: pd.DataFrame
    run_dir: Path
    cached: bool


class RunCache:
    """Training runs and attack evaluations under ``RESULTS/runs``, keyed as in the module docstring.

    Holds the data fingerprints of the tasks it has seen (a task is read once per fingerprint).
    """

    def __init__(self, results: str | Path) -> None:
        self.results = Path(results)
        self.runs = self.results / "runs"
        self._fingerprints: dict[tuple, tuple[str, int]] = {}

    # -- keys -----------------------------------------------------------------------------------------------

    def fingerprint(self, cfg: ExperimentConfig, *, progress: Progress | None = None) -> str:
        """The data fingerprint of ``cfg``'s task (read once per task and preprocessing)."""
        return self._table_info(cfg, progress)[0]

    def task_size(self, cfg: ExperimentConfig, *, progress: Progress | None = None) -> int:
        """The number of (de-duplicated) images of ``cfg``'s task."""
        return self._table_info(cfg, progress)[1]

    def _table_info(self, cfg: ExperimentConfig, progress: Progress | None) -> tuple[str, int]:
        t = cfg.task
        root = task_data_root(cfg)
        synthetic = t.name == "synthetic"
        memo = (t.name, str(root.resolve()) if root else None, t.image_size, t.channels, t.strict,
                cfg.seed if synthetic else None, t.synthetic_size if synthetic else None, t.label_conflicts,
                t.near_duplicates, t.near_duplicate_threshold, t.near_duplicate_hash_distance, t.same_scan,
                t.same_scan_threshold, t.same_scan_loose_threshold, t.same_scan_hash_distance, t.sites_csv)
        if memo not in self._fingerprints:
            table, _ = load_table(cfg, progress=progress)
            self._fingerprints[memo] = (data_fingerprint(table), len(table))
        return self._fingerprints[memo]

    def key(self, cfg: ExperimentConfig, *, progress: Progress | None = None) -> str:
        return run_key(cfg, self.fingerprint(cfg, progress=progress))

    def run_dir(self, cfg: ExperimentConfig, *, progress: Progress | None = None) -> Path:
        """``RESULTS/runs/<task>-<key[:12]>``."""
        return self.runs / f"{cfg.task.name}-{self.key(cfg, progress=progress)[:12]}"

    def is_trained(self, cfg: ExperimentConfig) -> bool:
        return RunLayout(self.run_dir(cfg)).is_complete()

    # -- training -------------------------------------------------------------------------------------------

    def train(self, cfg: ExperimentConfig, *, progress: Progress | None = None) -> TrainOutcome:
        """Train ``cfg`` into its run directory: skipped when complete, resumed when partial.

        A run directory found under the key may hold a config that differs from ``cfg`` only in fields that do
        not determine the run (threads, paths, evaluation frequency): it is continued with its own config.
        """
        rd = self.run_dir(cfg, progress=progress)
        stored = self._stored_config(rd)
        if stored is not None and run_key(stored, self.fingerprint(cfg)) != self.key(cfg):
            raise ValueError(f"{rd}: holds a run of another configuration (edited by hand?); delete it")
        run_cfg = stored or cfg
        if RunLayout(rd).is_complete():
            return train(run_cfg, rd)
        # the data is read from where ``cfg`` says (the stored config's paths may be stale); same content by key;
        # a run another reproduction is training is waited for, not trained twice
        return train(run_cfg, rd, data=prepare_data(cfg, progress=progress), progress=progress,
                     lock_wait=LOCK_WAIT_SECONDS)

    @staticmethod
    def _stored_config(rd: Path) -> ExperimentConfig | None:
        path = RunLayout(rd).config
        if not path.is_file():
            return None
        try:
            return open_run(rd).config
        except RunFileError as e:
            raise ValueError(f"{path}: unreadable config of an earlier run ({' '.join(str(e).split())[:120]}); "
                             f"delete {rd} to train it again") from None

    # -- attacks --------------------------------------------------------------------------------------------

    @staticmethod
    def attack_key(spec: AttackSpec, *, precision: str, batch_size: int, crn_precision: str) -> str:
        """The key under which :func:`~fedsafe.evaluation.transfer_evaluation.evaluate_transfer` stores ``spec``."""
        return spec.key(precision=resolve_precision(precision), batch_size=batch_size,
                        crn_precision=resolve_precision(crn_precision))

    def cached_evaluation(self, run_dir: str | Path, spec: AttackSpec, *,
                          precision: str = ATTACK_PRECISION, batch_size: int = ATTACK_BATCH_SIZE,
                          crn_precision: str = ATTACK_PRECISION) -> Evaluation | None:
        """The stored evaluation of ``spec`` on the run, or None (absent, unreadable, or another spec)."""
        key = self.attack_key(spec, precision=precision, batch_size=batch_size, crn_precision=crn_precision)
        found = read_evaluation(run_dir, key, spec)
        if found is None:
            return None
        record, frame = found
        return Evaluation(spec=spec, key=key, record=record, frame=frame, run_dir=Path(run_dir), cached=True)

    def evaluate(self, cfg: ExperimentConfig, specs: Sequence[AttackSpec], *,
                 precision: str = ATTACK_PRECISION, batch_size: int = ATTACK_BATCH_SIZE,
                 crn_precision: str = ATTACK_PRECISION, sanity: bool = True,
                 progress: Progress | None = None) -> list[Evaluation]:
        """Every spec evaluated on ``cfg``'s (complete) run: read back when cached, else attacked now
        (the run is loaded once for all the missing specs)."""
        rd = self.run_dir(cfg, progress=progress)
        found = {s: self.cached_evaluation(rd, s, precision=precision, batch_size=batch_size,
                                           crn_precision=crn_precision) for s in dict.fromkeys(specs)}
        missing = [s for s, e in found.items() if e is None]
        if missing:
            ctx = load_context(open_run(rd), data=prepare_data(cfg, progress=progress), progress=progress)
            results = evaluate_transfer(ctx, missing, precision=precision, batch_size=batch_size,
                                        crn_precision=crn_precision, sanity=sanity, progress=progress)
            for s, r in zip(missing, results, strict=True):
                # read back what was written, so that fresh and cached evaluations are alike to the last dtype
                frame = pd.read_csv(r.csv_path) if r.csv_path is not None else r.frame
                found[s] = Evaluation(spec=s, key=r.key, record=_jsonable(r.record), frame=frame, run_dir=rd,
                                      cached=False)
        return [found[s] for s in specs]  # type: ignore[misc]


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it reads back from its JSON file (arrays as lists), so fresh and cached ones look alike."""
    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(record, default=default))
