"""fed-safe: each client's own noisy copy, adversarially adapted against itself, is what it receives."""

from __future__ import annotations

import torch

from fedsafe.build import build_hooks, federation_spec, model_factory
from fedsafe.defenses.adaptation import adaptation_local_spec, adversarial_finetune, pgd_loss, server_subsets
from fedsafe.defenses.fed_safe import CopyAdaptationHook
from fedsafe.federation.round import downlink_copy
from fedsafe.federation.simulator import Simulator
from fedsafe.federation.state import max_abs_diff

from ._helpers import make_cfg, simulate, tiny

F = 0.3  # f |D_i| = 7, 10, 12 server images for the tiny clients of 24, 32 and 40 images


def test_clients_final_models_differ_from_each_other():
    r = simulate(make_cfg("fed-safe"))
    finals = r.final_models
    for i in range(len(finals)):
        for j in range(i + 1, len(finals)):
            assert max_abs_diff(finals[i], finals[j]) > 1e-4


def test_final_model_is_the_adapted_noisy_copy_composed_by_hand():
    """Final model of client i = adversarial_finetune(w_T + n_i) on round(f |D_i|) server images, with the key
    (seed, "fed-safe", T + 1, i)."""
    cfg = make_cfg("fed-safe", fraction=F)
    data = tiny.tiny_data()
    r = simulate(cfg, data)
    spec = federation_spec(cfg, data)
    counts = [round(F * len(c)) for c in data.client_train]
    subs, model = server_subsets(data.server, counts, seed=7), tiny.tiny_model()
    local, loss = adaptation_local_spec(cfg.defense, spec.local), pgd_loss(cfg.defense, "fp32")
    for i in range(data.num_clients):
        noisy = downlink_copy(r.global_state, std=0.01, seed=7, round_=cfg.train.rounds + 1, client=i)
        ref, _ = adversarial_finetune(model, noisy, subs[i].x, subs[i].y, local=local, loss=loss, seed=7,
                                      round_=cfg.train.rounds + 1, client=i, purpose="fed-safe")
        assert max_abs_diff(r.final_models[i], ref) == 0.0
        assert max_abs_diff(r.final_models[i], noisy) > 0  # the adaptation did change the copy


def test_global_model_is_not_adapted():
    cfg = make_cfg("fed-safe")
    data = tiny.tiny_data()
    hooks = build_hooks(cfg, data, federation_spec(cfg, data))
    state = tiny.tiny_model().state_dict()
    kept, cost = hooks.server.after_aggregation(state, round_=1)
    assert max_abs_diff(kept, state) == 0.0 and cost == {}


def test_each_client_is_adapted_on_f_times_its_own_training_size():
    cfg = make_cfg("fed-safe", fraction=F)
    data = tiny.tiny_data()
    hook = build_hooks(cfg, data, federation_spec(cfg, data)).server
    assert isinstance(hook, CopyAdaptationHook)
    assert [len(s) for s in hook.subsets] == [7, 10, 12]
    assert set(hook.subsets[0].ids) <= set(hook.subsets[1].ids) <= set(hook.subsets[2].ids)  # nested
    ref = server_subsets(data.server, [7, 10, 12], seed=cfg.seed)
    assert all(torch.equal(h.x, r.x) and h.ids == r.ids for h, r in zip(hook.subsets, ref, strict=True))


def test_server_cost_is_recorded_per_round_and_for_the_final_downlink():
    cfg = make_cfg("fed-safe", fraction=F)
    r = simulate(cfg)
    passes = (2 + 1) * (7 + 10 + 12) * 1  # (steps + 1) * sum_i round(f |D_i|) * epochs
    for row in r.metrics:  # rounds 1..T and the final downlink T + 1: one adaptation per client each
        assert row["defense_server_passes"] == passes
        assert row["defense_server_adaptations"] == 3
        assert row["defense_server_seconds"] > 0


def test_reproducible_from_the_seed():
    a, b = simulate(make_cfg("fed-safe")), simulate(make_cfg("fed-safe"))
    for x, y in zip(a.final_models, b.final_models, strict=True):
        assert max_abs_diff(x, y) == 0.0
    assert max_abs_diff(a.global_state, b.global_state) == 0.0
    c = simulate(make_cfg("fed-safe", seed=8))
    assert max_abs_diff(a.final_models[0], c.final_models[0]) > 0


def test_caller_global_rng_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    simulate(make_cfg("fed-safe", rounds=1))
    assert torch.equal(torch.rand(3), expected)


def test_a_resumed_run_ends_bit_identical(tmp_path):
    """The hook keeps no state across rounds: stopping after round 1 and resuming with new hooks changes nothing."""
    cfg = make_cfg("fed-safe", rounds=3)
    data = tiny.tiny_data()
    spec = federation_spec(cfg, data)

    def sim(store=None):
        return Simulator(spec=spec, data=data, model_factory=model_factory(cfg, data),
                         hooks=build_hooks(cfg, data, spec), store=store)

    whole = sim().run()
    store = tiny.tiny_store(tmp_path / "run")
    sim(store).run(stop_after=1)
    resumed = sim(store).run()
    assert resumed.resumed_from == 1
    for x, y in zip(whole.final_models, resumed.final_models, strict=True):
        assert max_abs_diff(x, y) == 0.0
