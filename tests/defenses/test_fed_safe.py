"""fed-safe: each client's own noisy copy, adversarially adapted against itself, is what it receives."""

from __future__ import annotations

import torch

from fedsafe.defenses.adaptation import adaptation_spec, adversarial_finetune, server_subset
from fedsafe.defenses.fed_safe import FedSafeHook
from fedsafe.defenses.registry import hooks_for
from fedsafe.experiments.train import federation_spec
from fedsafe.federation.round import downlink_copy
from fedsafe.federation.state import max_abs_diff

from ._helpers import make_cfg, simulate, tiny


def test_clients_final_models_differ_from_each_other():
    r = simulate(make_cfg("fed-safe"))
    finals = r.final_models
    for i in range(len(finals)):
        for j in range(i + 1, len(finals)):
            assert max_abs_diff(finals[i], finals[j]) > 1e-4


def test_final_model_is_the_adapted_noisy_copy_composed_by_hand():
    """Final model of client i = adversarial_finetune(w_T + n_i) with the key (seed, "fed-safe", T + 1, i)."""
    cfg = make_cfg("fed-safe")
    data = tiny.tiny_data()
    r = simulate(cfg, data)
    spec = federation_spec(cfg, data)
    a, sub, model = adaptation_spec(cfg, spec), server_subset(data.server, 0.5, seed=7), tiny.tiny_model()
    for i in range(data.num_clients):
        noisy = downlink_copy(r.global_state, std=0.01, seed=7, round_=cfg.train.rounds + 1, client=i)
        ref, _ = adversarial_finetune(model, noisy, sub.x, sub.y, eps=a.eps, alpha=a.alpha, steps=a.steps,
                                      random_start=True, epochs=1, lr=a.lr, batch_size=8, optimizer="adam",
                                      precision="fp32", channels_last=False, grad_clip=20.0, seed=7,
                                      round_=cfg.train.rounds + 1, client=i, purpose="fed-safe")
        assert max_abs_diff(r.final_models[i], ref) == 0.0
        assert max_abs_diff(r.final_models[i], noisy) > 0  # the adaptation did change the copy


def test_global_model_is_not_adapted():
    cfg = make_cfg("fed-safe")
    data = tiny.tiny_data()
    hooks = hooks_for(cfg, data, federation_spec(cfg, data))
    state = tiny.tiny_model().state_dict()
    kept, cost = hooks.server.after_aggregation(state, round_=1)
    assert max_abs_diff(kept, state) == 0.0 and cost == {}


def test_adaptation_uses_the_chosen_fraction_of_the_server_set():
    cfg = make_cfg("fed-safe", fraction=0.5)
    data = tiny.tiny_data()
    hook = hooks_for(cfg, data, federation_spec(cfg, data)).server
    assert isinstance(hook, FedSafeHook)
    assert len(hook.x) == round(0.5 * len(data.server)) == 6
    sub = server_subset(data.server, 0.5, seed=cfg.seed)
    assert torch.equal(hook.x, sub.x) and torch.equal(hook.y, sub.y)


def test_server_cost_is_recorded_per_round_and_for_the_final_downlink():
    cfg = make_cfg("fed-safe")
    r = simulate(cfg)
    per_adaptation = (2 + 1) * 6 * 1  # (steps + 1) * round(f * 12) * epochs
    for row in r.metrics:  # rounds 1..T and the final downlink T + 1: one adaptation per client each
        assert row["defense_server_passes"] == 3 * per_adaptation
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
    from fedsafe.experiments.train import model_factory
    from fedsafe.federation.simulator import Simulator
    from fedsafe.runs.rundir import RunDir

    cfg = make_cfg("fed-safe", rounds=3)
    data = tiny.tiny_data()
    spec = federation_spec(cfg, data)

    def sim(run_dir=None):
        return Simulator(spec=spec, data=data, model_factory=model_factory(cfg, 2, 1),
                         hooks=hooks_for(cfg, data, spec), run_dir=run_dir)

    whole = sim().run()
    rd = RunDir(tmp_path / "run")
    sim(rd).run(stop_after=1)
    resumed = sim(rd).run()
    assert resumed.resumed_from == 1
    for x, y in zip(whole.final_models, resumed.final_models, strict=True):
        assert max_abs_diff(x, y) == 0.0
