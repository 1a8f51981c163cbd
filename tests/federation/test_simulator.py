import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fedsafe.federation.hooks import Hooks
from fedsafe.federation.round import aggregate, downlink_copy, uplink
from fedsafe.federation.simulator import Simulator
from fedsafe.federation.state import max_abs_diff

from ._tiny import tiny_data, tiny_model, tiny_spec, tiny_store

HERE = Path(__file__).parent


def _run(rounds=3, run_dir=None, hooks=None, data=None, **kw):
    return Simulator(spec=tiny_spec(rounds=rounds, **kw), data=data or tiny_data(), model_factory=tiny_model,
                     hooks=hooks, store=run_dir).run()


def test_same_seed_gives_bit_identical_results():
    a, b = _run(), _run()
    for x, y in zip(a.final_models, b.final_models, strict=True):
        assert max_abs_diff(x, y) == 0.0
    assert [m.get("global_acc") for m in a.metrics] == [m.get("global_acc") for m in b.metrics]


def test_different_seed_changes_the_models():
    a, b = _run(), _run(seed=8)
    assert max_abs_diff(a.global_state, b.global_state) > 0


def test_caller_global_rng_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _run(rounds=1)
    assert torch.equal(torch.rand(3), expected)


def test_final_models_are_distinct_noisy_copies_of_the_global_model():
    r = _run()
    for i, f in enumerate(r.final_models):
        ref = downlink_copy(r.global_state, std=0.01, seed=7, round_=4, client=i)
        assert max_abs_diff(f, ref) == 0.0
    assert max_abs_diff(r.final_models[0], r.final_models[1]) > 0


def test_one_round_equals_the_pieces_composed_by_hand():
    """The simulator is exactly: noisy downlink -> local training -> clip+noise uplink -> weighted FedAvg."""
    from fedsafe.federation.client import local_train

    data, spec = tiny_data(), tiny_spec(rounds=1)
    sim = Simulator(spec=spec, data=data, model_factory=tiny_model)
    w0 = sim.initial_state()
    got = sim.run().global_state
    model = tiny_model()
    ups = []
    for i in range(3):
        recv = downlink_copy(w0, std=spec.downlink_noise, seed=spec.seed, round_=1, client=i)
        new, _ = local_train(model, recv, data.client_train[i].x, data.client_train[i].y, spec.local,
                             seed=spec.seed, round_=1, client=i)
        ups.append(uplink(new, clip=spec.uplink_clip, std=spec.uplink_noise, seed=spec.seed, round_=1, client=i))
    ref = aggregate(ups, [len(s) for s in data.client_train], weighted=True)
    assert max_abs_diff(got, ref) == 0.0


class _Recorder:
    """A client hook that counts receipts in its persistent state, and a server hook that records calls."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def on_receive(self, received, *, round_, client, client_state):
        n = client_state.get("n", torch.zeros(()))
        return {"n": n + 1, "last_round": torch.tensor(round_)}

    def after_aggregation(self, global_state, *, round_):
        self.calls.append(("agg", round_))
        return global_state, {"server_passes": 1.0}

    def adapt_downlink(self, global_state, copy, *, round_, client):
        self.calls.append(("down", round_, client))
        return copy, {}


def test_hooks_are_called_and_client_state_persists_across_rounds():
    rec = _Recorder()
    r = _run(rounds=3, hooks=Hooks(server=rec, client=rec))
    assert [c for c in rec.calls if c[0] == "agg"] == [("agg", 1), ("agg", 2), ("agg", 3)]
    assert ("down", 4, 2) in rec.calls  # the final downlink goes through the server hook too
    assert [int(s["n"]) for s in r.client_states] == [3, 3, 3]
    assert r.metrics[0]["defense_server_passes"] == 1.0


def test_run_dir_contents(tmp_path):
    store = tiny_store(tmp_path / "run")
    rd = store.layout
    _run(rounds=4, run_dir=store, keep_received=2)
    assert [p.name for p in sorted((rd.root / "models" / "global").iterdir())] == [
        f"round_{t:04d}.pt" for t in range(1, 5)]
    assert rd.received_rounds() == [3, 4]  # only the last K rounds are kept
    assert rd.final_model(2).is_file() and rd.checkpoint.is_file() and rd.metrics.is_file()


def test_stop_and_resume_equals_uninterrupted(tmp_path):
    full = _run(rounds=4, run_dir=tiny_store(tmp_path / "a"))
    rd = tiny_store(tmp_path / "b")
    part = Simulator(spec=tiny_spec(rounds=4), data=tiny_data(), model_factory=tiny_model, store=rd).run(
        stop_after=2)
    assert part.final_models == []
    resumed = _run(rounds=4, run_dir=rd)
    assert resumed.resumed_from == 2
    for x, y in zip(full.final_models, resumed.final_models, strict=True):
        assert max_abs_diff(x, y) == 0.0
    strip = [{k: v for k, v in m.items() if "seconds" not in k} for m in full.metrics]
    assert strip == [{k: v for k, v in m.items() if "seconds" not in k} for m in resumed.metrics]


def test_checkpoint_for_another_federation_is_refused(tmp_path):
    rd = tiny_store(tmp_path / "run")
    _run(rounds=2, run_dir=rd)
    with pytest.raises(ValueError, match="different federation"):
        _run(rounds=3, run_dir=rd)


@pytest.mark.slow  # 30-60 s on 2 cores: child processes killed and resumed (make test-slow)
@pytest.mark.timeout(180)
def test_kill_minus_9_at_any_point_then_resume_is_bit_identical(tmp_path):
    rounds = 6
    ref = tiny_store(tmp_path / "ref")
    ref_dir = ref.layout
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(HERE / "_resume_child.py")]
    subprocess.run([*cmd, str(ref_dir.root), str(HERE), str(rounds)], check=True, env=env, timeout=120)
    for delay in (1.5, 2.5):  # kill at different points of the run
        store = tiny_store(tmp_path / f"killed-{delay}")
        rd = store.layout
        proc = subprocess.Popen([*cmd, str(rd.root), str(HERE), str(rounds)], env=env)
        try:
            deadline = time.monotonic() + 60
            while not rd.checkpoint.is_file() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(delay * 0.1)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        if rd.checkpoint.is_file():
            assert store.load_checkpoint().round >= 1  # never a half-written checkpoint
        subprocess.run([*cmd, str(rd.root), str(HERE), str(rounds)], check=True, env=env, timeout=120)
        assert not list(rd.root.rglob(".*.tmp"))  # stale temporary files were cleaned
        for c in range(3):
            assert max_abs_diff(ref.load_final(c), store.load_final(c)) == 0.0
        for t in range(1, rounds + 1):
            assert max_abs_diff(ref.load_global(t), store.load_global(t)) == 0.0
