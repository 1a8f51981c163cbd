from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsafe.metrics import alignment_matrix, gradient_alignment, gradient_cosine, input_gradients
from fedsafe.models.cnn import PaperCNN


def seeded(factory, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


@pytest.fixture
def linear():
    return seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)), 0).double()


@pytest.fixture
def x():
    return torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def negated(model):
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            p.neg_()
    return out


def test_a_model_is_aligned_with_itself(linear, x):
    torch.testing.assert_close(gradient_cosine(linear, linear, x), torch.ones(6, dtype=torch.float64))


def test_negated_binary_linear_model_is_anti_aligned(linear, x):
    # CE gradient of a 2-class linear model is a multiple of (w_0 - w_1): negating W flips its direction
    torch.testing.assert_close(gradient_cosine(linear, negated(linear), x), -torch.ones(6, dtype=torch.float64))
    assert gradient_alignment(linear, negated(linear), x) == pytest.approx(-1.0)


def test_cosine_matches_a_per_sample_computation(x):
    a = seeded(lambda: PaperCNN(num_classes=2, in_channels=3, image_size=8, width=0.05), 1).double()
    b = seeded(lambda: PaperCNN(num_classes=2, in_channels=3, image_size=8, width=0.05), 2).double()
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    expected = []
    for xi, yi in zip(x, y, strict=True):
        grads = []
        for model in (a, b):
            model.eval()
            xr = xi[None].clone().requires_grad_(True)
            grads.append(torch.autograd.grad(F.cross_entropy(model(xr), yi[None]), xr)[0].flatten().numpy())
        expected.append(grads[0] @ grads[1] / np.linalg.norm(grads[0]) / np.linalg.norm(grads[1]))
    np.testing.assert_allclose(gradient_cosine(a, b, x, y).numpy(), expected, rtol=1e-10)


def test_zero_gradient_gives_nan_and_is_excluded(linear, x):
    flat = nn.Sequential(nn.Flatten(), nn.Linear(192, 2)).double()
    with torch.no_grad():
        flat[1].weight.zero_()
    assert gradient_cosine(linear, flat, x).isnan().all()
    assert math.isnan(gradient_alignment(linear, flat, x))


def test_matrix(linear, x):
    m = alignment_matrix([linear, negated(linear)], [x, x[:3]])
    np.testing.assert_allclose(m, [[1, -1], [-1, 1]])
    m = alignment_matrix([linear, negated(linear)], [x], attackers=[1])
    np.testing.assert_allclose(m, [[-1, 1]])
    with pytest.raises(ValueError, match="attack set"):
        alignment_matrix([linear], [x, x])


def test_no_side_effects(linear, x):
    linear.train()
    x_before = x.clone()
    input_gradients(linear, x, torch.zeros(6, dtype=torch.long))
    assert linear.training and all(p.grad is None for p in linear.parameters())
    assert torch.equal(x, x_before)
