"""EOT-PGD against downlink noise: reduces to PGD, matches an independent re-implementation that really copies
the model, its gradient estimate converges at the 1/K rate, and it has no side effects."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsafe.attacks import pgd, predict, uniform_start
from fedsafe.attacks.eot import eot_gradient, eot_pgd, noisy_parameters
from fedsafe.precision import to_channels_last

EPS, ALPHA, STEPS, STD = 0.05, 0.01, 4, 0.05


@pytest.fixture
def setup(make_small_cnn, make_images):
    model = make_small_cnn(seed=3).double()
    x = make_images(6, channels=1, dtype=torch.float64, seed=3)
    return model, x, predict(model, x)


def reference_eot(model, x, y, *, eps, alpha, steps, samples, std, start, generator):
    """EOT written plainly: K deep copies of the model a step, noise added in place to their parameters in
    named_parameters order, the K gradients averaged, a delta-form sign step."""
    delta = (x + start.clamp(-eps, eps)).clamp(0, 1) - x
    for _ in range(steps):
        grads = []
        for _ in range(samples):
            noisy = copy.deepcopy(model).eval()
            with torch.no_grad():
                for p in noisy.parameters():
                    p += std * torch.randn(p.shape, generator=generator, dtype=p.dtype)
            d = delta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(noisy(x + d), y, reduction="sum"), d)
            grads.append(g)
        g = sum(grads) / samples
        delta = (delta + alpha * g.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return x + delta


# --- reductions and reference ---------------------------------------------------------------------------------

@pytest.mark.parametrize("centre_grad", [False, True])
def test_one_sample_without_noise_is_pgd(setup, centre_grad):
    model, x, y = setup
    start = uniform_start(x, EPS, torch.Generator().manual_seed(7))
    a = eot_pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, samples=1, noise_std=0.0, start=start,
                centre_grad=centre_grad)
    b = pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, start=start, centre_grad=centre_grad)
    assert torch.equal(a.x_adv, b.x_adv)
    assert ((a.x_adv - x).abs() > ALPHA / 2).double().mean() > 0.5  # the comparison is not vacuous


def test_one_sample_without_noise_is_pgd_from_the_same_random_start(setup):
    model, x, _ = setup
    a = eot_pgd(model, x, eps=EPS, alpha=ALPHA, steps=2, samples=1, noise_std=0.0,
                generator=torch.Generator().manual_seed(5))
    b = pgd(model, x, eps=EPS, alpha=ALPHA, steps=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.labels, b.labels)


@pytest.mark.parametrize("samples", [1, 3])
def test_matches_a_reference_that_copies_the_model(setup, samples):
    model, x, y = setup
    start = uniform_start(x, EPS, torch.Generator().manual_seed(8))
    ours = eot_pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=3, samples=samples, noise_std=STD, start=start,
                   generator=torch.Generator().manual_seed(9))
    ref = reference_eot(model, x, y, eps=EPS, alpha=ALPHA, steps=3, samples=samples, std=STD, start=start,
                        generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(ours.x_adv, ref, rtol=0, atol=1e-12)
    plain = pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=3, start=start)
    assert not torch.equal(ours.x_adv, plain.x_adv)  # the noise is really applied
    assert ours.forward_backward == 3 * samples and ours.forwards == 0


def test_crn_start_composes(setup):
    model, x, y = setup
    delta = torch.full_like(x, 0.03)  # a stored CRN delta: the start is a value
    r = eot_pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=1, samples=2, noise_std=STD, start=delta,
                generator=torch.Generator().manual_seed(0))
    from_start = (x + 0.03).clamp(0, 1)
    assert ((r.x_adv - from_start).abs() <= ALPHA + 1e-12).all() and (r.x_adv - x).abs().max() <= EPS + 1e-12


# --- the gradient estimator -------------------------------------------------------------------------------------

def test_gradient_estimate_variance_falls_as_one_over_k(setup):
    # E|g_K - mu|^2 = tr(Sigma) / K: K * MSE_K must stay at MSE_1 (the reference mean's own error, tr(Sigma)/1000,
    # adds K/1000 to the ratio); the estimates at K = 1, 4, 16 vary by only a few % around 1 over repeats
    model, x, y = setup
    model.eval()
    mu = eot_gradient(model, x, y, samples=1000, noise_std=STD, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)

    def mse(k: int, repeats: int = 32) -> float:
        err = [(eot_gradient(model, x, y, samples=k, noise_std=STD, generator=g) - mu).pow(2).sum()
               for _ in range(repeats)]
        return float(torch.stack(err).mean())

    m1, m4, m16 = mse(1), mse(4), mse(16)
    assert m1 > m4 > m16 > 0
    for k, m in ((4, m4), (16, m16)):
        assert 0.75 < k * m / m1 < 1.33, (k, k * m / m1)
    assert m1 > float(mu.pow(2).sum())  # one draw's error exceeds the signal: s_D matters, the test is not vacuous


def test_noisy_parameters_are_parameters_only_with_the_noise_std(make_small_cnn):
    model = nn.Sequential(make_small_cnn().double(), nn.BatchNorm1d(3).double())
    before = copy.deepcopy(model.state_dict())
    noisy = noisy_parameters(model, 0.2, torch.Generator().manual_seed(0))
    assert list(noisy) == [n for n, _ in model.named_parameters()]  # no buffers (running stats) are noised
    diffs = torch.cat([(noisy[n] - p.detach()).flatten() for n, p in model.named_parameters()])
    assert abs(float(diffs.std()) / 0.2 - 1) < 0.05 and abs(float(diffs.mean())) < 0.02
    for n, p in model.named_parameters():
        assert noisy[n].dtype == p.dtype and noisy[n].stride() == p.stride() and not noisy[n].requires_grad
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is untouched


def test_noise_keeps_channels_last_strides(make_small_cnn):
    model = to_channels_last(make_small_cnn())
    noisy = noisy_parameters(model, 0.1, torch.Generator().manual_seed(0))
    w = model[3].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    assert noisy["3.weight"].stride() == w.stride()


# --- determinism and side effects ------------------------------------------------------------------------------

def test_same_seed_same_result_and_no_side_effects(setup):
    model, x, _ = setup
    model.train()
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()

    def run(seed):
        return eot_pgd(model, x, eps=EPS, alpha=ALPHA, steps=2, samples=2, noise_std=STD,
                       generator=torch.Generator().manual_seed(seed)).x_adv

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": 0, "noise_std": 0.1}, "samples"),
        ({"samples": 2.0, "noise_std": 0.1}, "samples"),
        ({"samples": 1, "noise_std": -0.1}, "noise_std"),
        ({"samples": 1, "noise_std": float("nan")}, "noise_std"),
    ],
)
def test_bad_inputs_raise(setup, kwargs, match):
    model, x, _ = setup
    with pytest.raises(ValueError, match=match):
        eot_pgd(model, x, eps=EPS, alpha=ALPHA, steps=1, generator=torch.Generator(), **kwargs)


def test_generator_is_required_for_noise_or_a_random_start(setup):
    model, x, _ = setup
    with pytest.raises(ValueError, match="generator"):
        eot_pgd(model, x, eps=EPS, alpha=ALPHA, steps=1, samples=1, noise_std=0.1, start=torch.zeros_like(x))
    with pytest.raises(ValueError, match="generator"):
        eot_pgd(model, x, eps=EPS, alpha=ALPHA, steps=1, samples=1, noise_std=0.0)
    r = eot_pgd(model, x, eps=EPS, alpha=ALPHA, steps=1, samples=1, noise_std=0.0, start=torch.zeros_like(x))
    assert r.forward_backward == 1
