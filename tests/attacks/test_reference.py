"""Our attacks against independent implementations on the same start: a plain per-image loop written here
(delta form, different code path), and torchattacks (skipped when it is not installed)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fedsafe.attacks import bim, fgsm, pgd, predict, uniform_start

EPS, ALPHA, STEPS = 0.05, 0.01, 5


def reference_attack(model, x, y, *, eps, alpha, steps, start, centre_grad):
    """Straightforward L-inf sign-gradient ascent, one image at a time, keeping delta as the state."""
    model.eval()
    out = []
    for xi, yi, di in zip(x, y, start, strict=True):
        delta = (xi + di.clamp(-eps, eps)).clamp(0, 1) - xi
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model((xi + delta)[None]), yi[None])
            (g,) = torch.autograd.grad(loss, delta)
            if centre_grad:
                g = torch.stack([gc - gc.mean() for gc in g])
            delta = (delta.detach() + alpha * g.sign()).clamp(-eps, eps)
            delta = (xi + delta).clamp(0, 1) - xi
        out.append(xi + delta)
    return torch.stack(out)


@pytest.fixture
def setup(make_cnn, make_images):
    model = make_cnn(seed=2).double()
    x = make_images(5, dtype=torch.float64, seed=3)
    return model, x, predict(model, x)


@pytest.mark.parametrize("centre_grad", [False, True])
@pytest.mark.parametrize("steps", [1, STEPS])
def test_step_loop_matches_plain_reference(setup, steps, centre_grad):
    model, x, y = setup
    start = uniform_start(x, EPS, torch.Generator().manual_seed(7))
    ours = pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=steps, start=start, centre_grad=centre_grad).x_adv
    ref = reference_attack(model, x, y, eps=EPS, alpha=ALPHA, steps=steps, start=start, centre_grad=centre_grad)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert ((ours - x).abs() > ALPHA / 2).double().mean() > 0.5  # the comparison is not vacuous


def test_fgsm_matches_plain_reference(setup):
    model, x, y = setup
    ref = reference_attack(model, x, y, eps=EPS, alpha=EPS, steps=1, start=torch.zeros_like(x), centre_grad=False)
    torch.testing.assert_close(fgsm(model, x, y, eps=EPS).x_adv, ref, rtol=0, atol=1e-12)


def test_fgsm_matches_torchattacks(setup):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = setup
    theirs = torchattacks.FGSM(model, eps=EPS)(x, y)
    torch.testing.assert_close(fgsm(model, x, y, eps=EPS).x_adv, theirs, rtol=0, atol=1e-12)


def test_bim_matches_torchattacks(setup):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = setup
    theirs = torchattacks.BIM(model, eps=EPS, alpha=ALPHA, steps=STEPS)(x, y)
    torch.testing.assert_close(bim(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS).x_adv, theirs,
                               rtol=0, atol=1e-12)


def test_pgd_matches_torchattacks_on_the_same_random_start(setup):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = setup
    seed = 11
    # torchattacks draws its start from the global generator; ours from an explicit one seeded alike
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        theirs = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)(x, y)
    ours = pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(ours.x_adv, theirs, rtol=0, atol=1e-12)
