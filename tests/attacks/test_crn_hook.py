"""CRN inside the federation: the online client hook, and its replay from a run directory (bit for bit)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from fedsafe.attacks.crn_hook import CrnClientHook, crn_key, crn_state_from, replay_crn
from fedsafe.federation.hooks import Hooks
from fedsafe.federation.simulator import Simulator
from fedsafe.federation.state import max_abs_diff
from fedsafe.runs.store import RunFileError

_spec = importlib.util.spec_from_file_location("_tiny_fed", Path(__file__).parents[1] / "federation" / "_tiny.py")
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

ROUNDS, KEEP, WINDOWS, EPS, STEPS = 4, 3, (1, 3), 0.05, 2


def make_hook(data, **kw) -> CrnClientHook:
    args = dict(model_factory=_tiny.tiny_model, attack_sets=[s.x for s in data.client_test], total_rounds=ROUNDS,
                windows=WINDOWS, eps=EPS, steps=STEPS)
    args.update(kw)
    return CrnClientHook(**args)


def simulate(data, store=None, hook=None, stop_after=None):
    sim = Simulator(spec=_tiny.tiny_spec(rounds=ROUNDS, keep_received=KEEP), data=data,
                    model_factory=_tiny.tiny_model, hooks=Hooks(client=hook), store=store)
    return sim.run(stop_after=stop_after)


def replay(store, client, window, x):
    received = store.received_window(client, range(ROUNDS - window + 1, ROUNDS + 1))
    return replay_crn(received, x, eps=EPS, steps=STEPS, model_factory=_tiny.tiny_model)


@pytest.fixture(scope="module")
def crn_run(tmp_path_factory):
    """A tiny 3-client federation of 4 rounds with online CRN1 and CRN3, kept in a run directory."""
    data = _tiny.tiny_data()
    rd = _tiny.tiny_store(tmp_path_factory.mktemp("crn-run"))
    result = simulate(data, rd, make_hook(data))
    return data, rd, result


def test_online_equals_replayed_bit_for_bit(crn_run):
    # Arrange: the online buffers as checkpointed
    data, rd, _ = crn_run
    states = rd.load_checkpoint().client_states
    for i in range(data.num_clients):
        for w in WINDOWS:
            online = crn_state_from(states[i], w)
            # Act
            replayed = replay(rd, i, w, data.client_test[i].x)
            # Assert
            assert online.rounds == w
            assert torch.equal(online.delta, replayed)
            assert online.delta.abs().max() > 0
            assert online.delta.abs().max() <= EPS + 1e-6
            assert int(states[i][crn_key(w, "last_round")]) == ROUNDS  # the final downlink was not absorbed


def test_windows_differ_and_clients_differ(crn_run):
    _, rd, _ = crn_run
    states = rd.load_checkpoint().client_states
    assert not torch.equal(states[0]["crn1.delta"], states[0]["crn3.delta"])
    assert not torch.equal(states[0]["crn3.delta"][:5], states[1]["crn3.delta"][:5])


def test_replay_names_the_missing_copy_when_the_run_kept_fewer_rounds(crn_run):
    data, rd, _ = crn_run
    with pytest.raises(RunFileError, match=r"round_0001.*kept rounds 2\.\.4"):
        replay(rd, 0, 4, data.client_test[0].x)


def test_crn_does_not_change_training(crn_run):
    data, _, with_crn = crn_run
    without = simulate(data)
    for a, b in zip(with_crn.final_models, without.final_models, strict=True):
        assert max_abs_diff(a, b) == 0.0


def test_resumed_run_has_bit_identical_buffers(crn_run, tmp_path):
    data, rd, _ = crn_run
    rd2 = _tiny.tiny_store(tmp_path / "resumed")
    simulate(data, rd2, make_hook(data), stop_after=2)  # killed after round 2 (one window already open)
    simulate(data, rd2, make_hook(data))  # a fresh hook resumes from the checkpoint
    a, b = rd.load_checkpoint().client_states, rd2.load_checkpoint().client_states
    for sa, sb in zip(a, b, strict=True):
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_final_downlink_and_rounds_before_the_window_are_ignored():
    data = _tiny.tiny_data()
    hook = make_hook(data)
    copy = _tiny.tiny_model().state_dict()
    assert hook.on_receive(copy, round_=ROUNDS + 1, client=0, client_state={}) == {}
    assert hook.on_receive(copy, round_=1, client=0, client_state={}) == {}  # CRN3 opens at round 2
    state = hook.on_receive(copy, round_=2, client=0, client_state={"other": torch.ones(1)})
    assert set(state) == {"other"} | {crn_key(3, f) for f in
                                      ("delta", "rounds", "eps", "alpha", "steps", "centre_grad", "last_round")}


def test_a_buffer_out_of_step_with_the_round_is_an_error():
    data = _tiny.tiny_data()
    hook = make_hook(data)
    copy = _tiny.tiny_model().state_dict()
    state = hook.on_receive(copy, round_=2, client=0, client_state={})
    with pytest.raises(ValueError, match="CRN3 buffer has absorbed 1 rounds"):
        hook.on_receive(copy, round_=4, client=0, client_state=state)  # round 3 was skipped


def test_bad_windows_are_rejected():
    data = _tiny.tiny_data()
    with pytest.raises(ValueError, match="CRN window 5 exceeds the run.s 4 rounds"):
        make_hook(data, windows=(5,))


def test_build_hooks_adds_the_crn_hook_when_enabled():
    from fedsafe.build import build_hooks
    from fedsafe.config import load_config

    data, spec = _tiny.tiny_data(), _tiny.tiny_spec(rounds=ROUNDS)
    off = build_hooks(load_config(overrides=["train.rounds=4"]), data, spec)
    on = build_hooks(load_config(overrides=["train.rounds=4", "crn.enabled=true", "crn.windows=[2,4]",
                                            "train.local_epochs=3"]), data, spec)
    assert off.client is None
    assert isinstance(on.client, CrnClientHook)
    assert (on.client.windows, on.client.steps, on.client.eps, on.client.precision) == ((2, 4), 3, 0.05, "fp32")
    assert len(on.client.attack_sets) == 3
