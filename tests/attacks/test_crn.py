from __future__ import annotations

import copy

import pytest
import torch

from fedsafe.attacks import (
    CrnState,
    crn_absorbs_round,
    crn_alpha,
    crn_replay,
    crn_update,
    iterative_attack,
    pgd,
)

EPS, STEPS = 0.05, 3


def received_models(base, rounds: int, seed: int = 0):
    """The attacker's received copies over ``rounds`` rounds: the model drifts and gets noise each round."""
    g = torch.Generator().manual_seed(seed)
    model, out = copy.deepcopy(base), []
    for _ in range(rounds):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        out.append(copy.deepcopy(model))
    return out


def test_online_equals_replay_bit_for_bit(cnn, x):
    # Arrange: five rounds; between rounds the state goes through a state dict (via numpy, as Flower stores it)
    models = received_models(cnn, 5)
    state = CrnState.zeros(x, eps=EPS, steps=STEPS)
    # Act: online
    for model in models:
        state.absorb(model, x)
        stored = {k: torch.from_numpy(v.numpy().copy()) for k, v in state.to_state_dict().items()}
        state = CrnState.from_state_dict(stored)
    # Act: replay
    replayed = crn_replay(models, x, eps=EPS, steps=STEPS)
    # Assert
    assert state.rounds == 5
    assert torch.equal(state.delta, replayed)
    assert state.delta.abs().max() > 0


def test_crn_update_is_the_centred_step_loop_on_own_predictions(cnn, x):
    delta = torch.full_like(x, 0.01)
    expected = iterative_attack(cnn, x, "pred", eps=EPS, alpha=EPS / STEPS, steps=STEPS, start=delta,
                                centre_grad=True).delta
    assert torch.equal(crn_update(cnn, x, delta, eps=EPS, steps=STEPS), expected)


def test_crn_delta_stays_in_ball_and_box_and_inputs_untouched(cnn, x):
    x_before = x.clone()
    delta = torch.full_like(x, 0.2)  # outside the ball: projected first
    delta_before = delta.clone()
    new = crn_update(cnn, x, delta, eps=EPS, steps=STEPS, alpha=0.02)
    assert new.abs().max() <= EPS + 1e-6
    assert (x + new).min() >= 0 and (x + new).max() <= 1
    assert torch.equal(x, x_before) and torch.equal(delta, delta_before)


def test_crn_batched_matches_unbatched(make_cnn, make_images):
    model, x = make_cnn().double(), make_images(5, dtype=torch.float64)
    a = crn_update(model, x, torch.zeros_like(x), eps=EPS, steps=STEPS)
    b = crn_update(model, x, torch.zeros_like(x), eps=EPS, steps=STEPS, batch_size=2)
    torch.testing.assert_close(a, b)


def test_alpha_default_and_override(x):
    assert crn_alpha(eps=0.05, steps=5) == pytest.approx(0.01)
    assert crn_alpha(eps=0.05, steps=5, alpha=0.001) == 0.001
    assert CrnState.zeros(x, eps=0.05, steps=5).alpha == pytest.approx(0.01)
    assert CrnState.zeros(x, eps=0.05, steps=5, alpha=0.002).alpha == 0.002
    with pytest.raises(ValueError, match="eps"):
        crn_alpha(eps=0.0, steps=5)
    with pytest.raises(ValueError, match="steps"):
        crn_alpha(eps=0.05, steps=0)


def test_state_dict_round_trip_is_all_tensors(cnn, x):
    state = CrnState.zeros(x, eps=EPS, steps=STEPS, alpha=0.004, centre_grad=False)
    state.absorb(cnn, x)
    sd = state.to_state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    back = CrnState.from_state_dict(sd)
    assert (back.eps, back.alpha, back.steps, back.centre_grad, back.rounds) == (EPS, 0.004, STEPS, False, 1)
    assert torch.equal(back.delta, state.delta)
    sd["delta"].add_(1.0)  # the state dict is a copy
    assert not torch.equal(sd["delta"], state.delta)
    with pytest.raises(ValueError, match="lacks"):
        CrnState.from_state_dict({"delta": state.delta})


def test_state_rejects_a_delta_over_budget(x):
    with pytest.raises(ValueError, match="budget"):
        CrnState(torch.full_like(x, 0.5), eps=EPS, steps=STEPS)


def test_absorb_checks_the_attack_set_shape(cnn, x):
    state = CrnState.zeros(x, eps=EPS, steps=STEPS)
    with pytest.raises(ValueError, match="shape"):
        state.absorb(cnn, x[:2])


def test_window_of_last_rounds():
    active = [t for t in range(1, 51) if crn_absorbs_round(t, total_rounds=50, window=10)]
    assert active == list(range(41, 51))
    with pytest.raises(ValueError):
        crn_absorbs_round(0, total_rounds=50, window=10)


def test_crn_delta_is_a_start_point_for_pgd(cnn, x):
    state = CrnState.zeros(x, eps=EPS, steps=STEPS)
    state.absorb(cnn, x)
    r = pgd(cnn, x, eps=EPS, alpha=0.001, steps=1, start=state.delta)  # "PGD-1 + CRN"
    assert (r.x_adv - x).abs().max() <= EPS + 1e-6
    assert (r.x_adv - (x + state.delta)).abs().max() <= 0.001 + 1e-6
