"""A huge finite upload never reaches the global model by default, and a round whose aggregate blows up stops the
run there, naming the round, the clients and the cause (design §3.1)."""

from __future__ import annotations

import logging

import pytest
import torch

from fedsafe.config import FederationConfig
from fedsafe.federation.federation_spec import DEFAULT_NORM_FACTOR, FederationSpec
from fedsafe.federation.hooks import Hooks
from fedsafe.federation.simulator import Simulator

from ._tiny import tiny_data, tiny_model, tiny_spec


class HugeInRound:
    """Client ``victim`` sends its weights x1e6 in round ``round_`` only (finite: no NaN/Inf check catches it)."""

    name = "huge"

    def __init__(self, victim: int, round_: int):
        self.victim, self.round_ = victim, round_

    def on_upload(self, upload, *, round_, client):
        if (client, round_) != (self.victim, self.round_):
            return dict(upload)
        return {k: v * 1e6 if v.is_floating_point() else v for k, v in upload.items()}


def _run(hook=None, **kw):
    spec = tiny_spec(rounds=3, **kw)
    return Simulator(spec=spec, data=tiny_data(), model_factory=tiny_model, hooks=Hooks(upload=hook)).run()


def test_the_norm_screen_is_on_by_default_in_the_spec_and_the_config():
    spec = tiny_spec()
    assert (spec.norm_factor, spec.norm_action) == (DEFAULT_NORM_FACTOR, "reject")
    f = FederationConfig()
    assert (f.norm_factor, f.norm_action) == (DEFAULT_NORM_FACTOR, "reject")
    assert FederationSpec.__dataclass_fields__["norm_factor"].default == f.norm_factor


def test_a_huge_upload_is_rejected_by_default_and_named(caplog):
    clean = _run()
    with caplog.at_level(logging.WARNING, logger="fedsafe.federation.protocol"):
        poisoned = _run(HugeInRound(victim=1, round_=2))

    row = poisoned.metrics[1]
    assert [r["client"] for r in row["rejected_uploads"]] == [1]
    assert f"> {DEFAULT_NORM_FACTOR:g} x median norm" in row["rejected_uploads"][0]["reason"]
    assert "round 2: rejected the upload of client 1: norm" in caplog.text
    assert "rejected_uploads" not in poisoned.metrics[0] and "rejected_uploads" not in poisoned.metrics[2]
    assert "rejected_uploads" not in clean.metrics[1]  # no honest upload is rejected
    top = max(float(v.abs().max()) for v in poisoned.global_state.values() if v.is_floating_point())
    clean_top = max(float(v.abs().max()) for v in clean.global_state.values() if v.is_floating_point())
    assert top < 2 * clean_top  # the global model never saw it


def test_a_round_whose_aggregate_explodes_stops_there_naming_round_clients_and_cause():
    with pytest.raises(ValueError) as err:
        _run(HugeInRound(victim=1, round_=2), norm_factor=None)  # the screen turned off
    message = str(err.value)
    assert message.startswith("round 2: the aggregate of clients 0, 1, 2 exploded: its update norm")
    assert "cause: client 1's update norm" in message and "client 0's" not in message
    assert "federation.norm_action reject (the default) or clip" in message


def test_clipping_a_huge_upload_keeps_the_run_going():
    r = _run(HugeInRound(victim=0, round_=2), norm_action="clip")
    assert [f["client"] for f in r.metrics[1]["flagged_uploads"]] == [0]
    assert all(torch.isfinite(v).all() for v in r.global_state.values())
