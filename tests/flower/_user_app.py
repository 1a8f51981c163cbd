"""A tiny Flower app written as a user would (its own model, data, ClientApp, ServerApp and strategy; nothing of
fedsafe's but the RecordingStrategy wrapper), and the glue of the recorder's tests: an in-memory Grid that calls
the user's ClientApp in this process. Imported under one name by the tests, the Ray workers of the simulation test
and the killed subprocess (``flower._user_app``, with ``tests/`` on the path), so the recorded model factory is the
same string everywhere."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from uuid import uuid4

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn

from fedsafe.flower.recorder import RecordingStrategy
from fedsafe.flower.recording import read_recording, recording_hash
from fedsafe.runs import open_run
from fedsafe.runs.store import RunStore

N, ROUNDS, SIZE = 3, 2, 8
TESTS_DIR = str(Path(__file__).resolve().parents[1])
MODEL = f"{__name__}:make_net"


# -- the user's app ------------------------------------------------------------------------------------------------

class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 2, in_channels: int = 1, image_size: int = SIZE) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.fc = nn.Linear(4 * (image_size // 2) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.max_pool2d(torch.relu(self.conv(x)), 2), 1))


def make_net(num_classes: int = 2, in_channels: int = 1, image_size: int = SIZE) -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(num_classes, in_channels, image_size)


def images(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 1: a bright square in the middle of the noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 0.5, (n, 1, SIZE, SIZE)).astype(np.float32)
    x[y == 1, :, 2:6, 2:6] += 0.5
    return x, y


def client_data(partition: int, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = images(100 + 2 * partition + (part == "test"), 48 if part == "train" else 24)
    return torch.from_numpy(x), torch.from_numpy(y)


client_app = ClientApp()


@client_app.train()
def client_train(msg: Message, context: Context) -> Message:
    p = int(context.node_config["partition-id"])
    model = make_net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = client_data(p, "train")
    g = torch.Generator().manual_seed(1000 * int(msg.content["config"]["server-round"]) + p)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        for idx in torch.randperm(len(x), generator=g).split(16):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    metrics = MetricRecord({"num-examples": len(x), "train-loss": float(loss.detach()), "partition-id": p})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)


@client_app.evaluate()
def client_evaluate(msg: Message, context: Context) -> Message:
    model = make_net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = client_data(int(context.node_config["partition-id"]), "test")
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": len(x), "accuracy": acc})}), reply_to=msg)


class NoisyDownlink(FedAvg):
    """A user's strategy that sends every node its own noisy copy of the global model."""

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        out = []
        for m in super().configure_train(server_round, arrays, config, grid):  # one shared content: copy it
            g = torch.Generator().manual_seed(m.metadata.dst_node_id % 10_000 + server_round)
            noisy = ArrayRecord({k: v + 0.01 * torch.randn(v.shape, generator=g)
                                 for k, v in arrays.to_torch_state_dict().items()})
            out.append(Message(RecordDict({"arrays": noisy, "config": m.content["config"]}),
                               message_type=m.metadata.message_type, dst_node_id=m.metadata.dst_node_id,
                               group_id=m.metadata.group_id))
        return out


def user_strategy(run_dir: Path, inner: FedAvg | None = None) -> RecordingStrategy:
    inner = inner or FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=N, min_evaluate_nodes=N,
                            min_available_nodes=N)
    return RecordingStrategy(inner, run_dir, model=MODEL, num_clients=N)


def server_main(grid: Grid, run_dir: Path, inner: FedAvg | None = None):
    return user_strategy(run_dir, inner).start(grid=grid, initial_arrays=ArrayRecord(make_net().state_dict()),
                                               num_rounds=ROUNDS)


def user_server_app(run_dir: Path) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        server_main(grid, run_dir)

    return app


# -- an in-memory Grid calling the user's ClientApp ------------------------------------------------------------------

class UserGrid(Grid):
    """The user's nodes in this process; ``report_partition=False``: the replies do not name their partition."""

    def __init__(self, *, report_partition: bool = True) -> None:
        self.report_partition = report_partition
        self.ids = [int(uuid4().int % 2**62) for _ in range(N)]
        self.contexts = {nid: Context(run_id=1, node_id=nid, node_config={"partition-id": i, "num-partitions": N},
                                      state=RecordDict(), run_config={}) for i, nid in enumerate(self.ids)}
        self.sent: list[Message] = []
        self._ids = itertools.count(1)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = f"m{next(self._ids)}"
            self.sent.append(msg)
            reply = client_app(msg, self.contexts[msg.metadata.dst_node_id])
            if not self.report_partition and "metrics" in reply.content:
                m = reply.content["metrics"]
                reply.content["metrics"] = MetricRecord({k: v for k, v in m.items() if k != "partition-id"})
            replies.append(reply)
        return replies

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


@pytest.fixture(autouse=True)
def server_identity():
    """Messages take their run and source from the process's task identity, which Flower sets in a ServerApp."""
    from flwr.supercore.task_identity import TaskIdentity

    old = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = old


def record(run_dir: Path) -> Path:
    """The user's app recorded on the in-memory Grid (plain FedAvg)."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    server_main(UserGrid(), run_dir)
    return run_dir


def store_of(run_dir: Path) -> RunStore:
    return open_run(run_dir, config_hash=recording_hash(read_recording(run_dir))).store


def audit_arrays() -> dict[str, np.ndarray]:
    """The audit data set the user names: each client's own sets, held-out images, the server's images."""
    out: dict[str, np.ndarray] = {}
    for i in range(N):
        for part in ("train", "test"):
            x, y = client_data(i, part)
            out[f"{part}_x_{i}"], out[f"{part}_y_{i}"] = x.numpy(), y.numpy()
    out["heldout_x"], out["heldout_y"] = images(7, 40)
    out["server_x"], out["server_y"] = images(8, 40)
    return out
