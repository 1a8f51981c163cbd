"""Record any Flower app (issue 19, item 3): a tiny Flower app written as a user would (its own model, ClientApp and
ServerApp, below; nothing of fedsafe's but the wrapper), recorded by RecordingStrategy, then audited.

The fast tests drive the user's ServerApp body on an in-memory Grid that calls the user's ClientApp in this process;
the slow one runs the app in Flower's simulation engine (Ray) and audits the recording end to end."""

from __future__ import annotations

import itertools
import json
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
from typer.testing import CliRunner

from fedsafe.cli import app as cli_app
from fedsafe.experiments.audit import AuditSettings
from fedsafe.flower.audit_data import AuditDataError, audit_data_from_arrays, load_audit_data
from fedsafe.flower.recorder import RecordingStrategy
from fedsafe.flower.recording import audit_recorded, read_recording, recording_hash
from fedsafe.runs.store import RunFileError, RunStore

pytestmark = pytest.mark.timeout(300)

N, ROUNDS, SIZE = 3, 2, 8
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
    def __init__(self) -> None:
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
            replies.append(client_app(msg, self.contexts[msg.metadata.dst_node_id]))
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
def _server_identity():
    """Messages take their run and source from the process's task identity, which Flower sets in a ServerApp."""
    from flwr.supercore.task_identity import TaskIdentity

    old = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = old


def store_of(run_dir: Path) -> RunStore:
    return RunStore(run_dir, config_hash=recording_hash(read_recording(run_dir)))


def audit_arrays() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i in range(N):
        for part in ("train", "test"):
            x, y = client_data(i, part)
            out[f"{part}_x_{i}"], out[f"{part}_y_{i}"] = x.numpy(), y.numpy()
    out["heldout_x"], out["heldout_y"] = images(7, 40)
    out["server_x"], out["server_y"] = images(8, 40)
    return out


QUICK = AuditSettings.of(quick=True, steps=2, eot=(2,), shadows=2, max_shadow_epochs=2, masking=False)


# -- the tests -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The user's app, recorded on the in-memory Grid (plain FedAvg)."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    run_dir = tmp_path_factory.mktemp("recorded") / "run"
    server_main(UserGrid(), run_dir)
    return run_dir


def test_recording_is_a_run_directory_with_the_config_the_server_knows(recorded):
    rec = read_recording(recorded)
    assert (rec["model"]["name"], rec["num_clients"], rec["rounds"]) == (MODEL, N, ROUNDS)
    assert rec["strategy"] == ["FedAvg"] and rec["strategy_settings"]["min_train_nodes"] == N
    store = store_of(recorded)
    assert store.is_complete()
    rows = store.read_json(store.dir.metrics)
    assert [r["round"] for r in rows] == [1, 2] and all(r["clients"] == [0, 1, 2] for r in rows)
    assert all(r["downlink"] == "shared" for r in rows) and store.received_rounds() == []
    assert rows[-1]["evaluate_metrics"]["accuracy"] >= 0


def test_global_model_is_the_weighted_mean_of_the_returned_client_models(recorded):
    # FedAvg written out here: round T's global = sum_i n_i w_i / sum_i n_i over what the clients returned in round T
    store = store_of(recorded)
    finals = [store.load_final(i) for i in range(N)]
    sizes = [len(client_data(i, "train")[1]) for i in range(N)]
    glob = store.load_global(ROUNDS)
    for k, v in glob.items():
        mean = sum(n * f[k].double() for n, f in zip(sizes, finals, strict=True)) / sum(sizes)
        torch.testing.assert_close(v.double(), mean, atol=1e-6, rtol=0)
    assert not torch.equal(finals[0]["fc.weight"], finals[1]["fc.weight"])  # each client's own model
    init = store.load_global(0)
    assert all(torch.equal(init[k], v) for k, v in make_net().state_dict().items())


def test_recorded_files_carry_the_runs_hashes(recorded, tmp_path):
    store = store_of(recorded)
    path = store.dir.final_model(1)
    copy = tmp_path / "run"
    other = RunStore(copy, config_hash="0" * 64)
    with pytest.raises(RunFileError, match="another run"):
        other.load_state(path, kind="final")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(RunFileError):
        store.load_state(bad, kind="final")


def test_per_client_downlinks_are_recorded_where_they_differ(tmp_path):
    grid = UserGrid()
    inner = NoisyDownlink(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=N, min_available_nodes=N)
    server_main(grid, tmp_path / "run", inner)
    store = store_of(tmp_path / "run")
    assert store.received_rounds() == [1, 2]
    part = {nid: i for i, nid in enumerate(grid.ids)}
    sent = [m for m in grid.sent if m.metadata.message_type == "train"]
    assert len(sent) == N * ROUNDS
    for t, msgs in ((1, sent[:N]), (2, sent[N:])):
        for m in msgs:
            got = store.load_received(t, part[m.metadata.dst_node_id])
            for k, v in m.content["arrays"].to_torch_state_dict().items():
                assert torch.equal(got[k], v)
    assert [r["downlink"] for r in store.read_json(store.dir.metrics)] == ["per-client", "per-client"]


def test_killed_recording_resumes_without_losing_or_mixing_rounds(recorded, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real = RunStore.save_round
    seen: list[int] = []

    def killed(self, round_, **kw):  # round 2's global model is written, then the process dies before the checkpoint
        if round_ == 2:
            self.save_global(2, kw["global_state"])
            raise KeyboardInterrupt("killed")
        return real(self, round_, **kw)

    class Watching(FedAvg):
        def aggregate_train(self, server_round, replies):
            seen.append(server_round)
            return super().aggregate_train(server_round, replies)

    inner = dict(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=N, min_evaluate_nodes=N,
                 min_available_nodes=N)
    monkeypatch.setattr(RunStore, "save_round", killed)
    with pytest.raises(KeyboardInterrupt):
        server_main(UserGrid(), run_dir, Watching(**inner))
    monkeypatch.setattr(RunStore, "save_round", real)
    store = store_of(run_dir)
    assert not store.is_complete() and store.load_checkpoint().round == 1
    grid = UserGrid()
    server_main(grid, run_dir, Watching(**inner))
    assert seen == [1, 2, 2]  # the wrapped strategy saw the true round numbers after the resume
    rows = store.read_json(store.dir.metrics)
    assert [r["round"] for r in rows] == [1, 2] and store.read_json(store.dir.summary)["resumed_from"] == 1
    assert {int(m.content["config"]["server-round"]) for m in grid.sent} == {2}
    ref = store_of(recorded)
    for t in range(ROUNDS + 1):
        for k, v in store.load_global(t).items():
            torch.testing.assert_close(v, ref.load_global(t)[k], atol=1e-6, rtol=0)
    again = UserGrid()
    server_main(again, run_dir, Watching(**inner))  # complete: nothing is trained again
    assert again.sent == [] and seen == [1, 2, 2]


def test_a_recording_of_another_federation_is_refused(recorded):
    grid = UserGrid()
    strategy = user_strategy(recorded)
    with pytest.raises(ValueError, match="another federation.*rounds"):
        strategy.start(grid=grid, initial_arrays=ArrayRecord(make_net().state_dict()), num_rounds=ROUNDS + 1)
    assert grid.sent == []


def test_audit_data_errors_name_the_file_and_key(tmp_path):
    arrays = audit_arrays()
    del arrays["heldout_y"]
    with pytest.raises(AuditDataError, match="missing heldout_y"):
        audit_data_from_arrays(arrays, origin="a.npz")
    arrays = audit_arrays()
    arrays["test_x_1"] = arrays["test_x_1"] * 3
    with pytest.raises(AuditDataError, match=r"test_x_1: float images must be finite pixels in \[0, 1\]"):
        audit_data_from_arrays(arrays, origin="a.npz")
    (tmp_path / "x.npz").write_text("not a zip")
    with pytest.raises(AuditDataError, match="x.npz: not a readable .npz"):
        load_audit_data(tmp_path / "x.npz")


def test_audit_of_a_recording_reports_what_it_used(recorded, tmp_path):
    path = tmp_path / "audit.npz"
    np.savez(path, **audit_arrays())
    s = audit_recorded(recorded, data=load_audit_data(path), data_path=path, settings=QUICK)
    assert s["clients"] == N and s["rounds"] == ROUNDS and s["profile"] == "recorded Flower run"
    assert {a["attack"] for a in s["attacks"]} == {"pgd", "eot-pgd"}
    assert s["attack_notes"] == ["no PGD+CRN: the run kept no received copies (federation.keep_received_rounds = 0)"]
    assert len(s["membership"]["insider"]["pairs"]) == N * (N - 1)
    used = s["recorded"]["data"]
    assert used["file"] == str(path) and used["members"][0] == "train_x_0 (48 images)"
    assert "heldout_x (40 images)" in s["sentences"][0] and MODEL in s["sentences"][0]
    assert s["learned"] and s["global_acc"] > 0.8  # the square is easy: the federation learned it
    assert json.loads((recorded / "audit" / "audit.json").read_text())["recorded"]["inputs"] == s["recorded"]["inputs"]


def test_cli_audits_a_recording_with_the_users_model_and_data(recorded, tmp_path):
    path = tmp_path / "audit.npz"
    np.savez(path, **audit_arrays())
    args = ["audit", str(recorded), "--model", MODEL, "--data", str(path), "--quick", "--steps", "2",
            "--shadows", "2", "--max-shadow-epochs", "1", "--no-masking", "--set", "train.lr=0.01"]
    res = CliRunner().invoke(cli_app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "recorded Flower run" in text and "adam lr 0.01, batch 32" in text
    res = CliRunner().invoke(cli_app, ["audit", str(recorded)])
    assert res.exit_code == 2 and "name its audit data with --data" in " ".join(res.output.split())
    res = CliRunner().invoke(cli_app, [*args[:6], "--set", "federation.downlink_noise=1"])
    assert res.exit_code == 2 and "takes only train.*" in " ".join(res.output.split())


@pytest.mark.slow
def test_flower_simulation_recorded_and_audited_end_to_end(tmp_path, monkeypatch):
    from flwr.simulation import run_simulation

    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setenv("FLWR_DISABLE_UPDATE_CHECK", "1")
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    root = str(Path(__file__).resolve().parents[2])  # the Ray workers import this module by name
    monkeypatch.syspath_prepend(root)
    run_dir = tmp_path / "run"
    backend = {"init_args": {"num_cpus": 2, "_node_ip_address": "127.0.0.1", "include_dashboard": False,
                             "logging_level": "ERROR", "log_to_driver": False},
               "client_resources": {"num_cpus": 1}}
    run_simulation(user_server_app(run_dir), client_app, num_supernodes=N, backend_config=backend)
    store = store_of(run_dir)
    assert store.is_complete() and [r["round"] for r in store.read_json(store.dir.metrics)] == [1, 2]
    path = tmp_path / "audit.npz"
    np.savez(path, **audit_arrays())
    s = audit_recorded(run_dir, data=load_audit_data(path), data_path=path, settings=QUICK)
    assert s["learned"] and len(s["membership"]["server"]["per_client"]) == N
    import ray

    assert not ray.is_initialized()  # run_simulation shut its Ray cluster down
