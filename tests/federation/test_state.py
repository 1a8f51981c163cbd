from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsafe.federation.state import add_gaussian, clip, clip_, fedavg, global_norm, max_abs_diff


def _state(seed: int, scale: float = 1.0) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    return OrderedDict(a=torch.randn(3, 4, generator=g) * scale, b=torch.randn(5, generator=g) * scale)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100), bound=st.floats(0.01, 50))
def test_clipped_norm_is_at_most_c_and_direction_kept(seed, scale, bound):
    s = _state(seed, scale)
    before = global_norm(s)
    c = clip(s, bound)
    assert global_norm(c) <= bound * (1 + 1e-6)
    if before <= bound:
        assert max_abs_diff(c, s) == 0.0  # below the bound: untouched
    else:
        ratio = c["a"] / s["a"]
        assert torch.allclose(ratio, torch.full_like(ratio, bound / before), rtol=1e-5)
    assert global_norm(s) == before  # input untouched by the non-underscore form


def test_clip_in_place_returns_scale():
    s = OrderedDict(w=torch.tensor([3.0, 4.0]))
    assert clip_(s, 1.0) == pytest.approx(0.2)
    assert torch.allclose(s["w"], torch.tensor([0.6, 0.8]))
    with pytest.raises(ValueError, match="C must be > 0"):
        clip_(s, 0.0)


def test_gaussian_noise_std_within_statistical_tolerance():
    zeros = OrderedDict(w=torch.zeros(200_000))
    std = 0.03
    noise = add_gaussian(zeros, std, torch.Generator().manual_seed(1))["w"].double()
    n = noise.numel()
    # The sample std of n normal draws has standard error std / sqrt(2n); allow 5 standard errors.
    assert abs(noise.std().item() - std) < 5 * std / np.sqrt(2 * n)
    assert abs(noise.mean().item()) < 5 * std / np.sqrt(n)
    assert zeros["w"].abs().max() == 0  # input untouched


def test_noise_is_reproducible_from_generator_and_differs_across_seeds():
    s = _state(0)
    a = add_gaussian(s, 0.1, torch.Generator().manual_seed(5))
    b = add_gaussian(s, 0.1, torch.Generator().manual_seed(5))
    c = add_gaussian(s, 0.1, torch.Generator().manual_seed(6))
    assert max_abs_diff(a, b) == 0.0
    assert max_abs_diff(a, c) > 0.0


def test_weighted_fedavg_matches_plain_reference():
    states = [_state(i) for i in range(4)]
    sizes = [10, 30, 5, 55]
    got = fedavg(states, sizes)
    for k in states[0]:
        ref = sum(s[k].double() * n for s, n in zip(states, sizes, strict=True)) / sum(sizes)
        np.testing.assert_allclose(got[k].numpy(), ref.numpy(), rtol=1e-6, atol=1e-7)
    unweighted = fedavg(states)
    for k in states[0]:
        np.testing.assert_allclose(unweighted[k].numpy(), torch.stack([s[k] for s in states]).mean(0).numpy(),
                                   rtol=1e-6, atol=1e-7)


def test_fedavg_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        fedavg([])
    with pytest.raises(ValueError, match="2 states but 1 weights"):
        fedavg([_state(0), _state(1)], [1.0])
    with pytest.raises(ValueError, match="different keys"):
        fedavg([_state(0), OrderedDict(z=torch.zeros(1))])
