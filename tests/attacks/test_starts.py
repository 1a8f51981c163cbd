from __future__ import annotations

import pytest
import torch

from fedsafe.attacks import project_start, uniform_start, zero_start


def test_zero_start(x):
    d = zero_start(x)
    assert torch.equal(d, torch.zeros_like(x)) and d.dtype == x.dtype


def test_uniform_start_is_in_the_ball_and_the_box(x):
    x_before = x.clone()
    d = uniform_start(x, 0.1, torch.Generator().manual_seed(0))
    assert d.abs().max() <= 0.1 + 1e-6
    assert (x + d).min() >= 0 and (x + d).max() <= 1
    assert torch.equal(x, x_before) and d.dtype == x.dtype


def test_uniform_start_is_uniform_inside_the_box():
    x = torch.full((20000,), 0.5)  # far from the box edges: no clipping
    d = uniform_start(x, 0.1, torch.Generator().manual_seed(1))
    assert abs(float(d.mean())) < 0.003  # std of the mean: 0.1 / sqrt(3 * 20000) ~ 4e-4
    assert abs(float(d.std()) - 0.1 / 3**0.5) < 0.002
    assert float(d.min()) >= -0.1 and float(d.max()) <= 0.1 and float(d.max()) > 0.099


def test_uniform_start_reproducible_and_seed_dependent(x):
    def draw(seed):
        return uniform_start(x, 0.1, torch.Generator().manual_seed(seed))

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_uniform_start_needs_a_generator(x):
    with pytest.raises(ValueError, match="Generator"):
        uniform_start(x, 0.1, None)


def test_project_start_clips_to_ball_and_box(x):
    delta = torch.linspace(-1, 1, x.numel()).reshape(x.shape)
    before = delta.clone()
    d = project_start(x, delta, 0.05)
    assert d.abs().max() <= 0.05 + 1e-6
    assert (x + d).min() >= 0 and (x + d).max() <= 1
    assert torch.equal(delta, before)
    inside = (delta.abs() < 0.05) & (x + delta >= 0) & (x + delta <= 1)
    torch.testing.assert_close(d[inside], delta[inside])


def test_project_start_rejects_bad_arguments(x):
    with pytest.raises(ValueError, match="shape"):
        project_start(x, torch.zeros(2), 0.1)
    with pytest.raises(ValueError, match="eps"):
        project_start(x, torch.zeros_like(x), -0.1)
