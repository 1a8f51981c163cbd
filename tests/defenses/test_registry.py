"""Every defense is built by name from the config; unknown names are rejected."""

from __future__ import annotations

import pytest

from fedsafe import names
from fedsafe.build import build_hooks as hooks_for
from fedsafe.build import federation_spec
from fedsafe.config import DefenseConfig
from fedsafe.defenses.adaptation import PgdLoss
from fedsafe.defenses.adversarial_training import SharedAdversarialTrainingHook
from fedsafe.defenses.defense_registry import DEFENSES
from fedsafe.defenses.fed_safe import CopyAdaptationHook
from fedsafe.federation.client import cross_entropy_loss

from ._helpers import make_cfg, tiny

EXPECTED = {
    "none": (type(None), cross_entropy_loss),
    "adversarial-training": (CopyAdaptationHook, cross_entropy_loss),
    "fed-safe": (CopyAdaptationHook, cross_entropy_loss),
    "adversarial-training-shared": (SharedAdversarialTrainingHook, cross_entropy_loss),
    "client-adversarial-training": (type(None), PgdLoss),
}


def test_the_registry_holds_every_configurable_defense():
    assert set(DEFENSES) == set(EXPECTED) == set(DefenseConfig.model_fields["name"].annotation.__args__)
    assert tuple(DEFENSES) == names.DEFENSES == DefenseConfig.model_fields["name"].annotation.__args__


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_kind_lists_name_what_each_defense_builds(name):
    """names.SERVER_DEFENSES / PER_CLIENT_DEFENSES / CLIENT_DEFENSES (read by the cost estimates, the cost summary
    and the report) say what the registry's builder really makes."""
    server_type, loss = EXPECTED[name]
    assert (name in names.SERVER_DEFENSES) == (server_type is not type(None))
    assert (name in names.PER_CLIENT_DEFENSES) == (server_type is CopyAdaptationHook)
    assert (name in names.CLIENT_DEFENSES) == (loss is PgdLoss)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_defense_builds_by_name(name):
    cfg = make_cfg(name, downlink_noise=0.0 if name.startswith("adversarial-training") else 0.01)
    data = tiny.tiny_data()
    hooks = hooks_for(cfg, data, federation_spec(cfg, data))
    server_type, loss = EXPECTED[name]
    assert isinstance(hooks.server, server_type)
    assert hooks.loss_fn is loss if not isinstance(loss, type) else isinstance(hooks.loss_fn, loss)
    if hooks.server is not None:
        assert hooks.server.name == name


def test_unknown_defense_is_rejected_by_name():
    cfg = make_cfg("none")
    cfg = cfg.model_copy(update={"defense": DefenseConfig.model_construct(name="bogus")})
    data = tiny.tiny_data()
    with pytest.raises(ValueError, match="unknown defense 'bogus'"):
        hooks_for(cfg, data, federation_spec(cfg, data))


def test_the_config_rejects_an_unknown_defense_too():
    with pytest.raises(ValueError):
        make_cfg("bogus")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_online_crn_runs_in_the_configured_precision(precision):
    cfg = make_cfg("none", downlink_noise=0.0)
    cfg = cfg.model_copy(update={"crn": cfg.crn.model_copy(update={"enabled": True, "windows": (1,),
                                                                     "precision": precision})})
    data = tiny.tiny_data()
    hooks = hooks_for(cfg, data, federation_spec(cfg, data))
    assert hooks.client.precision == precision
