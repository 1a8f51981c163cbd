"""The training step: ``local_train`` with its multi-tensor optimiser and on-device loss sum equals,
bit for bit, the plain per-tensor loop a PyTorch user writes, with the same draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fedsafe.data.augment import augment_batch
from fedsafe.federation.client import local_train, make_optimizer
from fedsafe.federation.federation_spec import LocalSpec
from fedsafe.seeding import seed_for, torch_generator

from ._tiny import tiny_model, tiny_split


def reference_local_train(model, state, x, y, spec: LocalSpec, *, seed, round_, client, augment):
    """The per-tensor loop (``foreach=False`` optimiser and clipping), the loss summed on the host."""
    model.load_state_dict(state)
    gen = torch_generator(seed, "local-train", round_, client)
    if spec.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=spec.lr, foreach=False)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, foreach=False)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, "dropout", round_, client))
        model.train()
        for _ in range(spec.epochs):
            order = torch.randperm(len(x), generator=gen)
            for s in range(0, len(x), spec.batch_size):
                idx = order[s:s + spec.batch_size]
                xb, yb = x[idx], y[idx]
                if augment:
                    xb = augment_batch(xb, gen)
                for p in model.parameters():
                    p.grad = None
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(model.parameters()), spec.grad_clip, foreach=False)
                opt.step()
                losses.append(float(loss.detach()))
    return {k: v.clone() for k, v in model.state_dict().items()}, sum(losses) / len(losses)


@pytest.mark.parametrize(("optimizer", "momentum", "augment"), [("adam", 0.0, True), ("sgd", 0.9, False),
                                                                 ("adam", 0.0, False)])
def test_local_train_equals_the_per_tensor_loop_bit_for_bit(optimizer, momentum, augment):
    data = tiny_split(40, seed=3)
    spec = LocalSpec(epochs=2, batch_size=8, optimizer=optimizer, lr=5e-3, momentum=momentum, grad_clip=0.05,
                     augment=augment, precision="fp32")  # a small clip norm: clipping is active every step
    start = tiny_model().state_dict()
    got, stats = local_train(tiny_model(), start, data.x, data.y, spec, seed=11, round_=2, client=1,
                             augment_fn=augment_batch)
    ref, ref_loss = reference_local_train(tiny_model(), start, data.x, data.y, spec, seed=11, round_=2, client=1,
                                          augment=augment)
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref), [k for k in ref if not torch.equal(got[k], ref[k])]
    assert not torch.equal(got["features.0.0.weight"], start["features.0.0.weight"])  # it trained
    assert stats.loss == pytest.approx(ref_loss, rel=1e-12, abs=0)
    assert (stats.images, stats.passes) == (80, 80)


def test_the_optimisers_are_multi_tensor_not_fused():
    params = list(tiny_model().parameters())
    for name in ("adam", "sgd"):
        opt = make_optimizer(name, iter(params), lr=1e-3)
        assert opt.defaults["foreach"] is True and not opt.defaults.get("fused")


def test_dropout_model_trains_identically_twice():
    """The loss is summed on the device now; dropout draws still come from the keyed, forked stream."""
    data = tiny_split(24, seed=5)
    spec = LocalSpec(epochs=1, batch_size=8, optimizer="adam", lr=1e-3, grad_clip=20.0, augment=False,
                     precision="fp32")
    model = tiny_model()
    model.classifier[-2].p = 0.5
    start = {k: v.clone() for k, v in model.state_dict().items()}
    a, sa = local_train(model, start, data.x, data.y, spec, seed=1, round_=1, client=0)
    rng = torch.get_rng_state()
    b, sb = local_train(model, start, data.x, data.y, spec, seed=1, round_=1, client=0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a[k], b[k]) for k in a) and sa.loss == sb.loss
