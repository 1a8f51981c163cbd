"""Shared pieces of the Flower tests: the tiny config, an in-memory Grid that calls the ClientApp directly, and
the comparison of two run directories."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from uuid import uuid4

import pytest
import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid

from fedsafe.config import ExperimentConfig, load_config
from fedsafe.federation.state import max_abs_diff
from fedsafe.flower.app import run_config_for
from fedsafe.runs.atomic import torch_load
from fedsafe.runs.layout import RunLayout

# The brief's tiny federation: downlink noise, uplink clipping and noise, the fed-safe defense, online CRN.
TINY = [
    "seed=11", "threads=1", "task.name=synthetic", "task.image_size=16", "task.synthetic_size=300",
    "splits.num_clients=3", "splits.num_shards=15", "splits.client_test_size=20", "model.width=0.04",
    "train.rounds=2", "train.local_epochs=1", "train.precision=fp32", "train.batch_size=16",
    "federation.downlink_noise=0.01", "federation.uplink_clip=5.0", "federation.uplink_noise=0.001",
    "defense.name=fed-safe", "defense.fraction=0.5", "defense.steps=2", "crn.enabled=true", "crn.windows=[1, 2]",
]


def tiny_config(*extra: str) -> ExperimentConfig:
    return load_config(None, overrides=[*TINY, *extra])


class LocalGrid(Grid):
    """A Grid that delivers each message to the ClientApp in this process, one Context per node.

    Node ids are random and listed in shuffled order, so nothing may depend on them; a ClientApp exception
    becomes an error reply, as on a SuperNode. In training rounds, the nodes of the partitions in ``fail`` answer
    with an error and those in ``drop`` do not answer.
    """

    def __init__(self, cfg: ExperimentConfig, *, num_nodes: int | None = None, node_configs: Sequence[dict] = (),
                 fail: Iterable[int] = (), drop: Iterable[int] = ()) -> None:
        from fedsafe.flower.client_app import app as client_app

        n = cfg.splits.num_clients if num_nodes is None else num_nodes
        self.client_app = client_app
        self.run_config = run_config_for(cfg, threads=1)
        ids = [int(uuid4().int % 2**62) for _ in range(n)]
        configs = list(node_configs) or [{"partition-id": i, "num-partitions": n} for i in range(n)]
        self.contexts = {nid: Context(run_id=1, node_id=nid, node_config=dict(c), state=RecordDict(),
                                      run_config=dict(self.run_config)) for nid, c in zip(ids, configs, strict=True)}
        self.order = list(reversed(ids))
        self.fail, self.drop = set(fail), set(drop)
        self.sent: list[Message] = []
        self._ids = itertools.count(1)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.order)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = f"m{next(self._ids)}"
            self.sent.append(msg)
            ctx = self.contexts[msg.metadata.dst_node_id]
            part = int(ctx.node_config.get("partition-id", -1))
            lost = msg.metadata.message_type == "train"  # failures are injected into training rounds
            if lost and part in self.drop:
                continue
            if lost and part in self.fail:
                replies.append(Message(Error(code=0, reason="injected failure"), reply_to=msg))
                continue
            try:
                replies.append(self.client_app(msg, ctx))
            except Exception as e:  # the SuperNode turns a ClientApp exception into an error reply
                replies.append(Message(Error(code=0, reason=f"{type(e).__name__}: {e}"), reply_to=msg))
        return replies

    # -- not used by fedsafe ----------------------------------------------------------------------------------
    def set_run(self, run) -> None:  # pragma: no cover
        raise NotImplementedError

    @property
    def run(self):  # pragma: no cover
        raise NotImplementedError

    def create_message(self, *a, **k):  # pragma: no cover
        raise NotImplementedError

    def push_messages(self, messages):  # pragma: no cover
        raise NotImplementedError

    def pull_messages(self, message_ids):  # pragma: no cover
        raise NotImplementedError


def _state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a model file of a run directory (stored with its run's hashes, fedsafe.runs.store)."""
    return torch_load(path)["state"]


def model_files(rd: RunLayout) -> list[str]:
    return sorted(str(p.relative_to(rd.root)) for p in (rd.root / "models").rglob("*.pt"))


def assert_same_run(a: RunLayout, b: RunLayout, *, atol: float = 1e-5) -> float:
    """Same files, final / global / received models within ``atol``, same client hook states and training losses.
    Returns the largest absolute weight difference over the final models."""
    assert model_files(a) == model_files(b)
    worst = 0.0
    for rel in model_files(a):
        d = max_abs_diff(_state(a.root / rel), _state(b.root / rel))
        assert d <= atol, f"{rel}: max |diff| {d}"
        if rel.startswith("models/final/"):
            worst = max(worst, d)
    ca, cb = torch_load(a.checkpoint), torch_load(b.checkpoint)
    assert ca["round"] == cb["round"]
    for sa, sb in zip(ca["client_states"], cb["client_states"], strict=True):
        assert sorted(sa) == sorted(sb)
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
            assert torch.allclose(sa[k].double(), sb[k].double(), atol=atol, rtol=0), k
    for ra, rb in zip(ca["metrics"], cb["metrics"], strict=True):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], abs=1e-6)
        assert ra.get("client_received_acc") == rb.get("client_received_acc")
        assert ra.get("global_acc") == rb.get("global_acc")
    for name in ("config.yaml", "splits.json", "data_report.json"):
        assert (a.root / name).read_text() == (b.root / name).read_text(), name
    pa, pb = (_without_seconds(json.loads((r.root / "privacy_report.json").read_text())) for r in (a, b))
    assert pa == pb
    return worst


def _without_seconds(obj):
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def run_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
