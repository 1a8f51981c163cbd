"""The thin runner: config -> (composition root) data, model, hooks -> simulator -> run directory."""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..build import (
    augment_fn,
    build_hooks,
    check_configured_model,
    federation_spec,
    model_factory,
    model_kwargs,
    prepare_data,
    run_device,
    write_header,
)
from ..config import ExperimentConfig
from ..defaults import LEARN_MARGIN
from ..defenses.cost import defense_cost_summary
from ..device import describe_device
from ..federation.federated_data import FederatedData
from ..federation.federation_spec import FederationSpec
from ..federation.hooks import Hooks
from ..federation.simulator import SimulationResult, Simulator
from ..jsonsafe import json_pct as _pct
from ..models import describe_model
from ..precision import resolve_precision
from ..progress import Progress
from ..runs.run import open_run
from ..runs.store import RunStore

__all__ = ["LearnCheck", "TrainOutcome", "did_not_learn", "learn_check", "majority_rate", "run_summary",
           "summary_learned", "torch_threads", "train", "why_not_learned", "write_run_summary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: RunStore
    result: SimulationResult | None
    data: FederatedData | None  # None when skipped (already complete)
    seconds: float
    skipped: bool = False


def majority_rate(labels: torch.Tensor) -> float:
    """The accuracy of always predicting the most frequent class of ``labels``."""
    if len(labels) == 0:
        raise ValueError("majority_rate of an empty label set")
    return float(torch.bincount(labels.cpu()).max()) / len(labels)


def did_not_learn(acc: float | None, majority: float, *, margin: float = LEARN_MARGIN) -> bool:
    """Design §11: a model whose accuracy is within ``margin`` of the majority-class rate of its test set (or
    undefined) did not learn."""
    return acc is None or math.isnan(acc) or acc <= majority + margin


@dataclass(frozen=True)
class LearnCheck:
    """Whether a run learned (design §11): its global model and every attacked client model (each client's final
    model on its own test set) beyond the majority-class rate by the margin; ``reason`` names those that are not
    ("client 2's model 71.9% vs majority 72.4%"), empty when it learned."""

    learned: bool
    reason: str
    client_learned: tuple[bool, ...]


def learn_check(global_acc: float | None, global_majority: float, client_accs: Sequence[float | None] | None,
                client_majorities: Sequence[float], *, margin: float = LEARN_MARGIN) -> LearnCheck:
    """:class:`LearnCheck` of the global model and the client models (None: no client accuracy recorded, only the
    global model is judged)."""
    failed = []
    if did_not_learn(global_acc, global_majority, margin=margin):
        failed.append(f"global model {_pct(global_acc)} vs majority {_pct(global_majority)}")
    accs = list(client_accs) if client_accs is not None else []
    if accs and len(accs) != len(client_majorities):
        raise ValueError(f"{len(accs)} client accuracies for {len(client_majorities)} clients")
    clients = tuple(not did_not_learn(a, m, margin=margin) for a, m in zip(accs, client_majorities, strict=False))
    failed += [f"client {i}'s model {_pct(a)} vs majority {_pct(m)}"
               for i, (a, m, ok) in enumerate(zip(accs, client_majorities, clients, strict=False)) if not ok]
    return LearnCheck(not failed, "; ".join(failed), clients)


def summary_learned(summary: Mapping[str, Any], data_report: Mapping[str, Any] | None = None) -> LearnCheck:
    """Whether the run of a ``summary.json`` learned, under the current rule. A summary that records its client
    models (``client_learned``, newer runs) is read as it is; an older one is judged again from its global and
    client accuracies, each client's majority-class rate taken from the class counts of its test set in the run's
    data report (``splits.client<i>_test``); without them, from its recorded flag and global model alone."""
    if "client_learned" in summary:
        flags = tuple(bool(v) for v in summary.get("client_learned") or ())
        return LearnCheck(bool(summary.get("learned", True)), str(summary.get("learned_reason") or ""), flags)
    acc, maj = summary.get("global_acc"), summary.get("majority_class_rate")
    if acc is None or maj is None:  # nothing to judge again: the recorded flag
        return LearnCheck(bool(summary.get("learned", True)), "", ())
    splits = (data_report or {}).get("splits") or {}
    accs = summary.get("client_final_acc")
    counts = [splits.get(f"client{i}_test") for i in range(len(accs or []))]
    if not accs or any(not isinstance(c, Mapping) or not sum(c.values()) for c in counts):
        accs, majorities = None, []
    else:
        majorities = [max(c.values()) / sum(c.values()) for c in counts]  # type: ignore[union-attr]
    return learn_check(float(acc), float(maj), accs, majorities)


def why_not_learned(summary: Mapping[str, Any], majority: float | None = None) -> str:
    """Why the run of ``summary`` (a ``summary.json``, a reproduction's summary row, an audit summary) did not learn:
    the reason training recorded (``learned_reason``, newer runs), else, for an older summary, its global model's
    accuracy beside the majority-class rate (``majority``, else the summary's ``majority_class_rate``)."""
    reason = summary.get("learned_reason")
    if isinstance(reason, str) and reason.strip():
        return reason
    maj = majority if majority is not None else summary.get("majority_class_rate")
    return f"global model {_pct(summary.get('global_acc'))} vs majority class {_pct(maj)}"


def _rejections(metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rejected = [{"round": m["round"], **r} for m in metrics for r in m.get("rejected_uploads", [])]
    flagged = [{"round": m["round"], **f} for m in metrics for f in m.get("flagged_uploads", [])]
    return {"rejected_uploads": rejected, "flagged_uploads": flagged}


def run_summary(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec, model: nn.Module,
                metrics: Sequence[Mapping[str, Any]], *, seconds: float, resumed_from: int,
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``summary.json`` (both engines): ``metrics`` are the per-round rows then the final row."""
    final = metrics[-1]
    last_eval = [m for m in metrics if "global_acc" in m][-1]
    majority = majority_rate(data.global_test.y)
    client_majority = [majority_rate(s.y) for s in data.client_test]
    check = learn_check(last_eval["global_acc"], majority, final.get("client_final_acc"), client_majority)
    if not check.learned:
        log.warning("the run did not learn (design §11): %s; attacks on it are meaningless", check.reason)
    device = torch.device(spec.local.device)
    return {
        "fedsafe_version": __version__, "task": data.task, "synthetic": data.synthetic,
        "profile": cfg.profile, "precision": spec.local.precision, "channels_last": spec.local.channels_last,
        **({"crn_precision": resolve_precision(cfg.crn.precision, device)} if cfg.crn.enabled else {}),
        "device": describe_device(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "model": {"name": cfg.model.name, "width": cfg.model.width if cfg.model.name == "paper-cnn" else None,
                  "kwargs": {**model_kwargs(cfg), **cfg.model.kwargs}, "image_size": cfg.task.image_size,
                  "channels": data.in_channels, **describe_model(model),
                  "macs_per_image": int(model.macs_per_image()) if hasattr(model, "macs_per_image") else None},
        "optimizer": cfg.train.optimizer, "rounds": cfg.train.rounds, "clients": data.num_clients,
        "aggregator": spec.aggregator, "global_test_size": len(data.global_test),
        "global_acc": last_eval["global_acc"], "majority_class_rate": majority, "learned": check.learned,
        "learned_reason": check.reason, "client_final_acc": final.get("client_final_acc"),
        "client_majority_class_rate": client_majority, "client_learned": list(check.client_learned),
        **_rejections(metrics), "seconds": seconds,
        "resumed_from_round": resumed_from, **(extra or {}),
    }


def write_run_summary(store: RunStore, cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec,
                      model: nn.Module, metrics: Sequence[Mapping[str, Any]], *, seconds: float, resumed_from: int,
                      extra: Mapping[str, Any] | None = None) -> None:
    """How a complete run ends (both engines): the defense's cost into the privacy report, then summary.json."""
    privacy = store.read_json(store.layout.privacy_report)
    privacy["defense_cost"] = defense_cost_summary(metrics, defense=cfg.defense)
    store.write_json(store.layout.privacy_report, privacy)
    store.write_summary(run_summary(cfg, data, spec, model, metrics, seconds=seconds, resumed_from=resumed_from,
                                    extra=extra))


def _finished(store: RunStore) -> bool:
    """Complete, and none of its JSON files damaged (a damaged one is recomputed by finishing the run again)."""
    return store.is_complete() and not store.damaged()


def train(cfg: ExperimentConfig, run_dir: str | Path, *, hooks: Hooks | None = None,
          progress: Progress | None = None, stop_after: int | None = None, data: FederatedData | None = None,
          lock_wait: float = 0.0) -> TrainOutcome:
    """Train (or resume, or skip if complete) the federation of ``cfg`` into ``run_dir``. A run directory another
    process is writing is refused, or waited for up to ``lock_wait`` seconds (then skipped if it completed)."""
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be a round >= 1, got {stop_after}")
    # a model that cannot be built, or does not fit the task, fails here in one line, before anything is written
    check_configured_model(cfg, None if data is None else len(data.class_names))
    store = open_run(run_dir, config=cfg).store
    if _finished(store):
        return TrainOutcome(run_dir=store, result=None, data=data, seconds=0.0, skipped=True)
    run_device(cfg)  # a device that is not here fails before any work
    with store.lock(wait=lock_wait):
        if _finished(store):  # another process finished it while we waited
            return TrainOutcome(run_dir=store, result=None, data=data, seconds=0.0, skipped=True)
        for path in store.damaged():
            log.warning("%s: damaged (not valid JSON); recomputing it from the checkpoint", path)
        t0 = time.perf_counter()
        data = prepare_data(cfg, progress=progress) if data is None else data.to(run_device(cfg))
        spec = federation_spec(cfg, data)
        write_header(store, cfg, data, spec)
        hooks = hooks if hooks is not None else build_hooks(cfg, data, spec)
        sim = Simulator(spec=spec, data=data, model_factory=model_factory(cfg, data), hooks=hooks, store=store,
                        augment_fn=augment_fn(cfg), progress=progress)
        result = sim.run(stop_after=stop_after)
        seconds = time.perf_counter() - t0
        if stop_after is None or stop_after >= cfg.train.rounds:
            write_run_summary(store, cfg, data, spec, sim.model, result.metrics, seconds=seconds,
                              resumed_from=result.resumed_from)
    return TrainOutcome(run_dir=store, result=result, data=data, seconds=seconds)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for a block (the CLI's job, not the library's)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
