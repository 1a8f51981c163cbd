from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedsafe.attacks import bim, fgsm
from fedsafe.attacks.sanity import (
    attack_success_rate,
    check_eps_curve,
    check_input_gradients,
    check_outputs,
    eps_sweep,
    run_sanity_checks,
)


class Quantise(nn.Module):
    """8-bit quantisation of the input: a classic source of zero gradients (gradient masking)."""

    def forward(self, x):
        return torch.round(x * 255) / 255


def bim_at(model, x):
    return lambda e: bim(model, x, eps=e, alpha=max(e / 4, 1e-3), steps=10).x_adv


def test_normal_model_raises_no_warning(linear, x):
    assert run_sanity_checks(linear, x, attack_at_eps=bim_at(linear, x)) == []


def test_softmax_outputs_are_flagged(linear, x):
    model = nn.Sequential(linear, nn.Softmax(dim=1))
    warnings = run_sanity_checks(model, x)
    assert any("probabilities" in w for w in warnings)
    assert check_outputs(torch.randn(4, 3)) == []


def test_zero_gradients_are_flagged(linear, x):
    model = nn.Sequential(Quantise(), linear)
    warnings = check_input_gradients(model, x)
    assert len(warnings) == 1 and "zero" in warnings[0]
    assert check_input_gradients(linear, x) == []
    assert any("zero" in w for w in run_sanity_checks(model, x))


def test_eps_zero_gives_zero_asr(cnn, x):
    asr = eps_sweep(lambda e: fgsm(cnn, x, eps=e).x_adv, cnn, x, eps_values=[0.0])
    assert asr.tolist() == [0.0]


def test_masked_model_fails_the_large_eps_check(linear, x):
    model = nn.Sequential(Quantise(), linear)
    warnings = run_sanity_checks(model, x, attack_at_eps=bim_at(model, x))
    assert any("large eps" in w for w in warnings)


@pytest.mark.parametrize(
    ("asr", "fragment"),
    [
        ([0.1, 0.5, 0.9, 1.0], "eps = 0"),
        ([0.0, 0.6, 0.3, 1.0], "decreases"),
        ([0.0, 0.2, 0.4, 0.5], "large eps"),
    ],
)
def test_eps_curve_checks_fire(asr, fragment):
    warnings = check_eps_curve([0.0, 0.03, 0.1, 0.5], asr)
    assert len(warnings) == 1 and fragment in warnings[0]


def test_eps_curve_good_and_tolerant():
    assert check_eps_curve([0.0, 0.03, 0.1, 0.5], [0.0, 0.5, 0.49, 0.99]) == []  # a 1% dip is noise
    assert check_eps_curve([0.0, 0.03], [0.0, 0.2]) == []  # no large eps: no claim about 100%


def test_eps_curve_rejects_bad_input():
    with pytest.raises(ValueError, match="increasing"):
        check_eps_curve([0.1, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="length"):
        check_eps_curve([0.0, 0.1], [0.0])


def test_attack_success_rate():
    assert attack_success_rate(torch.tensor([0, 1, 2, 1]), torch.tensor([0, 2, 2, 0])) == 0.5
    with pytest.raises(ValueError):
        attack_success_rate(torch.tensor([0]), torch.tensor([0, 1]))
    assert np.isclose(attack_success_rate(torch.tensor([1]), torch.tensor([0])), 1.0)


class _ZeroGradientFor(nn.Module):
    """A linear model whose input gradient is exactly zero for the first ``k`` samples (their input is detached)."""

    def __init__(self, linear: nn.Module, k: int):
        super().__init__()
        self.linear, self.k = linear, k

    def forward(self, x):
        x = torch.cat([x[: self.k].detach(), x[self.k:]])
        return self.linear(x)


def test_zero_gradients_are_judged_on_an_interval_not_on_the_sample_fraction():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(100, 1, 4, 4)
    # 6 of 100 is above 5% as a fraction, but its Wilson 95% interval (2.8%-12.5%) does not exclude 5%: no flag,
    # as with 3 of 50; 20 of 100 (interval 13%-29%) is flagged, with the count and interval named
    assert check_input_gradients(_ZeroGradientFor(lin, 6), x) == []
    assert check_input_gradients(_ZeroGradientFor(lin, 3), x[:50]) == []
    (w,) = check_input_gradients(_ZeroGradientFor(lin, 20), x)
    assert "20 of 100" in w and "CI 13%-29%" in w


class _ZeroGradientWhere(nn.Module):
    """A linear model whose input gradient is exactly zero on the samples ``mask`` marks (their input detached)."""

    def __init__(self, linear: nn.Module, mask: torch.Tensor):
        super().__init__()
        self.linear, self.mask = linear, mask

    def forward(self, x):
        keep = self.mask.view(-1, *([1] * (x.dim() - 1)))
        return self.linear(torch.where(keep, x.detach(), x))


def test_zero_gradients_confined_to_one_class_are_flagged_by_class():
    """6 zero gradients among 100 images pass the batch test; all 6 among the 20 images of one class do not (Wilson
    at 97.5%, Bonferroni over 2 classes: 13%-55%), and the warning names the class. Spread over both classes (3 of
    20 and 3 of 80) they pass."""
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = torch.rand(100, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.cat([torch.zeros(20, dtype=torch.long), torch.ones(80, dtype=torch.long)])
    confined = torch.zeros(100, dtype=torch.bool)
    confined[:6] = True
    (w,) = check_input_gradients(_ZeroGradientWhere(lin, confined), x, y)
    assert "6 of the 20 samples of class 0" in w and "6 of 100 over all classes" in w and "Bonferroni" in w
    spread = torch.zeros(100, dtype=torch.bool)
    spread[[0, 1, 2, 20, 21, 22]] = True
    assert check_input_gradients(_ZeroGradientWhere(lin, spread), x, y) == []
    assert check_input_gradients(_ZeroGradientWhere(lin, confined), x, torch.ones(100, dtype=torch.long)) == []
