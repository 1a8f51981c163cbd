"""The ServerApp's loop and the ClientApp on an in-memory Grid (no Flower engine): fast checks of the round logic,
the partition mapping, resuming and failures. The real simulation engine and deployment have their own tests."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("flwr", reason="the Flower tests need flwr: pip install -e '.[dev,flower]'")

from fedsafe.flower.client_app import STATE_KEY
from fedsafe.flower.server_app import serve
from fedsafe.flower.strategy import ClientFailure
from fedsafe.runs.layout import RunLayout
from fedsafe.training.trainer import train

from ._helpers import LocalGrid, assert_same_run, run_files, tiny_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _server_identity():
    """Messages take their run and source from the process's task identity, which Flower sets in a ServerApp."""
    from flwr.supercore.task_identity import TaskIdentity

    old = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = old


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The in-process simulator's run of the tiny config."""
    cfg = tiny_config()
    rd = tmp_path_factory.mktemp("inproc")
    train(cfg, rd)
    return cfg, RunLayout(rd)


def test_serve_on_local_grid_equals_in_process_simulator(reference, tmp_path):
    cfg, ref = reference
    grid = LocalGrid(cfg)
    out = serve(grid, cfg, tmp_path / "run", engine="test")
    rd = RunLayout(tmp_path / "run")
    assert out.completed_round == cfg.train.rounds and rd.is_complete()
    assert assert_same_run(ref, rd, atol=1e-6) <= 1e-6
    assert run_files(ref.root) == run_files(rd.root)


def test_messages_are_keyed_by_partition_not_node_id(reference, tmp_path):
    cfg, _ = reference
    grid = LocalGrid(cfg)
    serve(grid, cfg, None)
    for msg in grid.sent:
        if msg.metadata.message_type == "query":
            continue
        ctx = grid.contexts[msg.metadata.dst_node_id]
        assert int(msg.content["config"]["partition-id"]) == int(ctx.node_config["partition-id"])
    # the client hook's state lives in each node's context.state, and differs per client
    states = [ctx.state[STATE_KEY].to_torch_state_dict() for ctx in grid.contexts.values()]
    assert all("crn1.delta" in s for s in states)
    assert not torch.equal(states[0]["crn2.delta"], states[1]["crn2.delta"])


def test_stop_and_resume_equals_one_run(reference, tmp_path):
    cfg, ref = reference
    rd = RunLayout(tmp_path / "run")
    first = serve(LocalGrid(cfg), cfg, rd.root, stop_after=1)
    assert first.completed_round == 1 and not rd.is_complete() and rd.checkpoint.is_file()
    second = serve(LocalGrid(cfg), cfg, rd.root)  # new nodes: their context.state is empty
    assert second.resumed_from == 1 and rd.is_complete()
    assert_same_run(ref, rd, atol=1e-6)
    assert serve(LocalGrid(cfg), cfg, rd.root).skipped


def test_failed_client_fails_the_round(reference, tmp_path):
    cfg, _ = reference
    with pytest.raises(ClientFailure, match="injected failure"):
        serve(LocalGrid(cfg, fail=[1]), cfg, None)


def test_missing_reply_fails_the_round(reference):
    cfg, _ = reference
    with pytest.raises(ClientFailure, match="no result"):
        serve(LocalGrid(cfg, drop=[2]), cfg, None)


def test_duplicate_or_missing_partition_is_refused(reference):
    cfg, _ = reference
    dup = [{"partition-id": 0}, {"partition-id": 1}, {"partition-id": 1}]
    with pytest.raises(ClientFailure, match="held by two nodes"):
        serve(LocalGrid(cfg, node_configs=dup), cfg, None, connect_timeout=5)
    none = [{"partition-id": 0}, {"partition-id": 1}, {}]
    with pytest.raises(ClientFailure, match="no node holds partitions \\[2\\]"):
        serve(LocalGrid(cfg, node_configs=none), cfg, None, connect_timeout=5)


def test_node_with_other_data_is_refused(reference):
    cfg, _ = reference
    grid = LocalGrid(cfg)
    other = tiny_config("seed=12")  # other splits: the fingerprints differ
    for ctx in grid.contexts.values():
        ctx.run_config.update(LocalGrid(other).run_config)
    with pytest.raises(ClientFailure, match="fingerprint"):
        serve(grid, cfg, None, connect_timeout=5)


def test_too_few_nodes_times_out(reference):
    cfg, _ = reference
    with pytest.raises(ClientFailure, match="only 2 of 3"):
        serve(LocalGrid(cfg, num_nodes=2, node_configs=[{"partition-id": 0}, {"partition-id": 1}]), cfg, None,
              connect_timeout=0.5)


def test_run_dir_of_another_config_is_refused(reference, tmp_path):
    cfg, ref = reference
    from fedsafe.config import ConfigError

    with pytest.raises(ConfigError, match="different config"):
        serve(LocalGrid(tiny_config("seed=12")), tiny_config("seed=12"), ref.root)
