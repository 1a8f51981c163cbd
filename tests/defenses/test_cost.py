"""The defense cost summary a run can add to its privacy report."""

from __future__ import annotations

import pytest

from fedsafe.defenses.cost import defense_cost_summary

from ._helpers import make_cfg, simulate, tiny

IMAGES = sum(len(s) for s in tiny.tiny_data().client_train)


def test_fed_safe_cost_sums_server_adaptations_including_the_final_downlink():
    cfg = make_cfg("fed-safe", fraction=0.3)  # 2 rounds, 3 clients, steps 2, f |D_i| = 7, 10, 12 images, 1 epoch
    s = defense_cost_summary(simulate(cfg).metrics, defense=cfg.defense)
    assert s["name"] == "fed-safe" and s["fraction"] == 0.3 and s["alpha"] == pytest.approx(0.005)
    images = sum(round(0.3 * len(c)) for c in tiny.tiny_data().client_train)  # 7 + 10 + 12, one adaptation each
    assert images == 29
    assert s["server"]["adaptations"] == 3 * 3
    assert s["server"]["passes"] == 3 * (2 + 1) * images
    assert s["server"]["images"] == 3 * images
    assert s["server"]["seconds"] > 0
    assert s["clients"]["passes"] == 2.0 * IMAGES and s["clients"]["extra_passes"] == 0.0
    assert set(s["clients"]) == {"passes", "seconds", "extra_passes"} and s["clients"]["seconds"] > 0
    assert s["wall_seconds"] > 0


def test_client_adversarial_training_cost_is_on_the_clients():
    cfg = make_cfg("client-adversarial-training")
    s = defense_cost_summary(simulate(cfg).metrics, defense=cfg.defense)
    assert s["server"]["passes"] == 0.0 and s["server"]["adaptations"] == 0.0
    assert s["clients"]["passes"] == 2 * 3 * IMAGES
    assert s["clients"]["extra_passes"] == 2 * 2 * IMAGES
    assert "fraction" not in s


def test_no_defense_costs_nothing_extra():
    cfg = make_cfg("none")
    s = defense_cost_summary(simulate(cfg).metrics, defense=cfg.defense)
    assert s["name"] == "none" and "eps" not in s
    assert s["server"]["passes"] == 0.0 and s["clients"]["extra_passes"] == 0.0
    assert defense_cost_summary(simulate(cfg).metrics)["clients"]["extra_passes"] is None
