from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from fedsafe.attacks import (
    AttackResult,
    attack_in_batches,
    bim,
    centre_gradient,
    eval_mode,
    fgsm,
    iterative_attack,
    pgd,
    predict,
)

TOL = 1e-6
FIXTURES_OK = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run(name: str, model, x, *, eps, alpha, steps, centre_grad, start=None, seed=0, precision="fp32"):
    common = {"eps": eps, "start": start, "centre_grad": centre_grad, "precision": precision}
    if name == "fgsm":
        return fgsm(model, x, **common)
    if name == "bim":
        return bim(model, x, alpha=alpha, steps=steps, **common)
    return pgd(model, x, alpha=alpha, steps=steps, generator=torch.Generator().manual_seed(seed), **common)


def assert_valid(r: AttackResult, x: torch.Tensor, eps: float) -> None:
    assert r.x_adv.dtype == x.dtype and r.x_adv.device == x.device and r.x_adv.shape == x.shape
    assert (r.x_adv - x).abs().max() <= eps + TOL
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    torch.testing.assert_close(r.delta, r.x_adv - x, rtol=0, atol=0)


# --- invariants ---------------------------------------------------------------------------------------------

@FIXTURES_OK
@given(
    name=st.sampled_from(["fgsm", "bim", "pgd"]),
    eps=st.floats(0, 0.3),
    alpha=st.floats(1e-3, 0.2),
    steps=st.integers(1, 4),
    centre_grad=st.booleans(),
    with_start=st.booleans(),
    use_cnn=st.booleans(),
)
def test_attacks_stay_in_budget_and_box_and_leave_x_untouched(
    cnn, linear, x, name, eps, alpha, steps, centre_grad, with_start, use_cnn
):
    # Arrange
    model = cnn if use_cnn else linear
    x_before = x.clone()
    start = (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) - 0.5) if with_start else None
    # Act
    r = run(name, model, x, eps=eps, alpha=alpha, steps=steps, centre_grad=centre_grad, start=start)
    # Assert
    assert_valid(r, x, eps)
    assert torch.equal(x, x_before)


def test_start_is_not_modified(cnn, x):
    start = torch.full_like(x, 0.5)
    before = start.clone()
    bim(cnn, x, eps=0.03, alpha=0.01, steps=2, start=start)
    assert torch.equal(start, before)


def test_eps_zero_returns_x(cnn, x):
    for name in ("fgsm", "bim", "pgd"):
        r = run(name, cnn, x, eps=0.0, alpha=0.01, steps=2, centre_grad=False)
        assert torch.equal(r.x_adv, x)


# --- FGSM / BIM / PGD are settings of one loop ---------------------------------------------------------------

@pytest.mark.parametrize("centre_grad", [False, True])
def test_fgsm_equals_one_bim_step_with_alpha_eps(cnn, x, centre_grad):
    a = fgsm(cnn, x, eps=0.05, centre_grad=centre_grad)
    b = bim(cnn, x, eps=0.05, alpha=0.05, steps=1, centre_grad=centre_grad)
    assert torch.equal(a.x_adv, b.x_adv)


def test_fgsm_from_a_start_equals_one_bim_step_from_it(cnn, x):
    start = torch.full_like(x, 0.02)
    assert torch.equal(fgsm(cnn, x, eps=0.05, start=start).x_adv,
                       bim(cnn, x, eps=0.05, alpha=0.05, steps=1, start=start).x_adv)


def test_pgd_from_zero_start_equals_bim(cnn, x):
    a = pgd(cnn, x, eps=0.05, alpha=0.01, steps=3, start=torch.zeros_like(x))
    b = bim(cnn, x, eps=0.05, alpha=0.01, steps=3)
    assert torch.equal(a.x_adv, b.x_adv)


def test_pgd_same_generator_seed_is_reproducible(cnn, x):
    def attack(seed):
        return pgd(cnn, x, eps=0.05, alpha=0.01, steps=3, generator=torch.Generator().manual_seed(seed)).x_adv

    assert torch.equal(attack(3), attack(3))
    assert not torch.equal(attack(3), attack(4))


def test_pgd_does_not_touch_global_rng(cnn, x):
    before = torch.get_rng_state()
    pgd(cnn, x, eps=0.05, alpha=0.01, steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)


# --- labels, costs, side effects ------------------------------------------------------------------------------

def test_pred_labels_are_the_models_clean_predictions(cnn, x):
    labels = predict(cnn, x)
    a = bim(cnn, x, eps=0.05, alpha=0.01, steps=2)
    b = bim(cnn, x, labels, eps=0.05, alpha=0.01, steps=2)
    assert torch.equal(a.labels, labels) and torch.equal(a.x_adv, b.x_adv)
    assert labels.dtype == torch.int64 and labels.shape == (x.shape[0],)


def test_cost_counts(cnn, x):
    r = pgd(cnn, x, eps=0.05, alpha=0.01, steps=5, generator=torch.Generator().manual_seed(0))
    assert (r.forward_backward, r.forwards) == (5, 1) and r.seconds > 0
    r = fgsm(cnn, x, torch.zeros(x.shape[0], dtype=torch.long), eps=0.05)
    assert (r.forward_backward, r.forwards) == (1, 0)


def test_model_modes_restored_and_no_parameter_grads(cnn, x):
    cnn.train()
    cnn.classifier.eval()  # a mixed state must come back as it was
    modes = [m.training for m in cnn.modules()]
    bim(cnn, x, eps=0.05, alpha=0.01, steps=2)
    assert [m.training for m in cnn.modules()] == modes
    assert all(p.grad is None for p in cnn.parameters())


def test_attack_runs_in_eval_mode(cnn, x):
    # dropout is active in train mode: the attack must not see it, so two runs agree
    cnn.train()
    assert torch.equal(fgsm(cnn, x, eps=0.05).x_adv, fgsm(cnn, x, eps=0.05).x_adv)
    assert cnn.training


def test_eval_mode_restores_on_exception(cnn):
    cnn.train()
    with pytest.raises(RuntimeError), eval_mode(cnn):
        assert not cnn.training
        raise RuntimeError("boom")
    assert cnn.training


def test_attack_works_under_no_grad(cnn, x):
    with torch.no_grad():
        r = bim(cnn, x, eps=0.05, alpha=0.01, steps=2)
    assert_valid(r, x, 0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": -0.1, "alpha": 0.01, "steps": 1}, "eps"),
        ({"eps": 1.5, "alpha": 0.01, "steps": 1}, "eps"),
        ({"eps": 0.1, "alpha": 0.0, "steps": 1}, "alpha"),
        ({"eps": 0.1, "alpha": -0.01, "steps": 1}, "alpha"),
        ({"eps": 0.1, "alpha": 0.01, "steps": 0}, "steps"),
        ({"eps": 0.1, "alpha": 0.01, "steps": 1.5}, "steps"),
    ],
)
def test_bad_budgets_raise(cnn, x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        iterative_attack(cnn, x, **kwargs)


def test_bad_inputs_raise(cnn, x):
    with pytest.raises(ValueError, match="labels"):
        fgsm(cnn, x, "true", eps=0.1)
    with pytest.raises(ValueError, match="labels"):
        fgsm(cnn, x, torch.zeros(3, dtype=torch.long), eps=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fgsm(cnn, x * 2 - 0.5, eps=0.1)
    with pytest.raises(ValueError, match="start"):
        fgsm(cnn, x, eps=0.1, start=torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="generator"):
        pgd(cnn, x, eps=0.1, alpha=0.01, steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        attack_in_batches(fgsm, cnn, x, batch_size=0, eps=0.1)


def test_batched_equals_unbatched(make_cnn, make_images):
    model, x = make_cnn().double(), make_images(7, dtype=torch.float64)
    start = torch.full_like(x, -0.01)
    labels = torch.arange(7) % 3
    whole = bim(model, x, labels, eps=0.05, alpha=0.01, steps=3, start=start)
    parts = attack_in_batches(bim, model, x, labels, batch_size=3, start=start, eps=0.05, alpha=0.01, steps=3)
    torch.testing.assert_close(parts.x_adv, whole.x_adv)
    assert torch.equal(parts.labels, whole.labels) and parts.forward_backward == 3


# --- gradient centring ----------------------------------------------------------------------------------------

def test_centre_gradient_subtracts_per_image_per_channel_mean():
    g = torch.randn(3, 2, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = g.clone()
    for i in range(3):
        for c in range(2):
            expected[i, c] -= sum(g[i, c].flatten().tolist()) / 20
    torch.testing.assert_close(centre_gradient(g), expected)
    torch.testing.assert_close(centre_gradient(g).mean(dim=(2, 3)), torch.zeros(3, 2, dtype=torch.float64))


def test_centred_attack_step_matches_manual_step(make_linear, make_images):
    model, x = make_linear().double(), make_images(4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    g_centred = g - g.mean(dim=(2, 3), keepdim=True)
    expected = torch.min(torch.max(x + 0.01 * g_centred.sign(), x - 0.03), x + 0.03).clamp(0, 1)
    r = bim(model, x, y, eps=0.03, alpha=0.01, steps=1, centre_grad=True)
    torch.testing.assert_close(r.x_adv, expected)


# --- precision ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd"])
def test_bf16_path_runs_and_respects_eps(cnn, x, name):
    r = run(name, cnn, x, eps=0.03, alpha=0.01, steps=3, centre_grad=False, precision="bf16")
    assert_valid(r, x, 0.03)
    assert r.x_adv.dtype == torch.float32
    assert (r.x_adv != x).any()


def test_bf16_gradients_mostly_agree_with_fp32(make_linear, x):
    model = make_linear()
    a = fgsm(model, x, eps=0.03).x_adv
    b = fgsm(model, x, eps=0.03, precision="bf16").x_adv
    assert (a == b).double().mean() > 0.9


class _PixelMean(nn.Module):
    def forward(self, x):
        return torch.stack([x.flatten(1).mean(1), -x.flatten(1).mean(1)], 1)


def test_attack_on_a_parameter_free_model(x):
    # no parameters at all: the gradient is still taken w.r.t. the input
    r = fgsm(_PixelMean(), x, torch.zeros(x.shape[0], dtype=torch.long), eps=0.1)
    # ascending CE for class 0 lowers the pixel mean: every pixel steps down (then clips at 0)
    torch.testing.assert_close(r.x_adv, (x - 0.1).clamp(min=0))
