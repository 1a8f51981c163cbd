"""benchmarks/diag_attack_spread.py tells a model that is merely far from its boundary (success rises to 100% with
eps) from one whose gradient is zero (success stays at 0 whatever eps), on two hand-made models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "diag_attack_spread.py"
spec = importlib.util.spec_from_file_location("diag_attack_spread", SCRIPT)
diag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diag)


class Linear2(nn.Module):
    """logits (s, -s) with s = mean(x) - 0.5 + bias: class 0 when the image is bright."""

    def __init__(self, bias: float = 0.0, dead: bool = False):
        super().__init__()
        self.bias, self.dead = bias, dead

    def forward(self, x):
        s = x.flatten(1).mean(1) - 0.5 + self.bias
        if self.dead:  # a constant output below a threshold no image reaches: zero gradient everywhere
            s = torch.relu(s - 10.0) + 1.0
        return torch.stack([s, -s], 1)


def _images(n=20):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 8, 8, generator=g) * 0.2 + 0.6)  # bright: mean about 0.7


def test_a_model_far_from_its_boundary_falls_as_eps_grows():
    x = _images()
    y = torch.zeros(len(x), dtype=torch.long)
    out = diag.diagnose(Linear2(), x, y, eps_values=[0.05, 0.3], steps=10, seed=0)
    assert out["clean_acc"] == 1.0 and out["zero_gradient"] == 0.0
    assert out["pgd10@0.05"] == 0.0 and out["pgd10@0.3"] == 1.0  # the boundary is ~0.2 away in L-inf
    assert out["pgd10_margin@0.05"] == out["pgd10@0.05"]
    assert out["pgd10@0.3_by_class"] == [1.0, None]


def test_a_model_with_zero_gradient_is_never_moved_and_says_so():
    x = _images()
    y = torch.zeros(len(x), dtype=torch.long)
    out = diag.diagnose(Linear2(dead=True), x, y, eps_values=[0.05, 0.5], steps=10, seed=0)
    assert out["clean_acc"] == 1.0
    assert out["zero_gradient"] == 1.0 and out["zero_gradient_by_class"] == [1.0, None]
    assert out["pgd10@0.5"] == 0.0 and out["corners@0.5"] == 0.0
