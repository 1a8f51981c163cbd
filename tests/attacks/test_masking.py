"""The masking checks fire on models that hide or randomise their gradient and stay quiet on a plain CNN."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from fedsafe.attacks import bim, pgd
from fedsafe.attacks.eot import eot_pgd
from fedsafe.attacks.masking import MaskingReport, masking_checks, step_rule
from fedsafe.attacks.sanity import check_steps_curve


class Quantise(nn.Module):
    """Rounds the input to 1/255 steps: its gradient is zero almost everywhere (shattered gradients)."""

    def forward(self, x):
        return torch.round(x * 255) / 255


class NoisyInput(nn.Module):
    """A randomised defense: Gaussian noise on the input at every call, from its own generator."""

    def __init__(self, std: float, seed: int) -> None:
        super().__init__()
        self.std, self.generator = std, torch.Generator().manual_seed(seed)

    def forward(self, x):
        return x + self.std * torch.randn(x.shape, generator=self.generator, dtype=x.dtype)


@pytest.fixture
def plain(make_small_cnn, make_images):
    # seed 3: varied clean predictions; BIM's eps curve 0 -> 100% and its steps curve flat or rising (no dip of one
    # image of 32, below tol = 0.05, so a kernel's rounding cannot flip the verdict)
    return make_small_cnn(seed=3).double(), make_images(32, channels=1, dtype=torch.float64, seed=3)


@pytest.mark.parametrize("attack", [step_rule(bim), step_rule(pgd, seed=0)], ids=["bim", "pgd"])
def test_quiet_on_a_plain_cnn(plain, attack):
    model, x = plain
    r = masking_checks(attack, model, x)
    assert not r.possibly_masking and r.reasons == ()
    assert r.rises_with_eps and r.rises_with_steps and r.reaches_large_eps and not r.changes_at_eps_zero
    assert r.asr_by_eps[0] == 0 and r.asr_by_eps[-1] == 1.0 and 0.2 < r.asr_by_eps[2] < 1  # a real curve
    assert len(r.asr_by_steps) == 3 and r.eps_values == (0.0, 0.01, 0.03, 0.1, 0.5)


def test_fires_on_a_model_that_shatters_its_gradient(plain):
    model, x = plain
    masked = nn.Sequential(Quantise(), model)
    r = masking_checks(step_rule(bim), masked, x)
    assert r.possibly_masking and not r.reaches_large_eps
    assert r.asr_by_eps[-1] < 0.5  # the attack is stuck although eps = 0.5 allows almost any image
    assert any("shattered or vanishing" in w and "eps=0.5" in w for w in r.reasons)


def test_fires_on_a_randomised_model(plain):
    model, x = plain
    randomised = nn.Sequential(NoisyInput(0.2, seed=0), model)
    r = masking_checks(step_rule(bim), randomised, x, eps_values=(0.0, 0.5), steps_values=(1, 2))
    assert r.possibly_masking and r.changes_at_eps_zero
    assert any("stochastic" in w for w in r.reasons)


def test_fires_when_more_steps_weaken_the_attack(plain):
    model, x = plain

    def weakening(m, x, y="pred", *, eps, steps):  # strong at one step, then gives up: a broken attack
        return bim(m, x, y, eps=eps, alpha=max(eps, 1e-3), steps=1).x_adv if steps == 1 else x.clone()

    r = masking_checks(weakening, model, x, steps_values=(1, 5))
    assert not r.rises_with_steps and r.possibly_masking
    assert any("does not rise with steps at eps=0.03" in w for w in r.reasons)
    assert r.rises_with_eps  # steps_for_eps = 10: every eps point is "gave up", flat at 0 ...
    assert not r.reaches_large_eps  # ... which the large-eps rule catches


def test_points_on_both_curves_run_once(plain):
    model, x = plain
    calls = []

    def counting(m, x, y="pred", *, eps, steps):
        calls.append((eps, steps))
        return x.clone()

    masking_checks(counting, model, x, eps_values=(0.0, 0.03, 0.5), steps_for_eps=5, steps_values=(1, 5),
                   eps_for_steps=0.03)
    assert sorted(calls) == [(0.0, 5), (0.03, 1), (0.03, 5), (0.5, 5)]


def test_eot_attack_through_the_step_rule(plain):
    model, x = plain
    attack = step_rule(eot_pgd, seed=1, samples=2, noise_std=0.01)
    r = masking_checks(attack, model, x, eps_values=(0.0, 0.5), steps_values=(1, 3))
    assert r.reaches_large_eps and not r.possibly_masking


def test_report_is_frozen(plain):
    model, x = plain
    r = masking_checks(step_rule(bim), model, x, eps_values=(0.0,), steps_values=(1,))
    assert isinstance(r, MaskingReport)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.reasons = ()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps_values": (0.1, 0.0)}, "eps_values"),
        ({"steps_values": (5, 1)}, "steps_values"),
        ({"steps_values": (1, 2.5)}, "integers"),
        ({"eps_values": (0.0, 2.0)}, "budgets"),
        ({"tol": 1.5}, "tol"),
    ],
)
def test_bad_arguments_raise(plain, kwargs, match):
    model, x = plain
    with pytest.raises(ValueError, match=match):
        masking_checks(step_rule(bim), model, x, **kwargs)
    with pytest.raises(ValueError, match="rate"):
        step_rule(bim, rate=0)


def test_steps_curve_check():
    assert check_steps_curve([1, 5, 20], [0.5, 0.49, 0.8]) == []
    (w,) = check_steps_curve([1, 5, 20], [0.5, 0.3, 0.8])
    assert "decreases" in w and "steps=5" in w
    with pytest.raises(ValueError, match="increasing"):
        check_steps_curve([5, 1], [0.0, 0.0])


def test_masking_checks_catch_a_zero_gradient_model_on_a_small_eps_grid(plain):
    model, x = plain
    masked = nn.Sequential(Quantise(), model)  # torch.round: the input gradient is exactly zero everywhere
    r = masking_checks(step_rule(bim), masked, x, eps_values=(0.0, 0.01, 0.03, 0.1), steps_values=(1, 5))
    assert r.reaches_large_eps  # no eps >= 0.3 in the grid: the large-eps rule cannot judge ...
    assert r.zero_input_gradient and r.possibly_masking  # ... the gradient test itself does
    assert any(w.startswith("possibly masking (vanishing gradients)") and "zero for 32 of 32 samples" in w
               for w in r.reasons)


def test_the_zero_gradient_test_is_quiet_on_a_plain_cnn_on_the_same_grid(plain):
    model, x = plain
    r = masking_checks(step_rule(bim), model, x, eps_values=(0.0, 0.01, 0.03, 0.1), steps_values=(1, 5))
    assert not r.zero_input_gradient and not any("vanishing" in w for w in r.reasons)
