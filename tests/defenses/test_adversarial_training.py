"""adversarial-training, as the authors did it: each client's copy of the clean global model adapted separately
(Fed-Safe with s_D = 0), so the clients' models differ; and the shared-model variant, where they cannot."""

from __future__ import annotations

import pytest

from fedsafe.build import build_hooks, federation_spec
from fedsafe.defenses.adaptation import adaptation_local_spec, adversarial_finetune, pgd_loss, server_subsets
from fedsafe.defenses.adversarial_training import SharedAdversarialTrainingHook
from fedsafe.defenses.fed_safe import CopyAdaptationHook
from fedsafe.federation.state import max_abs_diff

from ._helpers import make_cfg, simulate, tiny


def _cfg(name="adversarial-training", **kw):
    return make_cfg(name, downlink_noise=0.0, **kw)


def test_per_client_models_differ():
    """Each client's copy is adapted with its own data share and random draws: the final models differ (and so ASR
    self can differ from ASR on benign clients), although every copy starts from the same clean global model."""
    r = simulate(_cfg())
    for i in range(3):
        for j in range(i + 1, 3):
            assert max_abs_diff(r.final_models[i], r.final_models[j]) > 1e-4
    assert max_abs_diff(r.final_models[0], r.global_state) > 0


def test_each_copy_is_the_clean_global_adapted_with_the_clients_own_draws():
    cfg = _cfg(fraction=0.3)
    data = tiny.tiny_data()
    r = simulate(cfg, data)
    spec = federation_spec(cfg, data)
    subs = server_subsets(data.server, [7, 10, 12], seed=cfg.seed)
    local, loss = adaptation_local_spec(cfg.defense, spec.local), pgd_loss(cfg.defense, "fp32")
    t = cfg.train.rounds + 1
    for i in range(3):
        ref, _ = adversarial_finetune(tiny.tiny_model(), r.global_state, subs[i].x, subs[i].y, local=local, loss=loss,
                                      seed=cfg.seed, round_=t, client=i, purpose="adversarial-training")
        assert max_abs_diff(r.final_models[i], ref) == 0.0


def test_same_subset_still_gives_different_models_from_the_draws_alone():
    """With f large enough that every client gets the whole server set, the copies still differ: their random
    draws (PGD start, batch order, dropout) are the client's own."""
    cfg = _cfg(fraction=1.0)  # f |D_i| >= 12 = the whole tiny server set for every client
    data = tiny.tiny_data()
    hook = build_hooks(cfg, data, federation_spec(cfg, data)).server
    assert isinstance(hook, CopyAdaptationHook) and hook.name == "adversarial-training"
    assert len({s.ids for s in hook.subsets}) == 1
    g = tiny.tiny_model().state_dict()
    a, _ = hook.adapt_downlink(g, g, round_=1, client=0)
    b, _ = hook.adapt_downlink(g, g, round_=1, client=1)
    assert max_abs_diff(a, b) > 0


def test_the_global_model_is_kept_clean_and_n_adaptations_a_round():
    r = simulate(_cfg(rounds=3))
    assert [row["defense_server_adaptations"] for row in r.metrics] == [3.0] * 4  # 3 rounds + the final downlink


def test_reproducible_from_the_seed():
    a, b, c = simulate(_cfg()), simulate(_cfg()), simulate(_cfg(seed=8))
    assert max_abs_diff(a.final_models[1], b.final_models[1]) == 0.0
    assert max_abs_diff(a.global_state, c.global_state) > 0


def test_shared_variant_gives_every_client_the_identical_model():
    r = simulate(_cfg("adversarial-training-shared"))
    for f in r.final_models[1:]:
        assert max_abs_diff(f, r.final_models[0]) == 0.0
    assert max_abs_diff(r.final_models[0], r.global_state) == 0.0
    assert [row.get("defense_server_adaptations") for row in r.metrics] == [1.0, 1.0, None]


def test_shared_variant_adapts_the_global_model_after_aggregation():
    cfg = _cfg("adversarial-training-shared", fraction=0.3)
    data = tiny.tiny_data()
    hook = build_hooks(cfg, data, federation_spec(cfg, data)).server
    assert isinstance(hook, SharedAdversarialTrainingHook)
    assert len(hook.subset) == round(0.3 * 32)  # f x the mean client size (24, 32, 40)
    state = tiny.tiny_model().state_dict()
    adapted, cost = hook.after_aggregation(state, round_=3)
    assert max_abs_diff(adapted, state) > 0 and cost["server_passes"] == (2 + 1) * 10
    sent, cost = hook.adapt_downlink(adapted, state, round_=4, client=2)
    assert max_abs_diff(sent, adapted) == 0.0 and cost == {}


@pytest.mark.parametrize("name", ["adversarial-training", "adversarial-training-shared"])
def test_downlink_noise_is_a_clear_error(name):
    with pytest.raises(ValueError, match="downlink"):
        make_cfg(name, downlink_noise=0.01) if name == "adversarial-training" else build_hooks(
            *_spec_of(make_cfg(name, downlink_noise=0.01)))


def _spec_of(cfg):
    data = tiny.tiny_data()
    return cfg, data, federation_spec(cfg, data)


def test_calibrated_downlink_noise_is_also_an_error():
    """NbAFL calibration gives s_D > 0 when T > L sqrt(N): the builder checks the noise the run really uses."""
    cfg, data, spec = _spec_of(_cfg(privacy={"calibrate": {"epsilon": 5.0, "exposures": 1}}))
    assert spec.downlink_noise > 0
    with pytest.raises(ValueError, match="privacy.calibrate"):
        build_hooks(cfg, data, spec)
