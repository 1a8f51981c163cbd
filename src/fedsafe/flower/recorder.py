"""Record any Flower app as a fedsafe run directory: :class:`RecordingStrategy` wraps the user's strategy (as
Flower's own ``DifferentialPrivacyServerSideFixedClipping`` does: every hook is delegated to it) and writes, through
:class:`fedsafe.runs.store.RunStore`, what ``fedsafe audit`` needs while the federation trains:

    config.yaml                 what the server can know: clients, rounds, the model's factory, the strategy (its
                                class chain and its plain settings), how clients are told apart
    models/global/round_XXXX.pt the global model before round 1 (round 0) and after every round
    models/received/round_XXXX/client_YYY.pt   each client's downlink copy, in rounds where the copies differ
                                (per-client noise, personalised models); a shared copy is the previous global model
    metrics.json, checkpoint.pt every round: the clients that answered, the aggregated and per-client metrics; the
                                global model and every client's last returned model (the resume point)
    models/final/client_YYY.pt  each client's model as it returned it in its last training reply
    summary.json                last, when the run is complete

with the content hashes, atomic writes, lock and resume rules of every fedsafe run. Clients are told apart by the
integer ``client_key`` (default ``partition-id``) of their reply's metrics or config records (stable across a
resume); a reply without it falls back to the order of the Flower node ids (stable within one run only).

Resume: the wrapper overrides ``start``. Started again on a run directory holding a checkpoint of the same config,
it continues from the last completed round: the user's ``initial_arrays`` are replaced by the recorded global
model, and the wrapped strategy sees the true round numbers (round 2 stays round 2). A complete run is not trained
again. A directory of another config is refused with a one-line error.

Example (a user's ServerApp)::

    strategy = RecordingStrategy(FedAvg(fraction_train=1.0), "runs/my-fl", model="my_app.task:Net",
                                 num_clients=3)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(Net().state_dict()), num_rounds=5)
    # then: fedsafe audit runs/my-fl --model my_app.task:Net --data audit.npz
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from ..runs.run import open_run
from ..runs.store import RunStore, state_digest
from .recording import read_recording, recording_config, recording_hash, recording_yaml

__all__ = ["RecordingStrategy"]

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


def _state(record: ArrayRecord) -> StateDict:
    return {k: v.detach().cpu() for k, v in record.to_torch_state_dict().items()} if len(record) else {}


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if isinstance(v, int | float | str | bool)}


def _dp_settings(strategy: Strategy) -> dict[str, Any]:
    """Noise multiplier and clipping norm of a Flower DP wrapper in the chain (empty when there is none)."""
    s: Any = strategy
    while s is not None:
        if hasattr(s, "noise_multiplier") and hasattr(s, "clipping_norm"):
            return {"class": type(s).__name__, **_plain({k: getattr(s, k) for k in
                                                         ("noise_multiplier", "clipping_norm", "num_sampled_clients")
                                                         if hasattr(s, k)})}
        s = getattr(s, "strategy", None)
    return {}


class RecordingStrategy(Strategy):
    """Wrap ``strategy`` and record the federation into ``run_dir`` (module docstring).

    Args:
        strategy: the user's strategy (any Flower Message-API ``Strategy``, DP wrappers included).
        run_dir: the run directory (new, or one of the same config to resume).
        model: the model's factory as ``fedsafe audit --model`` takes it (``package.module:factory``); recorded.
        num_clients: the federation's clients (client indices are 0..num_clients-1).
        model_kwargs: keywords of the factory (recorded; ``fedsafe audit`` passes them on).
        client_key: the integer each client reports in its reply's metrics (or config) record to name itself.
        keep_received_rounds: per-client downlink copies kept for the last K rounds (as fedsafe runs keep them).
    """

    def __init__(self, strategy: Strategy, run_dir: str | Path, *, model: str, num_clients: int,
                 model_kwargs: Mapping[str, Any] | None = None, client_key: str = "partition-id",
                 keep_received_rounds: int = 10) -> None:
        super().__init__()
        if num_clients < 1:
            raise ValueError(f"num_clients must be >= 1, got {num_clients}")
        if keep_received_rounds < 0:
            raise ValueError(f"keep_received_rounds must be >= 0, got {keep_received_rounds}")
        self.strategy, self.run_dir, self.model = strategy, Path(run_dir), model
        self.num_clients, self.model_kwargs = num_clients, dict(model_kwargs or {})
        self.client_key, self.keep_received_rounds = client_key, keep_received_rounds
        self.store: RunStore | None = None
        self.rounds = 0
        self.offset = 0  # rounds completed before this start (a resume)
        self.global_state: StateDict = {}
        self.client_states: list[StateDict] = [{} for _ in range(num_clients)]
        self.metrics: list[dict[str, Any]] = []
        self._nodes: dict[int, int] = {}  # Flower node id -> client index
        self._sent: dict[int, ArrayRecord] = {}  # this round's downlink, by node id
        self._t0 = 0.0

    # -- identity ---------------------------------------------------------------------------------------------

    def config(self, rounds: int) -> dict[str, Any]:
        """What the recording's ``config.yaml`` holds for a run of ``rounds`` rounds."""
        chain, s = [], self.strategy
        while s is not None:
            chain.append(type(s).__name__)
            s = getattr(s, "strategy", None)
        settings = _plain({k: v for k, v in vars(self.strategy).items() if not k.startswith("_")})
        return recording_config(model=self.model, model_kwargs=self.model_kwargs, num_clients=self.num_clients,
                                rounds=rounds, strategy=chain, strategy_settings=settings,
                                dp=_dp_settings(self.strategy), client_key=self.client_key,
                                keep_received_rounds=self.keep_received_rounds)

    def _open(self, rounds: int) -> RunStore:
        if rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {rounds}")
        cfg = self.config(rounds)
        old = read_recording(self.run_dir)
        if old is not None and recording_hash(old) != recording_hash(cfg):
            changed = sorted(k for k in set(cfg) | set(old) if cfg.get(k) != old.get(k))
            raise ValueError(f"{self.run_dir}: holds a recording of another federation (differs in "
                             f"{', '.join(changed)}); choose another run directory")
        self.rounds = rounds
        self.store = open_run(self.run_dir, config_hash=recording_hash(cfg)).store
        return self.store

    def _header(self, store: RunStore) -> None:
        cfg = self.config(self.rounds)
        dp = cfg["dp"]
        privacy = {"noise": "recorded Flower run: the noise is the strategy's" if dp else "none recorded",
                   "sigma_uplink": None, "sigma_downlink": None, "clip": dp.get("clipping_norm"),
                   "flower_dp": dp, "defense": {"name": "none"}}
        store.write_header(config_text=recording_yaml(cfg), splits={},
                           data_report={"task": "recorded Flower run", "synthetic": False,
                                        "notes": ["the data stayed with the clients: an audit names its own data"]},
                           privacy_report=privacy)

    # -- the run ----------------------------------------------------------------------------------------------

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, timeout: float = 3600,
              train_config: ConfigRecord | None = None, evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None) -> Result:
        """Flower's ``Strategy.start``, recorded; resumes a checkpointed recording, skips a complete one."""
        store = self._open(num_rounds)
        with store.lock():
            if store.is_complete():
                log.info("%s: the recording is complete: nothing to train", store.root)
                result = Result()
                result.arrays = ArrayRecord(store.load_global(num_rounds))
                return result
            self._header(store)
            ck = store.load_checkpoint(rounds=num_rounds, num_clients=self.num_clients)
            arrays = initial_arrays
            self._nodes = {}
            if ck is None:
                self.offset, self.metrics, self.global_state = 0, [], {}
                self.client_states = [{} for _ in range(self.num_clients)]
                store.save_global(0, _state(initial_arrays))
            else:
                self.offset, self.metrics = ck.round, list(ck.metrics)
                self.global_state, self.client_states = ck.global_state, [dict(s) for s in ck.client_states]
                arrays = ArrayRecord(ck.global_state)
                log.info("%s: resuming after round %d of %d", store.root, ck.round, num_rounds)
            self._t0 = time.perf_counter()
            offset, remaining = self.offset, num_rounds - self.offset
            result = Result()
            if remaining > 0:
                shifted = None if evaluate_fn is None else (lambda r, a: evaluate_fn(r + offset, a))
                result = super().start(grid, arrays, remaining, timeout, train_config, evaluate_config, shifted)
                for name in ("train_metrics_clientapp", "evaluate_metrics_clientapp", "evaluate_metrics_serverapp"):
                    setattr(result, name, {r + offset: v for r, v in getattr(result, name).items()})
            self._finish(store)
            return result

    def _finish(self, store: RunStore) -> None:
        finals = [i for i, s in enumerate(self.client_states) if s]
        for i in finals:
            store.save_final(i, self.client_states[i])
        store.write_summary({"kind": "fedsafe-flower-recording", "rounds": self.rounds,
                             "num_clients": self.num_clients, "strategy": self.config(self.rounds)["strategy"],
                             "final_models": finals, "resumed_from": self.offset,
                             "seconds": time.perf_counter() - self._t0})
        log.info("%s: recording complete (%d rounds, final models of clients %s)", store.root, self.rounds, finals)

    def _client(self, msg: Message) -> int:
        for records in (msg.content.metric_records, msg.content.config_records):
            for rec in records.values():
                if self.client_key in rec:
                    i = int(rec[self.client_key])
                    if not 0 <= i < self.num_clients:
                        raise ValueError(f"node {msg.metadata.src_node_id} reported {self.client_key}={i}, outside "
                                         f"0..{self.num_clients - 1} (num_clients={self.num_clients})")
                    self._nodes[msg.metadata.src_node_id] = i
                    return i
        node = msg.metadata.src_node_id
        if node not in self._nodes:
            free = [i for i in range(self.num_clients) if i not in self._nodes.values()]
            if not free:
                raise ValueError(f"node {node}: more nodes answered than num_clients={self.num_clients}")
            log.warning("node %d reports no %r: it is client %d by node order (not stable across a resume)", node,
                        self.client_key, free[0])
            self._nodes[node] = free[0]
        return self._nodes[node]

    # -- the hooks, delegated with the true round ---------------------------------------------------------------

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        if self.store is None:
            raise RuntimeError("RecordingStrategy records through start(): call strategy.start(...)")
        messages = list(self.strategy.configure_train(server_round + self.offset, arrays, config, grid))
        self._sent = {}
        for m in messages:
            recs = list(m.content.array_records.values())
            if recs:
                self._sent[m.metadata.dst_node_id] = recs[0]
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        t = server_round + self.offset
        replies = list(replies)
        t0 = time.perf_counter()
        arrays, agg_metrics = self.strategy.aggregate_train(t, replies)
        store = self.store
        assert store is not None
        keys = set(self.global_state) or set(self._sent_any().keys())
        answered, per_client, errors = [], {}, []
        for msg in replies:
            if msg.has_error():
                errors.append(f"node {msg.metadata.src_node_id}: {msg.error.reason}")
                continue
            i = self._client(msg)
            answered.append(i)
            per_client[str(i)] = {k: v for rec in msg.content.metric_records.values() for k, v in rec.items()}
            returned = [_state(r) for r in msg.content.array_records.values()]
            returned = [s for s in returned if not keys or set(s) == keys]
            if returned:
                self.client_states[i] = returned[0]
        if arrays is not None:
            self.global_state = _state(arrays)
        elif not self.global_state:
            self.global_state = _state(self._sent_any())
        shared = self._save_downlinks(t)
        row = {"round": t, "clients": sorted(answered), "failures": errors, "aggregated": arrays is not None,
               "downlink": "shared" if shared else "per-client", "train_metrics": dict(agg_metrics or {}),
               "client_metrics": per_client, "round_seconds": time.perf_counter() - t0}
        self.metrics.append(row)
        store.save_round(t, rounds=self.rounds, global_state=self.global_state, received=None,
                         client_states=self.client_states, metrics=self.metrics,
                         keep_from=self.rounds - self.keep_received_rounds + 1)
        return arrays, agg_metrics

    def _sent_any(self) -> ArrayRecord:
        return next(iter(self._sent.values()), ArrayRecord())

    def _save_downlinks(self, t: int) -> bool:
        """Save each client's downlink copy of round ``t`` when the copies differ; True when they were one copy."""
        digests = {node: state_digest(_state(rec)) for node, rec in self._sent.items()}
        if len(set(digests.values())) <= 1 or t <= self.rounds - self.keep_received_rounds:
            return len(set(digests.values())) <= 1
        assert self.store is not None
        for node, rec in self._sent.items():
            if node in self._nodes:
                self.store.save_received(t, self._nodes[node], _state(rec))
            else:
                log.warning("round %d: node %d did not answer: its downlink copy is not recorded", t, node)
        return False

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                           ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round + self.offset, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        t = server_round + self.offset
        agg = self.strategy.aggregate_evaluate(t, replies)
        if agg is not None and self.metrics and self.metrics[-1]["round"] == t and self.store is not None:
            self.metrics[-1]["evaluate_metrics"] = dict(agg)
            self.store.write_json(self.store.layout.metrics, self.metrics)
        return agg

    def summary(self) -> None:
        log.info("recording into %s (%d clients, model %s)", self.run_dir, self.num_clients, self.model)
        self.strategy.summary()
