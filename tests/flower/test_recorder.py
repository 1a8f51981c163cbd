"""Record any Flower app: the user's own tiny Flower app (``_user_app.py``) wrapped in
RecordingStrategy writes a fedsafe run directory: the config its server knows, every round's global model,
per-client downlinks where they differ, each client's returned model, with the run store's hashes; a recording
killed before round 2's checkpoint resumes without losing or mixing rounds. In-memory Grid (fast); the SIGKILL
variant runs in a subprocess (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

pytest.importorskip("flwr", reason="the Flower tests need flwr: pip install -e '.[dev,flower]'")

from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvg

from fedsafe.flower.recording import read_recording
from fedsafe.runs import open_run
from fedsafe.runs.store import RunFileError, RunStore

from ._user_app import (
    MODEL,
    ROUNDS,
    TESTS_DIR,
    N,
    NoisyDownlink,
    UserGrid,
    client_data,
    make_net,
    record,
    server_identity,  # noqa: F401 -- the autouse fixture
    server_main,
    store_of,
    user_strategy,
)

pytestmark = pytest.mark.timeout(300)


# -- the tests -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return record(tmp_path_factory.mktemp("recorded") / "run")


def test_recording_is_a_run_directory_with_the_config_the_server_knows(recorded):
    rec = read_recording(recorded)
    assert (rec["model"]["name"], rec["num_clients"], rec["rounds"]) == (MODEL, N, ROUNDS)
    assert rec["strategy"] == ["FedAvg"] and rec["strategy_settings"]["min_train_nodes"] == N
    store = store_of(recorded)
    assert store.is_complete()
    rows = store.read_json(store.layout.metrics)
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
    path = store.layout.final_model(1)
    copy = tmp_path / "run"
    other = open_run(copy, config_hash="0" * 64).store
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
    assert [r["downlink"] for r in store.read_json(store.layout.metrics)] == ["per-client", "per-client"]


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
    rows = store.read_json(store.layout.metrics)
    assert [r["round"] for r in rows] == [1, 2] and store.read_json(store.layout.summary)["resumed_from"] == 1
    assert {int(m.content["config"]["server-round"]) for m in grid.sent} == {2}
    ref = store_of(recorded)
    for t in range(ROUNDS + 1):
        for k, v in store.load_global(t).items():
            torch.testing.assert_close(v, ref.load_global(t)[k], atol=1e-6, rtol=0)
    again = UserGrid()
    server_main(again, run_dir, Watching(**inner))  # complete: nothing is trained again
    assert again.sent == [] and seen == [1, 2, 2]


KILL_AT_ROUND_2 = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from flwr.supercore.task_identity import TaskIdentity
from fedsafe.runs.store import RunStore
import flower._user_app as user

TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
real = RunStore.save_round
def killed(self, round_, **kw):
    if round_ == 2:  # round 2's global model is on disk, its checkpoint is not
        self.save_global(2, kw["global_state"])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, round_, **kw)
RunStore.save_round = killed
user.server_main(user.UserGrid(), Path(sys.argv[1]))
"""


@pytest.mark.slow
def test_recording_killed_with_sigkill_resumes(recorded, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_AT_ROUND_2, str(run_dir), TESTS_DIR], capture_output=True,
                          text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    store = store_of(run_dir)
    assert store.load_checkpoint().round == 1 and store.layout.global_model(2).is_file()
    server_main(UserGrid(), run_dir)
    assert [r["round"] for r in store.read_json(store.layout.metrics)] == [1, 2]
    ref = store_of(recorded)
    for i in range(N):
        for k, v in store.load_final(i).items():
            torch.testing.assert_close(v, ref.load_final(i)[k], atol=1e-6, rtol=0)


def test_a_flower_dp_wrapper_is_recorded_with_its_noise(tmp_path):
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

    inner = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=N, min_available_nodes=N)
    dp = DifferentialPrivacyServerSideFixedClipping(inner, noise_multiplier=0.05, clipping_norm=2.0,
                                                    num_sampled_clients=N)
    server_main(UserGrid(), tmp_path / "run", dp)
    rec = read_recording(tmp_path / "run")
    assert rec["strategy"] == ["DifferentialPrivacyServerSideFixedClipping", "FedAvg"]
    assert rec["dp"] == {"class": "DifferentialPrivacyServerSideFixedClipping", "noise_multiplier": 0.05,
                         "clipping_norm": 2.0, "num_sampled_clients": N}
    store = store_of(tmp_path / "run")
    assert store.read_json(store.layout.privacy_report)["clip"] == 2.0
    # the global model is the wrapper's (clipped, noised) aggregate, not the plain mean of the returned models
    finals = [store.load_final(i) for i in range(N)]
    mean = {k: sum(f[k] for f in finals) / N for k in finals[0]}
    assert any(not torch.allclose(v, mean[k], atol=1e-4) for k, v in store.load_global(ROUNDS).items())


def test_replies_without_a_partition_id_are_told_apart_by_node(tmp_path, caplog):
    server_main(UserGrid(report_partition=False), tmp_path / "run")
    store = store_of(tmp_path / "run")
    assert [r["clients"] for r in store.read_json(store.layout.metrics)] == [[0, 1, 2], [0, 1, 2]]
    finals = [store.load_final(i)["fc.weight"] for i in range(N)]
    assert all(not torch.equal(finals[i], finals[j]) for i in range(N) for j in range(i))
    assert sum("reports no 'partition-id'" in r.getMessage() for r in caplog.records) == N


def test_a_recording_of_another_federation_is_refused(recorded):
    grid = UserGrid()
    strategy = user_strategy(recorded)
    with pytest.raises(ValueError, match="another federation.*rounds"):
        strategy.start(grid=grid, initial_arrays=ArrayRecord(make_net().state_dict()), num_rounds=ROUNDS + 1)
    assert grid.sent == []
