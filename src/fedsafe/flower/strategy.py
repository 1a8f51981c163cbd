"""The fedsafe strategy on Flower: a thin message adapter over the round protocol of
:mod:`fedsafe.federation.protocol`, keyed by the fedsafe client index.

A Flower ``Strategy`` (not a FedAvg subclass) whose four hooks only move values between Flower messages and the
same functions the in-process :class:`fedsafe.federation.simulator.Simulator` calls, in the same order:

``configure_train`` (round t)
    :func:`~fedsafe.federation.protocol.server_downlink`: every client's own copy, sent to the node holding that
    partition.
``aggregate_train``
    the replies decoded into :class:`~fedsafe.federation.protocol.ClientUpdate`;
    :func:`~fedsafe.federation.protocol.server_aggregate` (screening, aggregation, the server hook);
    :func:`~fedsafe.federation.protocol.round_record`; the round saved through :class:`fedsafe.runs.store.RunStore`.
``configure_evaluate`` (after round T only)
    the final downlink, keyed as round T + 1: each client's final model, saved and sent; the client reports its
    accuracy.

Clients are addressed by partition id (the fedsafe client index), mapped to Flower node ids once at start-up
(:func:`discover_partitions`); a missing or failed client fails the round rather than silently changing the
federation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from torch import nn

from ..federation.federated_data import FederatedData
from ..federation.federation_spec import FederationSpec
from ..federation.hooks import ServerHook
from ..federation.protocol import evaluate, round_record, server_aggregate, server_downlink
from ..runs.store import RunStore
from .app import partition_fingerprint, record_to_state, state_to_record
from .messages import downlink_content, update_from_reply

__all__ = ["ClientFailure", "FedSafeStrategy", "discover_partitions"]

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


class ClientFailure(RuntimeError):
    """A client did not answer, or answered with an error: the round cannot be the configured round."""


def _replies_by_partition(replies: Iterable[Message], nodes: Sequence[int], what: str) -> list[Message]:
    out: dict[int, Message] = {}
    errors = []
    for msg in replies:
        if msg.has_error():
            errors.append(f"node {msg.metadata.src_node_id}: {msg.error.reason}")
            continue
        i = int(msg.content["metrics"]["partition-id"])
        if not 0 <= i < len(nodes) or nodes[i] != msg.metadata.src_node_id:
            raise ClientFailure(f"{what}: node {msg.metadata.src_node_id} answered for partition {i}, which belongs "
                                "to another node")
        out[i] = msg
    missing = [i for i in range(len(nodes)) if i not in out]
    if errors or missing:
        raise ClientFailure(f"{what}: {len(missing)} of {len(nodes)} clients gave no result "
                            f"(partitions {missing[:10]}){'; ' if errors else ''}{'; '.join(errors[:5])}")
    return [out[i] for i in range(len(nodes))]


def discover_partitions(grid: Grid, data: FederatedData, *, timeout: float = 600.0, poll: float = 0.5) -> list[int]:
    """Wait for the federation's nodes, ask each which partition it holds, and return the node id of every client
    index 0..N-1. Raises ClientFailure when a partition is missing, held twice, or holds other data than the
    server's split (a node that read another data set or config)."""
    n = data.num_clients
    deadline = time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < n:
        if time.monotonic() > deadline:
            raise ClientFailure(f"only {len(node_ids)} of {n} SuperNodes connected within {timeout:.0f} s")
        time.sleep(poll)
    msgs = [Message(RecordDict({"config": ConfigRecord({"ask": "partition"})}), message_type=MessageType.QUERY,
                    dst_node_id=nid) for nid in node_ids]
    nodes: dict[int, int] = {}
    errors = []
    for msg in grid.send_and_receive(msgs, timeout=timeout):
        if msg.has_error():
            errors.append(f"node {msg.metadata.src_node_id}: {msg.error.reason}")
            continue
        i = int(msg.content["metrics"]["partition-id"])
        if i in nodes:
            raise ClientFailure(f"partition {i} is held by two nodes ({nodes[i]} and {msg.metadata.src_node_id})")
        theirs, ours = str(msg.content["info"]["fingerprint"]), partition_fingerprint(data, i)
        if theirs != ours:
            raise ClientFailure(f"partition {i}: the node's images differ from the server's split (fingerprint "
                                f"{theirs} vs {ours}): every machine needs the same data and config")
        nodes[i] = msg.metadata.src_node_id
    missing = [i for i in range(n) if i not in nodes]
    if missing:
        raise ClientFailure(f"no node holds partitions {missing[:10]} ({len(missing)} of {n})"
                            + (f"; {'; '.join(errors[:5])}" if errors else ""))
    return [nodes[i] for i in range(n)]


class FedSafeStrategy(Strategy):
    """The round protocol over Flower messages (module docstring).

    Args:
        spec: the federation's rounds, noise, clipping and aggregation (as the simulator's).
        data: the federation's tensors (the server uses the sizes and the global test set).
        nodes: Flower node id of each client index 0..N-1 (see :func:`discover_partitions`).
        model: the server's model instance for evaluation (weights overwritten on each use).
        server_hook: the defense run by the server, or None.
        store: where rounds are written (None: kept in memory only).
        first_round: the fedsafe round of Flower's round 1 (> 1 when resuming a checkpoint).
        client_states, metrics: the state restored from a checkpoint; ``client_states`` are then sent to the
            clients with their first downlink (their ``context.state`` is new).
    """

    def __init__(self, *, spec: FederationSpec, data: FederatedData, nodes: Sequence[int], model: nn.Module,
                 server_hook: ServerHook | None = None, store: RunStore | None = None, first_round: int = 1,
                 client_states: Sequence[StateDict] | None = None, metrics: Sequence[dict[str, Any]] = ()) -> None:
        n = data.num_clients
        if len(nodes) != n:
            raise ValueError(f"need one node per client: {len(nodes)} nodes for {n} clients")
        if not 1 <= first_round <= spec.rounds:
            raise ValueError(f"first_round must be in 1..{spec.rounds}, got {first_round}")
        self.spec, self.data, self.nodes, self.model = spec, data, list(nodes), model
        self.server_hook, self.store, self.first_round = server_hook, store, first_round
        self.sizes = [len(s) for s in data.client_train]
        self.client_states: list[StateDict] = list(client_states) if client_states else [{} for _ in range(n)]
        self.metrics: list[dict[str, Any]] = list(metrics)
        self._push_states = client_states is not None and any(self.client_states)
        self.global_state: StateDict | None = None
        self.final_models: list[StateDict] = []
        self.final_row: dict[str, Any] | None = None
        self._round: dict[str, Any] = {}

    def fedsafe_round(self, server_round: int) -> int:
        return server_round + self.first_round - 1

    def _messages(self, states: Sequence[StateDict], t: int, server_round: int, message_type: str,
                  client_states: Sequence[StateDict] | None = None) -> list[Message]:
        return [Message(content=downlink_content(state, server_round=server_round, fedsafe_round=t, partition=i,
                                                 client_state=None if client_states is None else client_states[i]),
                        message_type=message_type, dst_node_id=node)
                for i, (node, state) in enumerate(zip(self.nodes, states, strict=True))]

    # -- training ----------------------------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        t = self.fedsafe_round(server_round)
        row: dict[str, Any] = {"round": t}
        start = record_to_state(arrays, self.spec.local.device)
        self._round = {"t": t, "t0": time.perf_counter(), "row": row, "start": start}
        received = server_downlink(start, spec=self.spec, round_=t, num_clients=self.data.num_clients,
                                   server_hook=self.server_hook, row=row)
        self._round["received"] = received
        states = self.client_states if self._push_states else None
        self._push_states = False
        log.info("round %d/%d: sending %d copies", t, self.spec.rounds, len(received))
        return self._messages(received, t, server_round, MessageType.TRAIN, states)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        t, t0, row, start, received = (self._round[k] for k in ("t", "t0", "row", "start", "received"))
        s = self.spec
        ordered = _replies_by_partition(replies, self.nodes, f"round {t}")
        updates = [update_from_reply(m, round_=t, device=s.local.device) for m in ordered]
        agg = server_aggregate([u.upload for u in updates], sizes=self.sizes, spec=s, round_=t,
                               server_hook=self.server_hook, row=row, reference=start)
        acc = evaluate(self.model, agg.global_state, self.data.global_test, s) if s.should_evaluate(t) else None
        self.metrics.append(round_record(row, updates, agg, global_acc=acc, started=t0))
        for i, u in enumerate(updates):
            if "client-state" in ordered[i].content.array_records:
                self.client_states[i] = u.client_state
        self.global_state = agg.global_state
        if self.store is not None:
            self.store.save_round(t, rounds=s.rounds, global_state=agg.global_state,
                                  received=received if s.keeps_received(t) else None,
                                  client_states=self.client_states, metrics=self.metrics,
                                  keep_from=s.rounds - s.keep_received + 1)
        log.info("round %d/%d: global acc %s (%.2f s)", t, s.rounds, row.get("global_acc"), row["round_seconds"])
        summary = MetricRecord({"train-loss": sum(row["train_loss"]) / len(row["train_loss"])})
        if acc is not None:
            summary["global-acc"] = float(acc)
        return state_to_record(agg.global_state), summary

    # -- the final downlink ------------------------------------------------------------------------------------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                           ) -> Iterable[Message]:
        t = self.fedsafe_round(server_round)
        if t != self.spec.rounds:
            return []
        final = t + 1
        row: dict[str, Any] = {"round": final, "final": True}
        self.final_models = server_downlink(record_to_state(arrays, self.spec.local.device), spec=self.spec,
                                            round_=final, num_clients=self.data.num_clients,
                                            server_hook=self.server_hook, row=row)
        self.final_row = row
        if self.store is not None:
            for i, f in enumerate(self.final_models):
                self.store.save_final(i, f)
        return self._messages(self.final_models, final, server_round, MessageType.EVALUATE)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if self.fedsafe_round(server_round) != self.spec.rounds or self.final_row is None:
            return None
        ordered = _replies_by_partition(replies, self.nodes, "final downlink")
        accs = [float(m.content["metrics"]["final-acc"]) for m in ordered]
        self.final_row["client_final_acc"] = accs
        return MetricRecord({"client-final-acc-mean": sum(accs) / len(accs)})

    def summary(self) -> None:
        log.info("fedsafe strategy: %d clients, rounds %d..%d, s_D=%g, C=%s, s_U=%g, %s (%s), defense %s",
                 self.data.num_clients, self.first_round, self.spec.rounds, self.spec.downlink_noise,
                 self.spec.uplink_clip, self.spec.uplink_noise, self.spec.aggregator,
                 "weighted" if self.spec.weighted else "unweighted", getattr(self.server_hook, "name", "none"))
