"""Adversarial fine-tuning (the piece both server defences use): cost, purity, determinism, and that it works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsafe.attacks.iterative import bim, pgd, predict
from fedsafe.defenses.adaptation import (
    AdaptationSpec,
    PgdLoss,
    adaptation_spec,
    adversarial_finetune,
    check_server_disjoint,
    server_subset,
)
from fedsafe.experiments.train import federation_spec
from fedsafe.federation.client import LocalSpec, accuracy, local_train
from fedsafe.federation.data import Split
from fedsafe.federation.state import clone, max_abs_diff

from ._helpers import make_cfg, tiny

FT = dict(eps=0.05, alpha=0.01, steps=3, random_start=True, epochs=2, lr=1e-3, batch_size=5, optimizer="adam",
          precision="fp32", channels_last=False)


def _finetune(state=None, *, seed=0, round_=1, client=0, **kw):
    model = tiny.tiny_model()
    server = tiny.tiny_split(12, 300)
    args = {**FT, **kw}
    return adversarial_finetune(model, state if state is not None else model.state_dict(), server.x, server.y,
                                seed=seed, round_=round_, client=client, **args)


def test_cost_counts_steps_plus_one_passes_per_image_and_epoch():
    _, stats = _finetune()
    assert stats["server_passes"] == (3 + 1) * 12 * 2
    assert stats["server_images"] == 12 * 2
    assert stats["server_adaptations"] == 1.0
    assert stats["server_seconds"] > 0


def test_inputs_untouched_and_caller_rng_untouched():
    model = tiny.tiny_model()
    state = clone(model.state_dict())
    before = clone(state)
    server = tiny.tiny_split(12, 300)
    x0 = server.x.clone()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    new, _ = adversarial_finetune(model, state, server.x, server.y, seed=0, round_=1, client=0, **FT)
    assert torch.equal(torch.rand(3), expected)
    assert max_abs_diff(state, before) == 0.0
    assert torch.equal(server.x, x0)
    assert max_abs_diff(new, state) > 0
    assert model.training  # a fresh module is in train mode, and stays so


def test_same_key_is_bit_identical_and_every_key_part_matters():
    a, _ = _finetune()
    b, _ = _finetune()
    assert max_abs_diff(a, b) == 0.0
    for other in (dict(seed=1), dict(round_=2), dict(client=1)):
        c, _ = _finetune(**other)
        assert max_abs_diff(a, c) > 0, other


def test_without_random_start_it_is_bim_from_zero():
    model = tiny.tiny_model().eval()  # dropout off: the loss then depends on the crafted examples only
    x, y = tiny.tiny_split(4, 5).x, tiny.tiny_split(4, 5).y
    loss_fn = PgdLoss(eps=0.05, alpha=0.01, steps=3, random_start=False)
    loss_a, k = loss_fn(model, x, y, torch.Generator())
    loss_b, _ = loss_fn(model, x, y, torch.Generator().manual_seed(9))
    ref = torch.nn.functional.cross_entropy(model(bim(model, x, y, eps=0.05, alpha=0.01, steps=3).x_adv), y)
    assert k == 4
    assert torch.equal(loss_a, loss_b)
    torch.testing.assert_close(loss_a, ref)


def test_pgd_loss_is_the_cross_entropy_of_pgd_examples():
    model = tiny.tiny_model().eval()
    x, y = tiny.tiny_split(6, 5).x, tiny.tiny_split(6, 5).y
    loss, _ = PgdLoss(eps=0.05, alpha=0.01, steps=3)(model, x, y, torch.Generator().manual_seed(4))
    adv = pgd(model, x, y, eps=0.05, alpha=0.01, steps=3, generator=torch.Generator().manual_seed(4))
    ref = torch.nn.functional.cross_entropy(model(adv.x_adv), y)
    torch.testing.assert_close(loss, ref)
    assert not model.training


@pytest.mark.parametrize("bad", [dict(eps=0.0), dict(alpha=0.0), dict(steps=0), dict(epochs=0), dict(lr=0.0),
                                 dict(optimizer="rmsprop")])
def test_adaptation_spec_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        AdaptationSpec(**bad)


def test_adaptation_spec_defaults_follow_the_authors_and_local_training():
    cfg = make_cfg("fed-safe")
    data = tiny.tiny_data()
    a = adaptation_spec(cfg, federation_spec(cfg, data))
    assert a.alpha == pytest.approx(0.03 / 6) and a.eps == 0.03 and a.steps == 2
    assert a.lr == cfg.train.lr and a.optimizer == "adam" and a.grad_clip == 20.0 and a.precision == "fp32"
    cfg = make_cfg("fed-safe", lr=0.5, alpha=0.01)
    a = adaptation_spec(cfg, federation_spec(cfg, data))
    assert a.lr == 0.5 and a.alpha == 0.01
    with pytest.raises(ValueError, match="defense.eps"):
        cfg = make_cfg("fed-safe", eps=0.0)
        adaptation_spec(cfg, federation_spec(cfg, data))


def _asr(model, x, eps):
    """White-box PGD-10 on the model's own predictions: share of images whose predicted label changes."""
    r = pgd(model, x, "pred", eps=eps, alpha=eps / 4, steps=10, generator=torch.Generator().manual_seed(5))
    return float((predict(model, r.x_adv) != r.labels).double().mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_adversarial_finetuning_lowers_white_box_asr(seed):
    """Train a tiny model on clean data, then adapt it on PGD examples of separate server data: the white-box
    PGD attack success rate on held-out images falls (0.38 -> 0.01 and 0.40 -> 0.03 with these seeds), clean
    accuracy stays."""
    train, server, test = tiny.tiny_split(160, 1), tiny.tiny_split(96, 2), tiny.tiny_split(96, 3)
    model, eps = tiny.tiny_model(), 0.1
    spec = LocalSpec(epochs=15, batch_size=16, lr=3e-3, augment=False)
    trained, _ = local_train(model, model.state_dict(), train.x, train.y, spec, seed=seed, round_=1, client=0)
    model.load_state_dict(trained)
    before, acc_before = _asr(model, test.x, eps), accuracy(model, test.x, test.y)
    adapted, _ = adversarial_finetune(model, trained, server.x, server.y, eps=eps, alpha=eps / 4, steps=5,
                                      random_start=True, epochs=10, lr=3e-3, batch_size=16, optimizer="adam",
                                      precision="fp32", channels_last=False, seed=seed, round_=1, client=0)
    model.load_state_dict(adapted)
    after = _asr(model, test.x, eps)
    print(f"seed {seed}: ASR {before:.3f} -> {after:.3f}")
    assert acc_before >= 0.9 and before >= 0.3
    assert after <= before / 3
    assert accuracy(model, test.x, test.y) >= acc_before - 0.05


@pytest.mark.parametrize("f", [0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
def test_fraction_selects_round_f_n_server_images_nested_and_stratified(f):
    server = tiny.tiny_split(37, 300)
    sub = server_subset(server, f, seed=3)
    assert len(sub) == round(f * 37)
    pos = [server.ids.index(i) for i in sub.ids]
    assert torch.equal(sub.x, server.x[pos]) and torch.equal(sub.y, server.y[pos])
    larger = server_subset(server, min(1.0, f + 0.2), seed=3)
    assert set(sub.ids) <= set(larger.ids)  # nested across f for one seed
    share = float(sub.y.double().mean())
    assert abs(share - float(server.y.double().mean())) <= 1 / len(sub) + 1e-9  # within one image per class
    again = server_subset(server, f, seed=3)
    assert again.ids == sub.ids
    if f < 1.0:
        assert server_subset(server, f, seed=4).ids != sub.ids or len(sub) <= 1


def test_fraction_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="0 server images"):
        server_subset(tiny.tiny_split(4, 300), 0.1, seed=0)


def test_server_subset_is_disjoint_from_every_client_set_on_real_splits():
    """prepare_data draws all sets from one pool: the defence's images are server images, never a client's."""
    from fedsafe.experiments.train import prepare_data

    cfg = make_cfg("fed-safe").model_copy(update={"task": make_cfg().task.model_copy(
        update={"name": "synthetic", "synthetic_size": 240})})
    data = prepare_data(cfg)
    sub = server_subset(data.server, 0.5, seed=cfg.seed)
    assert set(sub.ids) <= set(data.server.ids) and len(sub) == round(0.5 * len(data.server))
    others = set(data.global_test.ids).union(*map(lambda s: set(s.ids), data.client_train + data.client_test))
    assert not set(sub.ids) & others
    check_server_disjoint(sub, data)  # no error


def test_overlap_with_a_client_set_is_rejected():
    data = tiny.tiny_data()
    leaked = data.client_test[1]
    bad = Split(x=leaked.x[:2], y=leaked.y[:2], ids=leaked.ids[:2])
    with pytest.raises(ValueError, match="client 1 test"):
        check_server_disjoint(bad, data)
    assert np.all([i not in data.server.ids for i in bad.ids])
