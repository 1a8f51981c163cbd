"""A trained run, loaded for attacking it (design §8): its config, its data (rebuilt from the config and checked
against ``splits.json``), every client's verified final model, and the clients' online state (the CRN buffers)
from the last checkpoint. The run is opened by :func:`fedsafe.runs.open_run` and read through its store only::

    ctx = load_context(open_run("runs/exp"))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..build import check_run_data, prepare_data
from ..build import model_factory as build_model_factory
from ..config import ExperimentConfig
from ..device import resolve_device
from ..federation.federated_data import FederatedData
from ..federation.state import non_finite
from ..progress import Progress
from ..runs.errors import RunFileMissing
from ..runs.layout import CONFIG
from ..runs.run import Run
from ..runs.store import RunFileError, RunStore
from ..training.trainer import did_not_learn, majority_rate, why_not_learned

__all__ = ["RunContext", "load_context"]

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What the evaluation reads from a run directory (:func:`load_context`); ``crn_cache`` memoises replayed CRN."""

    store: RunStore
    cfg: ExperimentConfig
    data: FederatedData
    models: list[nn.Module]
    model_factory: Callable[[], nn.Module]
    total_rounds: int
    client_states: list[dict[str, torch.Tensor]] | None
    crn_cache: dict[tuple, tuple[torch.Tensor, float]] = field(default_factory=dict)
    learned: bool = True

    @property
    def num_clients(self) -> int:
        return self.data.num_clients

    @property
    def run_dir(self) -> RunStore:
        return self.store


def load_context(run: Run, *, data: FederatedData | None = None,
                 model_factory: Callable[[], nn.Module] | None = None, progress: Progress | None = None,
                 device: str | None = None, complete: bool = False) -> RunContext:
    """Load the opened ``run`` (:func:`fedsafe.runs.open_run`), complete: its config, its data (rebuilt from the
    config unless given; it must be the data the run trained on, its recorded fingerprint, and its client test ids
    must equal ``splits.json``), every client's final model (verified: config and content hashes, client) and the
    online client states (if checkpointed), on ``device`` (auto, cpu, cuda, cuda:N; default the run's
    ``train.device``: a run trained on a GPU can be attacked on a CPU and the reverse). Refuses a model with
    non-finite weights, a run that stopped early (RunIncomplete: how far it got; with ``complete``, also one whose
    final models exist but whose summary.json does not) and damaged JSON files (naming them); warns when the run
    did not learn."""
    cfg, store = run.config, run.store
    if cfg is None:
        raise RunFileError(f"{run.root}: not a fedsafe run directory (no readable {CONFIG})")
    if complete and not store.layout.summary.is_file():  # a damaged one is named below
        raise run.incomplete()
    damaged = store.damaged()
    if damaged:
        raise RunFileError(f"{damaged[0]}: not valid JSON: the file is damaged; training the run again with its own "
                           f"config (fedsafe train --config {store.layout.config} -o {store.root}) recomputes "
                           "it")
    if not store.layout.final_model(0).is_file():
        if not store.is_complete():
            raise store.incomplete(cfg.train.rounds)
        raise RunFileMissing(f"{store.layout.final_model(0)}: missing: the run holds its records only (unpacked "
                             "from a records archive, without model weights); a new attack or audit needs the "
                             f"weights: use the results folder that has them, or delete {store.root} and the "
                             "reproduction trains the run again")
    dev = resolve_device(device or cfg.train.device)
    data = data.to(dev) if data is not None else prepare_data(cfg, progress=progress, device=dev)
    if store.json_state(store.layout.data_fingerprint) == "ok":  # runs written before fingerprints: splits.json only
        check_run_data(store, data, doing="attack or audit")
    _check_splits(store, data)
    factory = model_factory or build_model_factory(cfg, data, device=data.device)
    models = []
    for i in range(data.num_clients):
        state = store.load_final(i)
        bad = list(non_finite(state))
        if bad:
            raise ValueError(f"{store.layout.final_model(i)}: client {i}'s final model has non-finite weights (in "
                             f"{bad[0]}): the federation was poisoned or diverged; attacking it would report a "
                             "broken model as robust")
        model = factory()
        model.load_state_dict(state)
        models.append(model.eval())
    states, total = None, cfg.train.rounds
    ck = store.load_checkpoint()
    if ck is not None:
        total = ck.rounds
        if ck.round == total:
            states = [{k: v.to(data.device) for k, v in s.items()} for s in ck.client_states]
    learned = True
    if store.is_complete():
        summary = store.read_json(store.layout.summary)
        acc = summary.get("global_acc")
        learned = bool(summary.get("learned", not did_not_learn(acc, majority_rate(data.global_test.y))))
        if not learned:
            log.warning("%s: the run did not learn (%s): attack results on it say nothing about robustness",
                        store.root, why_not_learned(summary, majority_rate(data.global_test.y)))
    return RunContext(store=store, cfg=cfg, data=data, models=models, model_factory=factory, total_rounds=total,
                      client_states=states, learned=learned)


def _check_splits(store: RunStore, data: FederatedData) -> None:
    rd = store.layout
    saved = store.read_json(rd.splits).get("client_test")
    ours = [list(s.ids) for s in data.client_test]
    if saved is None or len(saved) != len(ours):
        raise ValueError(f"{rd.splits}: holds {len(saved or [])} client test sets, the data {len(ours)}")
    for i, (a, b) in enumerate(zip(saved, ours, strict=True)):
        if list(a) != b:
            raise ValueError(f"client {i}'s test set differs from {rd.splits} (the data changed since the run "
                             f"was trained: different files, size or seed?)")
