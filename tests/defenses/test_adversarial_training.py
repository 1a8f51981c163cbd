"""adversarial-training: one adapted global model, the same for every client, no downlink noise."""

from __future__ import annotations

import pytest

from fedsafe.defenses.adaptation import adaptation_spec, finetune_with, server_subset
from fedsafe.defenses.adversarial_training import AdversarialTrainingHook
from fedsafe.defenses.registry import hooks_for
from fedsafe.experiments.train import federation_spec
from fedsafe.federation.state import max_abs_diff

from ._helpers import make_cfg, simulate, tiny


def _cfg(**kw):
    return make_cfg("adversarial-training", downlink_noise=0.0, **kw)


def test_every_client_gets_the_identical_model():
    r = simulate(_cfg())
    for f in r.final_models[1:]:
        assert max_abs_diff(f, r.final_models[0]) == 0.0
    assert max_abs_diff(r.final_models[0], r.global_state) == 0.0


def test_global_model_is_adapted_after_aggregation():
    cfg = _cfg()
    data = tiny.tiny_data()
    spec = federation_spec(cfg, data)
    hook = hooks_for(cfg, data, spec).server
    assert isinstance(hook, AdversarialTrainingHook)
    state = tiny.tiny_model().state_dict()
    adapted, cost = hook.after_aggregation(state, round_=3)
    sub = server_subset(data.server, 0.5, seed=cfg.seed)
    ref, _ = finetune_with(adaptation_spec(cfg, spec), tiny.tiny_model(), state, sub.x, sub.y, seed=cfg.seed,
                           round_=3, client=0, purpose="adversarial-training")
    assert max_abs_diff(adapted, ref) == 0.0 and max_abs_diff(adapted, state) > 0
    assert cost["server_passes"] == (2 + 1) * 6
    sent, cost = hook.adapt_downlink(adapted, state, round_=4, client=2)
    assert max_abs_diff(sent, adapted) == 0.0 and cost == {}


def test_one_adaptation_per_round_and_none_on_the_final_downlink():
    r = simulate(_cfg(rounds=3))
    rounds, final = r.metrics[:-1], r.metrics[-1]
    assert [row["defense_server_adaptations"] for row in rounds] == [1.0, 1.0, 1.0]
    assert all(row["defense_server_passes"] == (2 + 1) * 6 for row in rounds)
    assert "defense_server_passes" not in final


def test_reproducible_from_the_seed():
    a, b, c = simulate(_cfg()), simulate(_cfg()), simulate(_cfg(seed=8))
    assert max_abs_diff(a.global_state, b.global_state) == 0.0
    assert max_abs_diff(a.global_state, c.global_state) > 0


@pytest.mark.parametrize("noise", [0.01, 0.03])
def test_downlink_noise_is_a_clear_error(noise):
    cfg = make_cfg("adversarial-training", downlink_noise=noise)
    data = tiny.tiny_data()
    with pytest.raises(ValueError, match="same model.*downlink noise"):
        hooks_for(cfg, data, federation_spec(cfg, data))


def test_calibrated_downlink_noise_is_also_an_error():
    """NbAFL calibration gives s_D > 0 when T > L sqrt(N): the builder checks the noise the run really uses."""
    cfg = _cfg(privacy={"calibrate": {"epsilon": 5.0, "exposures": 1}})
    data = tiny.tiny_data()
    spec = federation_spec(cfg, data)
    assert spec.downlink_noise > 0
    with pytest.raises(ValueError, match="privacy.calibrate"):
        hooks_for(cfg, data, spec)
