"""Surrogate-ensemble PGD: one model is PGD; two models match a plain loop that averages two gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsafe.attacks import pgd, predict, uniform_start
from fedsafe.attacks.ensemble import ensemble_gradient, ensemble_pgd

EPS, ALPHA, STEPS = 0.05, 0.01, 4


@pytest.fixture
def setup(make_small_cnn, make_images):
    models = [make_small_cnn(seed=s).double() for s in (3, 4, 5)]
    x = make_images(6, channels=1, dtype=torch.float64, seed=3)
    return models, x


def reference_two_model_attack(m1, m2, x, y, *, eps, alpha, steps, start):
    """Delta-form sign ascent on the mean of the two models' input gradients, written without the library."""
    m1.eval()
    m2.eval()
    delta = (x + start.clamp(-eps, eps)).clamp(0, 1) - x
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        (g1,) = torch.autograd.grad(F.cross_entropy(m1(x + d), y, reduction="sum"), d)
        d = delta.clone().requires_grad_(True)
        (g2,) = torch.autograd.grad(F.cross_entropy(m2(x + d), y, reduction="sum"), d)
        delta = (delta + alpha * ((g1 + g2) / 2).sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return x + delta


@pytest.mark.parametrize("centre_grad", [False, True])
def test_ensemble_of_one_is_pgd(setup, centre_grad):
    (m, *_), x = setup
    a = ensemble_pgd(m, x, models=[m], eps=EPS, alpha=ALPHA, steps=STEPS, centre_grad=centre_grad,
                     generator=torch.Generator().manual_seed(3))
    b = pgd(m, x, eps=EPS, alpha=ALPHA, steps=STEPS, centre_grad=centre_grad,
            generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.labels, b.labels)
    assert (a.forward_backward, a.forwards) == (STEPS, 1)


def test_ensemble_of_two_matches_a_plain_two_gradient_loop(setup):
    (m1, m2, final), x = setup
    y = predict(final, x)  # the labels: the attacker's final model's clean predictions
    start = uniform_start(x, EPS, torch.Generator().manual_seed(4))
    ours = ensemble_pgd(final, x, models=[m1, m2], eps=EPS, alpha=ALPHA, steps=STEPS, start=start)
    ref = reference_two_model_attack(m1, m2, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, start=start)
    torch.testing.assert_close(ours.x_adv, ref, rtol=0, atol=1e-12)
    assert torch.equal(ours.labels, y) and ours.forward_backward == 2 * STEPS
    alone = pgd(m1, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, start=start).x_adv
    assert not torch.equal(ours.x_adv, alone)  # the second model really contributes


def test_ensemble_gradient_is_the_mean(setup):
    models, x = setup
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    singles = [ensemble_gradient([m], x, y) for m in models]
    torch.testing.assert_close(ensemble_gradient(models, x, y), sum(singles) / 3, rtol=1e-12, atol=1e-15)


def test_modes_restored_and_no_parameter_grads(setup):
    (m1, m2, final), x = setup
    m1.train()
    m2.eval()
    final.train()
    ensemble_pgd(final, x, models=nn.ModuleList([m1, m2]), eps=EPS, alpha=ALPHA, steps=1,
                 start=torch.zeros_like(x))
    assert [m.training for m in (m1, m2, final)] == [True, False, True]
    assert all(p.grad is None for m in (m1, m2, final) for p in m.parameters())


def test_surrogates_run_in_eval_mode(make_images):
    x = make_images(4, channels=1, dtype=torch.float64)
    dropout = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(256, 3)).double()
    final = nn.Sequential(nn.Flatten(), nn.Linear(256, 3)).double()
    runs = [ensemble_pgd(final, x, models=[dropout], eps=EPS, alpha=ALPHA, steps=2, start=torch.zeros_like(x)).x_adv
            for _ in range(2)]
    assert torch.equal(*runs)  # dropout would make two runs differ


@pytest.mark.parametrize("models", [[], "m", None])
def test_bad_models_raise(setup, models):
    (m, *_), x = setup
    bad = m if models == "m" else models
    with pytest.raises(ValueError, match="models"):
        ensemble_pgd(m, x, models=bad, eps=EPS, alpha=ALPHA, steps=1, start=torch.zeros_like(x))


def test_random_start_needs_a_generator(setup):
    (m, *_), x = setup
    with pytest.raises(ValueError, match="generator"):
        ensemble_pgd(m, x, models=[m], eps=EPS, alpha=ALPHA, steps=1)
