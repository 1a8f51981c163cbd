"""Membership inference: exact ROC helpers, the loss-threshold attack and offline LiRA.

Hand-worked ROC cases, a brute-force reference for the AUC, constructed score distributions with a known TPR at
a given FPR, synthetic Gaussian LiRA, and a tiny MLP memorising random labels (members) next to images it never
saw (non-members). All randomness comes from explicit generators.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fedsafe.metrics import (
    lira_offline_scores,
    logit_confidence,
    loss_scores,
    membership_roc,
    model_logit_confidence,
    out_gaussian,
    per_example_loss,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from fedsafe.metrics.lira import normal_logsf


def _brute_auc(pos, neg) -> float:
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


# --- ROC helpers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pos", "neg", "expected"),
    [
        ([3, 4], [1, 2], 1.0),
        ([1, 2], [3, 4], 0.0),
        ([1], [1], 0.5),
        ([1, 2, 3], [2, 2, 0], 6 / 9),  # 1 wins 1; 2 wins 0.5 + 0.5 + 1; 3 wins 3
        ([5, 5, 5], [5, 5], 0.5),
        ([0.9, 0.8, 0.3], [0.1, 0.3], 5.5 / 6),
        ([-math.inf, math.inf], [0.0, math.inf], (0 + 0 + 1 + 0.5) / 4),
    ],
)
def test_auc_hand_computed(pos, neg, expected):
    assert roc_auc(pos, neg) == pytest.approx(expected, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-3, 3), min_size=1, max_size=25),
    st.lists(st.integers(-3, 3), min_size=1, max_size=25),
)
def test_auc_matches_brute_force_and_is_antisymmetric(pos, neg):
    auc = roc_auc(pos, neg)
    assert auc == pytest.approx(_brute_auc(pos, neg), abs=1e-12)
    assert auc + roc_auc(neg, pos) == pytest.approx(1.0, abs=1e-12)
    fpr, tpr = roc_curve(pos, neg)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc, abs=1e-12)  # the curve agrees with the rank statistic


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=30),
    st.lists(st.integers(0, 40), min_size=100, max_size=250),
    st.sampled_from([0.01, 0.02, 0.05, 0.3]),
)
def test_tpr_at_fpr_is_best_roc_point_within_budget(pos, neg, fpr):
    curve_fpr, curve_tpr = roc_curve(pos, neg)
    best = curve_tpr[curve_fpr <= fpr + 1e-12].max()
    assert tpr_at_fpr(pos, neg, fpr) == pytest.approx(best, abs=1e-15)


def test_tpr_at_fpr_constructed_counts():
    neg = np.arange(1000.0)  # 1% FPR allows 10 false positives -> t = 989; 0.1% allows 1 -> t = 998
    pos = np.array([998.5] * 10 + [989.5] * 15 + [989.0] * 5 + [0.5] * 70)  # the five at 989 tie: not counted
    r = membership_roc(pos, neg)
    assert r.tpr_at_1pct_fpr == pytest.approx(0.25, abs=1e-15)
    assert r.tpr_at_0_1pct_fpr == pytest.approx(0.10, abs=1e-15)
    assert (r.n_members, r.n_nonmembers, r.notes) == (100, 1000, ())
    assert r.resolvable_1pct and r.resolvable_0_1pct


def test_tpr_at_fpr_on_gaussians_matches_theory():
    rng = np.random.default_rng(0)
    neg = rng.normal(0.0, 1.0, 20_000)
    pos = rng.normal(2.0, 1.0, 20_000)
    # Members flagged above the non-members' 99th percentile z = 2.3263: TPR = Phi(2 - 2.3263) = 0.3721.
    assert tpr_at_fpr(pos, neg, 0.01) == pytest.approx(0.5 * math.erfc(-(2 - 2.326348) / math.sqrt(2)), abs=0.03)
    # 0.1%: z = 3.0902, TPR = Phi(-1.0902) = 0.1378.
    assert tpr_at_fpr(pos, neg, 0.001) == pytest.approx(0.5 * math.erfc(1.090232 / math.sqrt(2)), abs=0.03)
    assert roc_auc(pos, neg) == pytest.approx(0.5 * math.erfc(-1.0), abs=0.01)  # Phi(2 / sqrt 2) = 0.9214


def test_roc_is_invariant_under_increasing_transforms():
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1, 1, 300), rng.normal(0, 1, 2000)
    a, b = membership_roc(pos, neg), membership_roc(np.exp(3 * pos), np.exp(3 * neg))
    assert (a.auc, a.tpr_at_1pct_fpr, a.tpr_at_0_1pct_fpr) == (b.auc, b.tpr_at_1pct_fpr, b.tpr_at_0_1pct_fpr)


@pytest.mark.parametrize(("n_neg", "nan_1pct", "nan_01pct"), [(99, True, True), (100, False, True),
                                                                (999, False, True), (1000, False, False)])
def test_unresolvable_tpr_is_nan_with_a_note(n_neg, nan_1pct, nan_01pct):
    rng = np.random.default_rng(2)
    r = membership_roc(rng.normal(1, 1, 50), rng.normal(0, 1, n_neg))
    assert math.isnan(r.tpr_at_1pct_fpr) == nan_1pct and r.resolvable_1pct != nan_1pct
    assert math.isnan(r.tpr_at_0_1pct_fpr) == nan_01pct and r.resolvable_0_1pct != nan_01pct
    assert len(r.notes) == nan_1pct + nan_01pct
    assert all(str(n_neg) in note and "not resolvable" in note for note in r.notes)
    assert 0 <= r.auc <= 1


@pytest.mark.parametrize(("pos", "neg"), [([], [1.0]), ([1.0], []), ([[1.0]], [1.0]), ([math.nan], [1.0])])
def test_roc_rejects_bad_scores(pos, neg):
    with pytest.raises(ValueError):
        membership_roc(pos, neg)


def test_tpr_at_fpr_rejects_bad_fpr():
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr([1.0], [0.0] * 200, 0.0)


# --- tiny models: the loss attack and LiRA -----------------------------------------------------------------------

N = 64  # members of the target: random images with random labels among 10 classes


def _mlp(g: torch.Generator, dropout: float = 0.0) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 10))
    with torch.no_grad():  # explicit-generator init: no global RNG
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5 if p.dim() > 1 else torch.zeros_like(p))
    return model


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 200) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.eval()  # full-batch and no dropout during training: deterministic, no global RNG
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def overfit():
    """(target, x, y): a tiny MLP memorised x[:N]; x[N:] (1000 more images) it never saw."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N + 1000, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (N + 1000,), generator=g)
    return _fit(_mlp(g, dropout=0.5), x[:N], y[:N]), x, y


def test_loss_attack_on_overfitted_model_is_strong(overfit):
    model, x, y = overfit
    scores = loss_scores(model, x[: 2 * N], y[: 2 * N])
    r = membership_roc(scores[:N], scores[N:])
    assert r.auc > 0.8, f"loss attack on the overfitted model: AUC {r.auc:.4f}"  # measured: 1.0000


def test_loss_attack_is_chance_on_examples_the_model_never_saw(overfit):
    model, x, y = overfit
    scores = loss_scores(model, x[N:], y[N:])  # "members" and non-members both unseen, same distribution
    r = membership_roc(scores[:500], scores[500:])
    # null std sqrt(1001 / (12 * 500^2)) = 0.018: > 4 sigma of margin; measured 0.4979
    assert abs(r.auc - 0.5) < 0.08, f"loss attack on unseen examples: AUC {r.auc:.4f}"


def test_per_example_loss_matches_cross_entropy_in_batches_and_keeps_mode(overfit):
    model, x, y = overfit
    x0 = x.clone()
    expected = F.cross_entropy(model.eval()(x).double(), y, reduction="none")
    model.train()  # dropout 0.5: any forward in train mode would differ from eval
    batched = per_example_loss(model, x, y, batch_size=7)
    assert model.training and all(m.training for m in model.modules())
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-6)
    assert batched.dtype == torch.float64 and torch.equal(x, x0)
    torch.testing.assert_close(loss_scores(model, x, y), -per_example_loss(model, x, y))


def test_bf16_precision_gives_nearly_the_same_attack(overfit):
    model, x, y = overfit
    fp32 = membership_roc(*loss_scores(model, x[: 2 * N], y[: 2 * N]).split(N)).auc
    bf16 = membership_roc(*loss_scores(model, x[: 2 * N], y[: 2 * N], precision="bf16").split(N)).auc
    assert abs(fp32 - bf16) < 0.05


@pytest.mark.parametrize(
    ("y", "match"),
    [(torch.zeros(5), "integer"), (torch.zeros(4, dtype=torch.long), "shape"), (torch.full((5,), 10), "indices")],
)
def test_loss_rejects_bad_labels(overfit, y, match):
    model, x, _ = overfit
    with pytest.raises(ValueError, match=match):
        per_example_loss(model, x[:5], y)


def test_lira_on_overfitted_model_with_disjoint_half_shadows(overfit):
    target, x, y = overfit
    pool_x, pool_y = x[: 2 * N], y[: 2 * N]  # N members of the target, then N non-members
    g = torch.Generator().manual_seed(1)
    halves = torch.randperm(2 * N, generator=g).split(N)  # independent of the target's membership
    shadows, in_mask = [], np.zeros((6, 2 * N), dtype=bool)
    for s in range(6):
        half = halves[s % 2]
        in_mask[s, half.numpy()] = True
        shadows.append(model_logit_confidence(_fit(_mlp(g), pool_x[half], pool_y[half]), pool_x, pool_y))
    target_phi = model_logit_confidence(target, pool_x, pool_y)
    for global_std in (True, False):  # 3 OUT models per example
        scores = lira_offline_scores(target_phi, torch.stack(shadows), in_mask, global_std=global_std)
        auc = membership_roc(scores[:N], scores[N:]).auc
        assert auc > 0.8, f"LiRA, global_std={global_std}: AUC {auc:.4f}"  # measured 0.9758 (global), 0.9658


# --- LiRA maths --------------------------------------------------------------------------------------------------


def test_logit_confidence_is_stable_and_exact():
    g = torch.Generator().manual_seed(3)
    logits, y = torch.randn(50, 5, generator=g, dtype=torch.float64) * 3, torch.randint(0, 5, (50,), generator=g)
    p = logits.softmax(1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(logit_confidence(logits, y), torch.log(p / (1 - p)))
    binary = torch.tensor([[2.0, -1.5], [100.0, 0.0], [0.0, 1000.0]], dtype=torch.float64)
    torch.testing.assert_close(logit_confidence(binary, torch.tensor([0, 0, 0])), torch.tensor([3.5, 100.0, -1000.0],
                                                                                             dtype=torch.float64))
    three = torch.tensor([[0.0, 1000.0, 1000.0]], dtype=torch.float64)  # naive softmax gives log(0 / 1) = -inf
    torch.testing.assert_close(logit_confidence(three, torch.tensor([0])), torch.tensor([-1000.0 - math.log(2)],
                                                                                         dtype=torch.float64))


def test_normal_logsf_matches_erfc_and_scipy():
    z = np.concatenate([np.linspace(-30, 60, 181), [1e3, 1e5]])
    moderate = z[z < 25]  # log sf = log(erfc(z / sqrt 2) / 2); for z < 0, log1p of minus the lower tail
    root2 = math.sqrt(2)
    reference = [math.log(0.5 * math.erfc(v / root2)) if v >= 0 else math.log1p(-0.5 * math.erfc(-v / root2))
                 for v in moderate]
    np.testing.assert_allclose(normal_logsf(moderate), reference, rtol=1e-12)
    stats = pytest.importorskip("scipy.stats")
    np.testing.assert_allclose(normal_logsf(z), stats.norm.logsf(z), rtol=1e-12)


def test_lira_hand_computed_per_example_and_global_std():
    shadow = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])  # means (2, 1); SS (8, 0)
    mean, std = out_gaussian(shadow)
    np.testing.assert_allclose(mean, [2.0, 1.0])
    np.testing.assert_allclose(std, [2.0, 1e-30])  # unbiased: sqrt(8 / 2); a zero std is floored
    _, pooled = out_gaussian(shadow, global_std=True)
    np.testing.assert_allclose(pooled, [math.sqrt(2.0)] * 2)  # sqrt((8 + 0) / (2 + 2))
    scores = lira_offline_scores(np.array([4.0, 1.0]), shadow)  # z = (1, 0)
    np.testing.assert_allclose(scores, [-math.log(0.5 * math.erfc(1 / math.sqrt(2))), math.log(2)], rtol=1e-12)
    glob = lira_offline_scores(np.array([4.0, 1.0]), shadow, global_std=True)  # z = (sqrt 2, 0)
    np.testing.assert_allclose(glob, [-math.log(0.5 * math.erfc(1.0)), math.log(2)], rtol=1e-12)


def test_lira_ignores_in_models_and_is_invariant_per_example():
    rng = np.random.default_rng(4)
    out_phi, target = rng.normal(0, 1, (5, 30)), rng.normal(0, 1, 30)
    in_phi = np.full((3, 30), np.nan)  # IN models' values are never read
    mask = np.vstack([np.zeros((5, 30), bool), np.ones((3, 30), bool)])
    expected = lira_offline_scores(target, out_phi)
    np.testing.assert_allclose(lira_offline_scores(target, np.vstack([out_phi, in_phi]), mask), expected)
    shift, scale = rng.normal(0, 5, 30), rng.uniform(0.1, 10, 30)  # an affine change of one example's phi scale
    np.testing.assert_allclose(lira_offline_scores(target * scale + shift, out_phi * scale + shift), expected,
                               rtol=1e-9)


@pytest.mark.parametrize(("shift", "low", "high"), [(2.0, 0.85, 1.0), (0.0, 0.45, 0.55)])
def test_lira_on_synthetic_gaussians(shift, low, high):
    rng = np.random.default_rng(5)
    n, s = 2000, 16
    mu, sigma = rng.normal(0, 3, n), rng.uniform(0.5, 2.0, n)  # examples differ in difficulty
    shadow = mu + sigma * rng.normal(0, 1, (s, n))
    member = np.arange(n) < n // 2
    target = mu + sigma * (rng.normal(0, 1, n) + shift * member)
    scores = lira_offline_scores(target, shadow)
    auc = roc_auc(scores[member], scores[~member])
    assert low < auc < high  # shift 2: ideal Phi(2 / sqrt 2) = 0.92; shift 0: null std 0.013
    if shift:  # per-example calibration beats a global threshold on phi (raw AUC about 0.7)
        assert auc > roc_auc(target[member], target[~member]) + 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_phi": np.zeros(3), "shadow_phi": np.zeros((1, 3))}, ">= 2 OUT"),
        ({"target_phi": np.zeros(3), "shadow_phi": np.zeros((2, 3)), "shadow_in_mask": np.eye(2, 3, dtype=bool)},
         ">= 2 OUT"),
        ({"target_phi": np.zeros(2), "shadow_phi": np.zeros((2, 3))}, "shape"),
        ({"target_phi": np.zeros(3), "shadow_phi": np.zeros((2, 3)), "shadow_in_mask": np.zeros((2, 3))}, "bool"),
        ({"target_phi": np.zeros(3), "shadow_phi": np.full((2, 3), np.inf)}, "non-finite"),
        ({"target_phi": np.zeros(3), "shadow_phi": np.zeros((1, 3)), "global_std": True}, "at least one example"),
    ],
)
def test_lira_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lira_offline_scores(**kwargs)
