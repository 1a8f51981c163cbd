"""In-process federated simulator (design §3): a loop over the round protocol
(:mod:`fedsafe.federation.protocol`), checkpointed every round through :class:`fedsafe.runs.store.RunStore`.

The run is a pure function of (config, data, seed): every draw is keyed by (seed, purpose, round, client).
A run killed at any point restarts from its last completed round and ends bit-identical to an
uninterrupted one (the checkpoint holds all state that crosses rounds; no RNG state needs saving).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..progress import Progress, report
from ..runs.store import RunStore
from .federated_data import FederatedData
from .federation_spec import FederationSpec
from .hooks import Hooks
from .protocol import client_update as run_client
from .protocol import evaluate, round_record, server_aggregate, server_downlink
from .state import clone

__all__ = ["SimulationResult", "Simulator"]

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


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
        spec: rounds, noise, clipping, aggregation, local training.
        data: the federation's tensors (on ``spec.local.device``).
        model_factory: builds the (deterministically initialised) model, in its training memory format and on its
            device; called once.
        hooks: defenses and attackers (see :mod:`fedsafe.federation.hooks`).
        store: where to checkpoint and write models and metrics; ``None`` keeps everything in memory.
        augment_fn: training augmentation (x, generator) -> x.
        progress: progress callback ("rounds", "local training").
    """

    def __init__(self, *, spec: FederationSpec, data: FederatedData, model_factory: Callable[[], nn.Module],
                 hooks: Hooks | None = None, store: RunStore | None = None,
                 augment_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 progress: Progress | None = None) -> None:
        self.spec, self.data, self.hooks = spec, data, hooks or Hooks()
        self.store, self.augment_fn, self.progress = store, augment_fn, progress
        self.model = model_factory()
        self.sizes = [len(s) for s in data.client_train]
        if min(self.sizes) == 0:
            raise ValueError(f"every client needs training data; sizes are {self.sizes}")

    def initial_state(self) -> StateDict:
        return clone(self.model.state_dict())

    def run(self, *, stop_after: int | None = None) -> SimulationResult:
        """Run (or resume) to the end, or until round ``stop_after`` has completed."""
        s, n = self.spec, self.data.num_clients
        global_state = self.initial_state()
        client_states: list[StateDict] = [{} for _ in range(n)]
        metrics: list[dict[str, object]] = []
        start = 1
        ck = self.store.load_checkpoint(rounds=s.rounds, num_clients=n) if self.store is not None else None
        if ck is not None:
            start = ck.round + 1
            global_state = {k: v.to(s.local.device) for k, v in ck.global_state.items()}
            client_states, metrics = ck.client_states, list(ck.metrics)
            log.info("resuming from round %d of %d", start, s.rounds)
        resumed_from = start - 1
        received_mem: dict[int, list[StateDict]] = {}
        last = s.rounds if stop_after is None else min(stop_after, s.rounds)
        server = self.hooks.server
        for t in range(start, last + 1):
            t0 = time.perf_counter()
            row: dict[str, object] = {"round": t}
            received = server_downlink(global_state, spec=s, round_=t, num_clients=n, server_hook=server, row=row)
            updates = []
            for i in range(n):
                report(self.progress, "local training", i, n)
                u = run_client(self.model, received[i], train=self.data.client_train[i], test=self.data.client_test[i],
                               spec=s, round_=t, client=i, client_state=client_states[i], hooks=self.hooks,
                               augment_fn=self.augment_fn)
                client_states[i] = u.client_state
                updates.append(u)
            report(self.progress, "local training", n, n)
            agg = server_aggregate([u.upload for u in updates], sizes=self.sizes, spec=s, round_=t,
                                   server_hook=server, row=row, reference=global_state)
            global_state = agg.global_state
            acc = evaluate(self.model, global_state, self.data.global_test, s) if s.should_evaluate(t) else None
            metrics.append(round_record(row, updates, agg, global_acc=acc, started=t0))
            kept = s.keeps_received(t)
            if kept:
                received_mem[t] = received
            if self.store is not None:
                self.store.save_round(t, rounds=s.rounds, global_state=global_state,
                                      received=received if kept else None, client_states=client_states,
                                      metrics=metrics, keep_from=s.rounds - s.keep_received + 1)
            report(self.progress, "rounds", t, s.rounds)
            log.info("round %d/%d: global acc %s", t, s.rounds, row.get("global_acc"))
        if last < s.rounds:
            return SimulationResult(final_models=[], global_state=global_state, metrics=metrics,
                                    received=received_mem, client_states=client_states, resumed_from=resumed_from)
        final_row: dict[str, object] = {"round": s.rounds + 1, "final": True}
        finals = server_downlink(global_state, spec=s, round_=s.rounds + 1, num_clients=n, server_hook=server,
                                 row=final_row)
        final_row["client_final_acc"] = [evaluate(self.model, finals[i], self.data.client_test[i], s)
                                         for i in range(n)]
        if self.store is not None:
            for i, f in enumerate(finals):
                self.store.save_final(i, f)
        return SimulationResult(final_models=finals, global_state=global_state, metrics=metrics + [final_row],
                                received=received_mem, client_states=client_states, resumed_from=resumed_from)
