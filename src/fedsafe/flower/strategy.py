"""The fedsafe strategy on Flower: one federated round of SPEC section 3, keyed by the fedsafe client index.

A subclass of Flower's message-based ``FedAvg`` whose two hooks call the same engine-independent pieces as the
in-process :class:`fedsafe.federation.simulator.Simulator`, in the same order:

``configure_train`` (round t)
    for every client i: its own copy w_t + n_i (:func:`fedsafe.federation.round.downlink_copy`, keyed by
    (seed, t, i)), passed through the server hook's ``adapt_downlink`` (Fed-Safe adaptation), sent to the node
    holding partition i.
``aggregate_train``
    the clients' uplinks (clipped and noised by the clients, :func:`fedsafe.federation.round.uplink`) are
    averaged by :func:`fedsafe.federation.round.aggregate` (weighted by the clients' data sizes, or unweighted),
    then the server hook's ``after_aggregation`` (adversarial training) runs; the round is written to the run
    directory exactly as the simulator writes it (global model, last K received copies, metrics, checkpoint).
``configure_evaluate`` (after round T only)
    the final downlink, keyed as round T + 1: each client's final model, saved as ``models/final/client_i.pt``
    and sent to the client, which reports its accuracy.

Clients are addressed by partition id (the fedsafe client index), mapped to Flower node ids once at start-up
(:func:`discover_partitions`); a missing or failed client fails the round rather than silently changing the
federation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from torch import nn

from ..federation.client import accuracy
from ..federation.data import FederatedData
from ..federation.hooks import ServerHook
from ..federation.round import aggregate, downlink_copy
from ..federation.simulator import FederationSpec
from ..runs.atomic import torch_save, write_json
from ..runs.rundir import RunDir
from .app import partition_fingerprint, record_to_state, state_to_record

__all__ = ["FedSafeStrategy", "discover_partitions", "ClientFailure"]

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


class FedSafeStrategy(FedAvg):
    """FedAvg with per-client noisy downlinks, client-side clipped and noised uplinks and fedsafe's server hooks.

    Args:
        spec: the federation's rounds, noise, clipping and aggregation (as the simulator's).
        data: the federation's tensors (the server uses the sizes, the global test set and the client test sets
            only through the clients' reports).
        nodes: Flower node id of each client index 0..N-1 (see :func:`discover_partitions`).
        model: the server's model instance for evaluation (weights overwritten on each use).
        server_hook: the defence run by the server, or None.
        run_dir: where rounds are written (None: kept in memory only).
        first_round: the fedsafe round of Flower's round 1 (> 1 when resuming a checkpoint).
        client_states, metrics: the state restored from a checkpoint; ``client_states`` are then sent to the
            clients with their first downlink (their ``context.state`` is new).
    """

    def __init__(self, *, spec: FederationSpec, data: FederatedData, nodes: Sequence[int], model: nn.Module,
                 server_hook: ServerHook | None = None, run_dir: RunDir | None = None, first_round: int = 1,
                 client_states: Sequence[StateDict] | None = None, metrics: Sequence[dict[str, Any]] = ()) -> None:
        n = data.num_clients
        super().__init__(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=n, min_evaluate_nodes=n,
                         min_available_nodes=n)
        if len(nodes) != n:
            raise ValueError(f"need one node per client: {len(nodes)} nodes for {n} clients")
        if not 1 <= first_round <= spec.rounds:
            raise ValueError(f"first_round must be in 1..{spec.rounds}, got {first_round}")
        self.spec, self.data, self.nodes, self.model = spec, data, list(nodes), model
        self.server_hook, self.run_dir, self.first_round = server_hook, run_dir, first_round
        self.sizes = [len(s) for s in data.client_train]
        self.client_states: list[StateDict] = list(client_states) if client_states else [{} for _ in range(n)]
        self.metrics: list[dict[str, Any]] = list(metrics)
        self._push_states = client_states is not None and any(self.client_states)
        self.global_state: StateDict | None = None
        self.final_models: list[StateDict] = []
        self.final_row: dict[str, Any] | None = None
        self._round: dict[str, Any] = {}

    # -- helpers -----------------------------------------------------------------------------------------
    def fedsafe_round(self, server_round: int) -> int:
        return server_round + self.first_round - 1

    def _should_eval(self, t: int) -> bool:
        e = self.spec.eval_every
        return t == self.spec.rounds or (e > 0 and t % e == 0)

    def _acc(self, state: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
        self.model.load_state_dict(state)
        s = self.spec
        return accuracy(self.model, x, y, batch_size=s.eval_batch_size, precision=s.local.precision,
                        channels_last=s.local.channels_last)

    def downlink(self, global_state: Mapping[str, torch.Tensor], t: int, row: dict[str, Any]) -> list[StateDict]:
        """Every client's copy of round ``t``: w_t + n_i, then the server hook's adaptation (costs into ``row``)."""
        s, out = self.spec, []
        for i in range(self.data.num_clients):
            copy = downlink_copy(global_state, std=s.downlink_noise, seed=s.seed, round_=t, client=i)
            if self.server_hook is not None:
                copy, cost = self.server_hook.adapt_downlink(global_state, copy, round_=t, client=i)
                _add_cost(row, cost)
            out.append(copy)
        return out

    def _messages(self, states: Sequence[StateDict], t: int, server_round: int, message_type: str,
                  extra: Sequence[StateDict] | None = None) -> list[Message]:
        msgs = []
        for i, (node, state) in enumerate(zip(self.nodes, states, strict=True)):
            content = RecordDict({"arrays": state_to_record(state), "config": ConfigRecord(
                {"server-round": server_round, "fedsafe-round": t, "partition-id": i})})
            if extra is not None:
                content["client-state"] = state_to_record(extra[i])
            msgs.append(Message(content=content, message_type=message_type, dst_node_id=node))
        return msgs

    # -- training ----------------------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        t = self.fedsafe_round(server_round)
        t0 = time.perf_counter()
        row: dict[str, Any] = {"round": t}
        received = self.downlink(record_to_state(arrays), t, row)
        self._round = {"t": t, "t0": t0, "row": row, "received": received}
        extra = self.client_states if self._push_states else None
        self._push_states = False
        log.info("round %d/%d: sending %d copies", t, self.spec.rounds, len(received))
        return self._messages(received, t, server_round, MessageType.TRAIN, extra)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        t, t0, row, received = (self._round[k] for k in ("t", "t0", "row", "received"))
        s = self.spec
        ordered = _replies_by_partition(replies, self.nodes, f"round {t}")
        uploads = [record_to_state(m.content["arrays"]) for m in ordered]
        reports = [m.content["metrics"] for m in ordered]
        global_state = aggregate(uploads, self.sizes, weighted=s.weighted)
        if self.server_hook is not None:
            global_state, cost = self.server_hook.after_aggregation(global_state, round_=t)
            _add_cost(row, cost)
        row.update(train_loss=[float(r["train-loss"]) for r in reports],
                   train_passes=int(sum(int(r["train-passes"]) for r in reports)),
                   train_seconds=float(sum(float(r["train-seconds"]) for r in reports)))
        if self._should_eval(t):
            row["client_local_acc"] = [float(r["local-acc"]) for r in reports]
            row["client_received_acc"] = [float(r["received-acc"]) for r in reports]
            row["global_acc"] = self._acc(global_state, self.data.global_test.x, self.data.global_test.y)
        row["round_seconds"] = time.perf_counter() - t0
        self.metrics.append(row)
        for i, m in enumerate(ordered):
            if "client-state" in m.content.array_records:
                self.client_states[i] = record_to_state(m.content["client-state"])
        self.global_state = global_state
        self._save_round(t, global_state, received)
        log.info("round %d/%d: global acc %s (%.2f s)", t, s.rounds, row.get("global_acc"), row["round_seconds"])
        summary = MetricRecord({"train-loss": sum(row["train_loss"]) / len(row["train_loss"])})
        if "global_acc" in row:
            summary["global-acc"] = float(row["global_acc"])
        return state_to_record(global_state), summary

    def _save_round(self, t: int, global_state: StateDict, received: list[StateDict]) -> None:
        """The same files, in the same order, as the in-process simulator writes after a round."""
        rd, s = self.run_dir, self.spec
        if rd is None:
            return
        torch_save(global_state, rd.global_model(t))
        if t > s.rounds - s.keep_received:
            for i, st in enumerate(received):
                torch_save(st, rd.received(t, i))
        write_json(rd.metrics, self.metrics)
        # The checkpoint is written last: a round counts as completed only once it exists.
        torch_save({"round": t, "rounds": s.rounds, "num_clients": self.data.num_clients,
                    "global_state": global_state, "client_states": self.client_states, "metrics": self.metrics},
                   rd.checkpoint)
        rd.prune_received(s.rounds - s.keep_received + 1)

    # -- the final downlink --------------------------------------------------------------------------------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                           ) -> Iterable[Message]:
        t = self.fedsafe_round(server_round)
        if t != self.spec.rounds:
            return []
        final = t + 1
        row: dict[str, Any] = {"round": final, "final": True}
        self.final_models = self.downlink(record_to_state(arrays), final, row)
        self.final_row = row
        if self.run_dir is not None:
            for i, f in enumerate(self.final_models):
                torch_save(f, self.run_dir.final_model(i))
        return self._messages(self.final_models, final, server_round, MessageType.EVALUATE)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if self.fedsafe_round(server_round) != self.spec.rounds or self.final_row is None:
            return None
        ordered = _replies_by_partition(replies, self.nodes, "final downlink")
        accs = [float(m.content["metrics"]["final-acc"]) for m in ordered]
        self.final_row["client_final_acc"] = accs
        return MetricRecord({"client-final-acc-mean": sum(accs) / len(accs)})

    def summary(self) -> None:
        log.info("fedsafe strategy: %d clients, rounds %d..%d, s_D=%g, C=%s, s_U=%g, %s, defence %s",
                 self.data.num_clients, self.first_round, self.spec.rounds, self.spec.downlink_noise,
                 self.spec.uplink_clip, self.spec.uplink_noise, "weighted" if self.spec.weighted else "unweighted",
                 getattr(self.server_hook, "name", "none"))


def _add_cost(row: dict[str, Any], cost: Mapping[str, float]) -> None:
    for k, v in cost.items():
        key = f"defense_{k}"
        row[key] = float(row.get(key, 0.0)) + float(v)
