"""Helpers of the defense tests: the tiny federation of tests/federation/_tiny.py and a config that matches it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fedsafe.build import build_hooks, federation_spec, model_factory
from fedsafe.config import ExperimentConfig
from fedsafe.federation.simulator import SimulationResult, Simulator

_spec = importlib.util.spec_from_file_location("_tiny_fed_defenses",
                                               Path(__file__).parents[1] / "federation" / "_tiny.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


def make_cfg(defense: str = "fed-safe", *, seed: int = 7, rounds: int = 2, downlink_noise: float = 0.01,
             privacy: dict | None = None, **defense_kw: object) -> ExperimentConfig:
    """A config whose model is the tiny federation's (16 x 16 grey, width 0.04), fp32, no augmentation."""
    d = {"name": defense, "fraction": 0.5, "steps": 2, "batch_size": 8}
    d.update(defense_kw)
    return ExperimentConfig.model_validate({
        "seed": seed,
        "task": {"image_size": 16, "channels": 1},
        "model": {"name": "paper-cnn", "width": 0.04, "dropout": 0.25},
        "train": {"rounds": rounds, "local_epochs": 1, "batch_size": 8, "optimizer": "adam", "lr": 1e-3,
                  "augment": False, "precision": "fp32", "channels_last": False, "grad_clip": 20.0, "device": "cpu"},
        "federation": {"downlink_noise": downlink_noise, "uplink_clip": 50.0, "uplink_noise": 0.001,
                       "keep_received_rounds": 1},
        "privacy": privacy or {},
        "defense": d,
    })


def simulate(cfg: ExperimentConfig, data=None, store=None) -> SimulationResult:
    """Build the hooks by name and run the federation of ``cfg`` on the tiny data (in memory unless ``store``)."""
    data = data if data is not None else tiny.tiny_data()
    spec = federation_spec(cfg, data)
    sim = Simulator(spec=spec, data=data, model_factory=model_factory(cfg, data), hooks=build_hooks(cfg, data, spec),
                    store=store)
    return sim.run()
