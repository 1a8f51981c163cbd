"""State arithmetic on a model with BatchNorm (a model the user brings): floating-point buffers are clipped,
noised and averaged like weights; integer counters (num_batches_tracked) are left out of norms, clipping and
noise, and averaged then rounded; attacks leave the running statistics alone."""

from __future__ import annotations

import math

import torch
from torch import nn

from fedsafe.attacks.iterative import pgd
from fedsafe.federation.screening import screen_uploads
from fedsafe.federation.state import add_gaussian, clip, fedavg, global_norm


def bn_state(seed: int, batches: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    s = {k: v.clone() for k, v in m.state_dict().items()}
    s["1.running_var"] += 0.5
    s["1.num_batches_tracked"] = torch.tensor(batches)
    return s


def test_norm_clip_and_noise_leave_integer_counters_out():
    s = bn_state(0, 1000)
    floats = [v for v in s.values() if v.is_floating_point()]
    assert global_norm(s) == math.sqrt(sum(float((v.double() ** 2).sum()) for v in floats))
    c = clip(s, 0.5)
    assert int(c["1.num_batches_tracked"]) == 1000
    assert math.isclose(global_norm(c), 0.5, rel_tol=1e-6)
    assert torch.allclose(c["1.running_var"], s["1.running_var"] * 0.5 / global_norm(s))
    g = torch.Generator().manual_seed(3)
    n = add_gaussian(s, 0.1, g)
    assert int(n["1.num_batches_tracked"]) == 1000
    ref = torch.Generator().manual_seed(3)  # the same draws, float entries only, in order
    for k, v in s.items():
        if v.is_floating_point():
            want = v + 0.1 * torch.randn(v.shape, generator=ref)
            assert torch.allclose(n[k], want), k


def test_fedavg_averages_buffers_and_rounds_counters():
    a, b = bn_state(0, 10), bn_state(1, 13)
    avg = fedavg([a, b], [3, 1])
    assert torch.allclose(avg["1.running_mean"], 0.75 * a["1.running_mean"] + 0.25 * b["1.running_mean"])
    assert avg["1.num_batches_tracked"].dtype == torch.int64 and int(avg["1.num_batches_tracked"]) == 11  # 10.75


def test_screening_norms_ignore_counters():
    ref = bn_state(0, 0)
    up = [dict(ref, **{"1.num_batches_tracked": torch.tensor(10 ** 6)}), dict(ref)]
    s = screen_uploads(up, reference=ref, norm_factor=2.0)
    assert s.norms == (0.0, 0.0)


def test_an_attack_leaves_batchnorm_statistics_and_modes_alone():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                      nn.Linear(4 * 8 * 8, 2))
    m.train()
    m(torch.rand(16, 1, 8, 8))  # running statistics away from their initial values
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1])
    pgd(m, x, y, eps=0.1, alpha=0.05, steps=3, start=None, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(mod.training for mod in m.modules())


def test_noise_never_leaves_a_negative_running_variance():
    s = bn_state(1, 10)
    n = add_gaussian(s, 5.0, torch.Generator().manual_seed(0))  # noise far larger than the variances (about 1.5)
    assert float(n["1.running_var"].min()) >= 0.0
    ref = torch.Generator().manual_seed(0)  # the same draws: every other entry is w + noise, unclamped
    for k, v in s.items():
        if v.is_floating_point():
            want = v.clone().add_(torch.randn(v.shape, generator=ref), alpha=5.0)
            assert torch.equal(n[k], want.clamp(min=0) if k.endswith("running_var") else want)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
    m.load_state_dict(n)
    assert torch.isfinite(m(torch.rand(2, 1, 8, 8))).all()
