"""client-adversarial-training: Madry PGD inside local training, k + 1 passes per image, no server work."""

from __future__ import annotations

import torch

from fedsafe.build import build_hooks as hooks_for
from fedsafe.build import federation_spec
from fedsafe.defenses.adaptation import PgdLoss
from fedsafe.defenses.client_adversarial import madry_loss
from fedsafe.federation.client import local_train
from fedsafe.federation.federation_spec import LocalSpec
from fedsafe.federation.state import clone, max_abs_diff

from ._helpers import make_cfg, simulate, tiny


def test_builder_gives_a_pgd_loss_of_the_config_and_no_server_hook():
    cfg = make_cfg("client-adversarial-training", steps=4, eps=0.06)
    data = tiny.tiny_data()
    hooks = hooks_for(cfg, data, federation_spec(cfg, data))
    assert hooks.server is None and hooks.client is None
    assert hooks.loss_fn == PgdLoss(eps=0.06, alpha=0.01, steps=4, random_start=True, precision="fp32")


def test_local_training_counts_steps_plus_one_passes_and_differs_from_plain_training():
    client = tiny.tiny_split(24, 100)
    spec = LocalSpec(epochs=2, batch_size=8, optimizer="adam", lr=1e-3, grad_clip=20.0, augment=False)
    model = tiny.tiny_model()
    w0 = clone(model.state_dict())  # not the live state dict: its tensors are the parameters being trained
    adv, st = local_train(model, w0, client.x, client.y, spec, seed=0, round_=1, client=0,
                          loss_fn=madry_loss(eps=0.05, alpha=0.01, steps=3))
    plain, st_plain = local_train(model, w0, client.x, client.y, spec, seed=0, round_=1, client=0)
    assert st.passes == (3 + 1) * 24 * 2 and st_plain.passes == 24 * 2
    assert max_abs_diff(adv, plain) > 0
    again, _ = local_train(model, w0, client.x, client.y, spec, seed=0, round_=1, client=0,
                           loss_fn=madry_loss(eps=0.05, alpha=0.01, steps=3))
    assert max_abs_diff(adv, again) == 0.0
    assert model.training  # pgd's eval mode inside the loss was restored


def test_in_the_federation_clients_pay_k_plus_one_passes_and_runs_are_reproducible():
    cfg = make_cfg("client-adversarial-training")  # steps 2
    a, b = simulate(cfg), simulate(cfg)
    images = sum(len(s) for s in tiny.tiny_data().client_train)
    assert all(row["train_passes"] == 3 * images for row in a.metrics[:-1])
    assert not any(k.startswith("defense_") for row in a.metrics for k in row)
    for x, y in zip(a.final_models, b.final_models, strict=True):
        assert max_abs_diff(x, y) == 0.0


def test_loss_under_bf16_autocast_keeps_fp32_inputs():
    model = tiny.tiny_model()
    x, y = tiny.tiny_split(4, 5).x, tiny.tiny_split(4, 5).y
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, k = madry_loss(eps=0.03, alpha=0.005, steps=2, precision="bf16")(model, x, y,
                                                                              torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and k == 3
