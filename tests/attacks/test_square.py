"""Square Attack (L-inf) equals torchattacks' ``Square`` (a port of AutoAttack's) given the same seed, stays in the
eps-ball and [0, 1], and finds adversarial examples where the input gradient is zero."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsafe.attacks.square import p_schedule, square_linf
from fedsafe.models.cnn import PaperCNN

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture
def model():
    """A small CNN whose decisions vary with the image (its last layer scaled up so that it is not constant)."""
    torch.manual_seed(0)
    m = PaperCNN(num_classes=3, image_size=16, width=0.1).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    return m


@pytest.mark.parametrize(("eps", "queries", "seed"), [(0.05, 60, 0), (0.1, 200, 3)])
def test_equals_torchattacks_square(model, eps, queries, seed):
    x = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)  # every image starts correct: torchattacks attacks them all, as ours does
    theirs = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, p_init=0.8,
                                 loss="margin", resc_schedule=True, seed=seed)(x, y)
    ours = square_linf(model, x, y, eps=eps, queries=queries, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        fooled = model(ours.x_adv).argmax(1) != y
        fooled_theirs = model(theirs).argmax(1) != y
    assert torch.equal(fooled, fooled_theirs) and fooled.any()
    # torchattacks returns the clean image where it failed, ours the best point found: equal where both fooled
    assert torch.equal(ours.x_adv[fooled], theirs[fooled])
    assert torch.equal(theirs[~fooled], x[~fooled])


def test_stays_in_the_ball_and_counts_no_gradient(model):
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    r = square_linf(model, x, eps=0.03, queries=30, generator=torch.Generator().manual_seed(0))
    assert r.delta.abs().max() <= 0.03 + 1e-6 and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert r.forward_backward == 0 and 2 <= r.forwards <= 32


class _Quantised(nn.Module):
    """Rounds its input to 8 levels before a linear layer: the input gradient is zero everywhere."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
        torch.nn.init.normal_(self.lin[1].weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return self.lin(torch.round(x * 8) / 8)  # round has a zero derivative: no gradient reaches x


def test_finds_what_a_zero_gradient_hides():
    from fedsafe.attacks import bim
    m = _Quantised().eval()
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = m(x).argmax(1)
    grad_attack = bim(m, x, y, eps=0.3, alpha=0.03, steps=20)
    square = square_linf(m, x, y, eps=0.3, queries=300, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pgd_rate = (m(grad_attack.x_adv).argmax(1) != y).float().mean()
        square_rate = (m(square.x_adv).argmax(1) != y).float().mean()
    assert pgd_rate == 0 and square_rate > 0.5


def test_schedule_and_arguments():
    assert p_schedule(0, 10000, 0.8) == 0.8 and p_schedule(11, 10000, 0.8) == 0.4 and p_schedule(9000, 10000, 0.8) \
        == 0.8 / 512
    assert p_schedule(1, 100, 0.8) == 0.2  # rescaled: iteration 1 of 100 is iteration 100 of 10,000: p_init / 4
    with pytest.raises(ValueError, match="queries"):
        square_linf(nn.Linear(2, 2), torch.rand(1, 1, 2, 2), eps=0.1, queries=0, generator=torch.Generator())
