"""In-process federated simulator (SPEC section 3): deterministic, checkpointed every round, resumable.

One round t = 1..T:
  1. downlink: client i gets w_t + n_i (its own draw), passed through the server hook (a defence may adapt it);
     the client hook (an attacker) sees the received copy and updates its persistent state;
  2. E local epochs from the received copy (loss from ``hooks.loss_fn``);
  3. uplink: clip to C, add N(0, s_U^2);
  4. FedAvg weighted by data size (or unweighted);
  5. the server hook's ``after_aggregation``.
After round T a last downlink (keyed as round T + 1) gives each client its final model.

The run is a pure function of (config, data, seed): every draw is keyed by (seed, purpose, round, client).
A run killed at any point restarts from its last completed round and ends bit-identical to an
uninterrupted one (the checkpoint holds all state that crosses rounds; no RNG state needs saving).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..progress import Progress, report
from ..runs.atomic import torch_load, torch_save, write_json
from ..runs.rundir import RunDir
from .client import LocalSpec, accuracy, local_train
from .data import FederatedData
from .hooks import Hooks
from .round import aggregate, downlink_copy, uplink
from .state import clone

__all__ = ["FederationSpec", "SimulationResult", "Simulator"]

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class FederationSpec:
    rounds: int
    seed: int
    local: LocalSpec
    downlink_noise: float = 0.0
    uplink_clip: float | None = None
    uplink_noise: float = 0.0
    weighted: bool = True
    keep_received: int = 10
    eval_every: int = 1
    eval_batch_size: int = 256


@dataclass
class SimulationResult:
    final_models: list[StateDict]
    global_state: StateDict
    metrics: list[dict[str, object]]
    received: dict[int, list[StateDict]] = field(default_factory=dict)  # round -> per-client copies (last K)
    client_states: list[StateDict] = field(default_factory=list)
    resumed_from: int = 0


class Simulator:
    """Runs a federation in this process.

    Args:
        spec: rounds, noise, clipping, local training.
        data: the federation's tensors.
        model_factory: builds the (deterministically initialised) model; called once.
        hooks: defences and attackers (see :mod:`fedsafe.federation.hooks`).
        run_dir: where to checkpoint and write models and metrics; ``None`` keeps everything in memory.
        augment_fn: training augmentation (x, generator) -> x.
        progress: progress callback ("rounds", "local training").
    """

    def __init__(self, *, spec: FederationSpec, data: FederatedData, model_factory: Callable[[], nn.Module],
                 hooks: Hooks | None = None, run_dir: RunDir | None = None,
                 augment_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 progress: Progress | None = None) -> None:
        self.spec, self.data, self.hooks = spec, data, hooks or Hooks()
        self.run_dir, self.augment_fn, self.progress = run_dir, augment_fn, progress
        self.model = model_factory()
        if spec.local.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.sizes = [len(s) for s in data.client_train]
        if min(self.sizes) == 0:
            raise ValueError(f"every client needs training data; sizes are {self.sizes}")

    # -- evaluation -------------------------------------------------------------------------------------
    def _acc(self, state: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
        self.model.load_state_dict(state)
        return accuracy(self.model, x, y, batch_size=self.spec.eval_batch_size, precision=self.spec.local.precision,
                        channels_last=self.spec.local.channels_last)

    def _should_eval(self, round_: int) -> bool:
        e = self.spec.eval_every
        return round_ == self.spec.rounds or (e > 0 and round_ % e == 0)

    # -- checkpointing ----------------------------------------------------------------------------------
    def _load_checkpoint(self) -> dict[str, object] | None:
        if self.run_dir is None or not self.run_dir.checkpoint.is_file():
            return None
        ck = torch_load(self.run_dir.checkpoint)
        if ck.get("num_clients") != self.data.num_clients or ck.get("rounds") != self.spec.rounds:
            raise ValueError(f"{self.run_dir.checkpoint}: checkpoint is for a different federation "
                             f"({ck.get('num_clients')} clients, {ck.get('rounds')} rounds)")
        return ck

    def _save_round(self, round_: int, global_state: StateDict, received: list[StateDict],
                    client_states: list[StateDict], metrics: list[dict[str, object]]) -> None:
        rd = self.run_dir
        if rd is None:
            return
        torch_save(global_state, rd.global_model(round_))
        if round_ > self.spec.rounds - self.spec.keep_received:
            for i, s in enumerate(received):
                torch_save(s, rd.received(round_, i))
        write_json(rd.metrics, metrics)
        # The checkpoint is written last: a round counts as completed only once it exists.
        torch_save({"round": round_, "rounds": self.spec.rounds, "num_clients": self.data.num_clients,
                    "global_state": global_state, "client_states": client_states, "metrics": metrics},
                   rd.checkpoint)

    # -- the run ----------------------------------------------------------------------------------------
    def initial_state(self) -> StateDict:
        return clone(self.model.state_dict())

    def run(self, *, stop_after: int | None = None) -> SimulationResult:
        """Run (or resume) to the end, or until round ``stop_after`` has completed."""
        s, n = self.spec, self.data.num_clients
        global_state = self.initial_state()
        client_states: list[StateDict] = [{} for _ in range(n)]
        metrics: list[dict[str, object]] = []
        start = 1
        ck = self._load_checkpoint()
        if ck is not None:
            start = int(ck["round"]) + 1
            global_state, client_states = ck["global_state"], ck["client_states"]
            metrics = list(ck["metrics"])
            log.info("resuming from round %d of %d", start, s.rounds)
        resumed_from = start - 1
        received_mem: dict[int, list[StateDict]] = {}
        last = s.rounds if stop_after is None else min(stop_after, s.rounds)
        for t in range(start, last + 1):
            t0 = time.perf_counter()
            received = self._downlink(global_state, t, client_states, metrics_row := {"round": t})
            uploads, losses, local_acc, passes, train_s = [], [], [], 0, 0.0
            for i in range(n):
                report(self.progress, "local training", i, n)
                cx, cy = self.data.client_train[i].x, self.data.client_train[i].y
                new_state, st = local_train(self.model, received[i], cx, cy, s.local, seed=s.seed, round_=t,
                                            client=i, loss_fn=self.hooks.loss_fn, augment_fn=self.augment_fn)
                losses.append(st.loss)
                passes += st.passes
                train_s += st.seconds
                if self._should_eval(t):
                    test = self.data.client_test[i]
                    local_acc.append(self._acc(new_state, test.x, test.y))
                uploads.append(uplink(new_state, clip=s.uplink_clip, std=s.uplink_noise, seed=s.seed, round_=t,
                                      client=i))
            report(self.progress, "local training", n, n)
            global_state = aggregate(uploads, self.sizes, weighted=s.weighted)
            if self.hooks.server is not None:
                global_state, cost = self.hooks.server.after_aggregation(global_state, round_=t)
                _add_cost(metrics_row, cost)
            metrics_row.update(train_loss=losses, train_passes=passes, train_seconds=train_s)
            if self._should_eval(t):
                metrics_row["client_local_acc"] = local_acc
                metrics_row["client_received_acc"] = [
                    self._acc(received[i], self.data.client_test[i].x, self.data.client_test[i].y) for i in range(n)]
                metrics_row["global_acc"] = self._acc(global_state, self.data.global_test.x, self.data.global_test.y)
            metrics_row["round_seconds"] = time.perf_counter() - t0
            metrics.append(metrics_row)
            if t > s.rounds - s.keep_received:
                received_mem[t] = received
            self._save_round(t, global_state, received, client_states, metrics)
            if self.run_dir is not None:
                self.run_dir.prune_received(s.rounds - s.keep_received + 1)
            report(self.progress, "rounds", t, s.rounds)
            log.info("round %d/%d: global acc %s", t, s.rounds, metrics_row.get("global_acc"))
        if last < s.rounds:
            return SimulationResult(final_models=[], global_state=global_state, metrics=metrics,
                                    received=received_mem, client_states=client_states, resumed_from=resumed_from)
        final_row: dict[str, object] = {"round": s.rounds + 1, "final": True}
        finals = self._downlink(global_state, s.rounds + 1, None, final_row)
        final_row["client_final_acc"] = [
            self._acc(finals[i], self.data.client_test[i].x, self.data.client_test[i].y) for i in range(n)]
        if self.run_dir is not None:
            for i, f in enumerate(finals):
                torch_save(f, self.run_dir.final_model(i))
        return SimulationResult(final_models=finals, global_state=global_state, metrics=metrics + [final_row],
                                received=received_mem, client_states=client_states, resumed_from=resumed_from)

    def _downlink(self, global_state: StateDict, t: int, client_states: list[StateDict] | None,
                  row: dict[str, object]) -> list[StateDict]:
        s, out = self.spec, []
        for i in range(self.data.num_clients):
            copy = downlink_copy(global_state, std=s.downlink_noise, seed=s.seed, round_=t, client=i)
            if self.hooks.server is not None:
                copy, cost = self.hooks.server.adapt_downlink(global_state, copy, round_=t, client=i)
                _add_cost(row, cost)
            if client_states is not None and self.hooks.client is not None:
                client_states[i] = self.hooks.client.on_receive(copy, round_=t, client=i,
                                                                client_state=client_states[i])
            out.append(copy)
        return out


def _add_cost(row: dict[str, object], cost: Mapping[str, float]) -> None:
    for k, v in cost.items():
        key = f"defense_{k}"
        row[key] = float(row.get(key, 0.0)) + float(v)  # type: ignore[arg-type]
