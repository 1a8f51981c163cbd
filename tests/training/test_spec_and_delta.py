"""One home per parameter: the attack spec and its start (keys unchanged for the settings that existed before, the
CRN budget explicit), and the reproductions' typed config deltas (the same configs as the strings they replace)."""

from __future__ import annotations

import hashlib
import json

import pytest

from fedsafe.attacks.spec import DEFAULT_EPS, DEFAULT_WINDOWS, AttackSpec, Start, sweep
from fedsafe.config import load_config
from fedsafe.reproduce.planning import base_config
from fedsafe.reproduce.reproductions.base import Options
from fedsafe.reproduce.reproductions.setups import CRN_RUN, FED_SAFE
from fedsafe.training.delta import ConfigDelta, describe_trainings

CONTEXT = {"precision": "fp32", "batch_size": 100, "crn_precision": "fp32"}


def _key_before(attack: str, eps: float, alpha: float | None, steps: int, start: str, seed: int = 0) -> str:
    """The cache key as the code before the Start type wrote it (its spec had crn_alpha / crn_steps, no crn eps)."""
    spec = {"attack": attack, "eps": eps, "alpha": alpha, "steps": steps, "start": start, "seed": seed,
            "centre_grad": False, "labels": "pred", "crn_alpha": None, "crn_steps": None}
    blob = json.dumps({"spec": spec, "context": CONTEXT}, sort_keys=True, default=str)
    return f"{attack}{'' if attack == 'fgsm' else steps}-{start}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


@pytest.mark.parametrize("attack, eps, alpha, steps, start", [
    ("pgd", 0.05, 0.001, 1, Start.crn(10, eps=0.05)), ("pgd", 0.05, 0.001, 40, "random"),
    ("fgsm", 0.03, None, 1, Start.crn(5, eps=0.03)), ("bim", 0.01, 0.005, 20, "zero")])
def test_cache_keys_of_the_settings_that_existed_before_are_unchanged(attack, eps, alpha, steps, start):
    spec = AttackSpec(attack=attack, eps=eps, alpha=alpha, steps=steps, start=start)
    assert spec.key(**CONTEXT) == _key_before(attack, eps, alpha, steps, str(spec.start))


def test_the_crn_budget_is_explicit_and_defaults_to_the_runs():
    cfg = load_config(overrides=["crn.eps=0.05", "crn.steps=4", "train.local_epochs=2"])
    own = AttackSpec(attack="fgsm", eps=0.03, start=Start.crn(10, eps=0.03)).start.crn_settings(cfg)
    runs = AttackSpec(attack="fgsm", eps=0.03, start="crn10").start.crn_settings(cfg)
    assert (own.eps, own.alpha, own.steps) == (0.03, 0.03 / 4, 4)
    assert (runs.eps, runs.alpha, runs.steps) == (0.05, 0.05 / 4, 4)  # the online buffers' settings
    stepped = Start.crn(5, alpha=0.001).crn_settings(load_config(overrides=["train.local_epochs=3"]))
    assert (stepped.alpha, stepped.steps) == (0.001, 3)  # j = E when crn.steps is not set
    # the run's budget is another configuration than the attack's: another key
    a, b = AttackSpec(eps=0.03, start="crn10"), AttackSpec(eps=0.03, start=Start.crn(10, eps=0.03))
    assert a.key(**CONTEXT) != b.key(**CONTEXT) and a.to_dict()["crn_eps"] is None and "crn_eps" not in b.to_dict()


@pytest.mark.parametrize("spec", [
    AttackSpec(), AttackSpec(attack="fgsm", eps=0.02, start="zero"), AttackSpec(start=Start.crn(5)),
    AttackSpec(eps=0.03, start=Start.crn(10, eps=0.05, alpha=0.002, steps=3), seed=4, labels="true")])
def test_a_spec_reads_back_from_its_record(spec):
    assert AttackSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_starts_and_specs_are_validated_once():
    assert Start.parse("crn5") == Start.crn(5) and Start.parse("uniform") == Start.parse("random")
    assert [s.start.name for s in sweep("pgd", start=["zero", Start.crn(10, eps=0.05)])] == ["zero", "crn10"]
    for bad, message in [(lambda: Start.parse("crn0"), "window"), (lambda: Start.crn(5, eps=0.0), "eps"),
                         (lambda: Start("zero", window=5), "no CRN settings"), (lambda: Start.crn(5, steps=0), "steps"),
                         (lambda: AttackSpec(alpha=0.0), "alpha"), (lambda: AttackSpec(steps=True), "steps")]:
        with pytest.raises(ValueError, match=message):
            bad()
    assert (DEFAULT_EPS, DEFAULT_WINDOWS) == (0.05, (5, 10))  # the papers' budget and CRN windows


def test_a_delta_gives_the_config_of_the_strings_it_replaces():
    old = load_config(profile="cpu", overrides=[
        "task.name=synthetic", "splits.num_clients=3", "defense.name=none", "federation.downlink_noise=0.01",
        "crn.enabled=true", "crn.eps=0.05", "crn.windows=[5,10]", "seed=1"])
    assert base_config("synthetic", 1, Options(), CRN_RUN) == old
    dp = FED_SAFE | ConfigDelta.of(defense={"fraction": 1.0}, federation={"uplink_clip": 123.0, "uplink_noise": 1e-3})
    cfg = load_config(overrides=dp.overrides())
    assert (cfg.defense.name, cfg.defense.fraction, cfg.federation.uplink_clip, cfg.federation.uplink_noise,
            cfg.federation.downlink_noise, cfg.crn.enabled) == ("fed-safe", 1.0, 123.0, 1e-3, 0.01, False)


def test_a_delta_refuses_what_the_config_refuses_and_says_what_it_sets():
    with pytest.raises(ValueError, match="federation.uplinkclip"):
        ConfigDelta.of(federation={"uplinkclip": 5.0})
    with pytest.raises(ValueError, match="defense.name"):
        ConfigDelta.of(defense={"name": "fedsafe"})
    merged = ConfigDelta.of(splits={"num_clients": 3}) | ConfigDelta.of(splits={"num_clients": 5})
    assert merged.get("splits.num_clients") == 5 and len(merged.items) == 1
    text = describe_trainings({"A": FED_SAFE, "B": FED_SAFE | ConfigDelta.of(defense={"fraction": 0.5})})
    assert text == ("3 clients, server set for f = 1 of the largest client, no CRN, defense fed-safe, downlink noise "
                    "s_D 0.01; A: as above; B: f = 0.5")
