import torch

from fedsafe.federation.protocol import server_downlink
from fedsafe.federation.round import aggregate, downlink_copy, uplink
from fedsafe.federation.simulator import Simulator
from fedsafe.federation.state import global_norm, max_abs_diff

from ._tiny import tiny_data, tiny_model, tiny_spec


def _global():
    return tiny_model().state_dict()


def test_downlink_draws_are_independent_per_client_and_round_and_stable():
    w = _global()
    a0 = downlink_copy(w, std=0.01, seed=3, round_=1, client=0)
    a1 = downlink_copy(w, std=0.01, seed=3, round_=1, client=1)
    b0 = downlink_copy(w, std=0.01, seed=3, round_=2, client=0)
    assert max_abs_diff(a0, a1) > 0 and max_abs_diff(a0, b0) > 0
    assert max_abs_diff(a0, downlink_copy(w, std=0.01, seed=3, round_=1, client=0)) == 0.0
    assert max_abs_diff(downlink_copy(w, std=0.0, seed=3, round_=1, client=0), w) == 0.0


def test_adding_a_client_does_not_change_other_clients_noise():
    """Draws are keyed by (seed, round, client), not by a shared stream consumed in order: a federation with a
    fourth client sends clients 0..2 exactly the copies a three-client one sends (the server's downlink), and their
    uploads (local training and uplink noise) are the same too."""
    w = _global()
    spec = tiny_spec(rounds=1, downlink_noise=0.02)
    three = server_downlink(w, spec=spec, round_=1, num_clients=3, server_hook=None, row={})
    four = server_downlink(w, spec=spec, round_=1, num_clients=4, server_hook=None, row={})
    assert len(four) == 4 and max_abs_diff(four[3], four[2]) > 0
    for a, b in zip(three, four[:3], strict=True):
        assert max_abs_diff(a, b) == 0.0
    r3 = Simulator(spec=spec, data=tiny_data(3), model_factory=tiny_model).run()
    r4 = Simulator(spec=spec, data=tiny_data(4), model_factory=tiny_model).run()
    assert r3.metrics[0]["train_loss"] == r4.metrics[0]["train_loss"][:3]  # the same local training, client by client
    assert max_abs_diff(r3.global_state, r4.global_state) > 0  # the fourth client's upload does enter FedAvg


def test_uplink_clips_then_noises():
    w = _global()
    c = 0.5 * global_norm(w)
    up = uplink(w, clip=c, std=0.0, seed=0, round_=1, client=0)
    assert global_norm(up) <= c * (1 + 1e-6)
    noisy = uplink(w, clip=c, std=0.01, seed=0, round_=1, client=0)
    diff = torch.cat([(noisy[k] - up[k]).reshape(-1) for k in w])
    assert 0.008 < diff.std().item() < 0.012


def test_aggregate_weighted_and_unweighted():
    w = _global()
    s0 = {k: torch.zeros_like(v) for k, v in w.items()}
    s1 = {k: torch.ones_like(v) for k, v in w.items()}
    weighted = aggregate([s0, s1], [1, 3], weighted=True)
    plain = aggregate([s0, s1], [1, 3], weighted=False)
    assert all(torch.allclose(v, torch.full_like(v, 0.75)) for v in weighted.values())
    assert all(torch.allclose(v, torch.full_like(v, 0.5)) for v in plain.values())
