"""A poisoned client cannot poison the federation silently (design §3.1): its non-finite uploads are rejected
every round, named in the log, the metrics and the summary, and the federation trains as a clean one does."""

from __future__ import annotations

import logging

import pytest
import torch

from fedsafe.federation.hooks import Hooks
from fedsafe.federation.protocol import client_update, server_aggregate
from fedsafe.federation.simulator import Simulator
from fedsafe.federation.state import global_norm

from ._tiny import tiny_data, tiny_model, tiny_spec


class Poison:
    """An upload hook (the library's extension point) that replaces client ``victim``'s upload every round."""

    name = "poison"

    def __init__(self, victim: int, kind: str):
        self.victim, self.kind = victim, kind

    def on_upload(self, upload, *, round_, client):
        if client != self.victim:
            return dict(upload)
        if self.kind == "nan":
            return {k: torch.full_like(v, float("nan")) for k, v in upload.items()}
        if self.kind == "inf":
            first = next(iter(upload))
            return {k: v.clone().fill_(float("inf")) if k == first else v.clone() for k, v in upload.items()}
        return {k: v * 1e6 for k, v in upload.items()}  # "huge": finite, a million times too large


def _run(poison=None, rounds=6, **kw):
    spec = tiny_spec(rounds=rounds, uplink_clip=None, uplink_noise=0.0, downlink_noise=0.0, **kw)
    local = spec.local.__class__(**{**spec.local.__dict__, "epochs": 3, "lr": 5e-3})
    spec = spec.__class__(**{**spec.__dict__, "local": local})
    return Simulator(spec=spec, data=tiny_data(), model_factory=tiny_model, hooks=Hooks(upload=poison)).run()


@pytest.fixture(scope="module")
def clean():
    return _run()


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_a_client_poisoned_every_round_is_rejected_and_the_federation_still_learns(clean, kind, caplog):
    with caplog.at_level(logging.WARNING, logger="fedsafe.federation.protocol"):
        poisoned = _run(Poison(1, kind))
    rounds = poisoned.metrics[:-1]
    assert all([r["client"] for r in row["rejected_uploads"]] == [1] for row in rounds)
    assert all("non-finite" in row["rejected_uploads"][0]["reason"] for row in rounds)
    assert sum("rejected the upload of client 1" in m for m in caplog.messages) == len(rounds)
    assert all(torch.isfinite(v).all() for v in poisoned.global_state.values())
    acc_clean, acc_poisoned = clean.metrics[-2]["global_acc"], poisoned.metrics[-2]["global_acc"]
    assert acc_clean >= 0.8, "the clean tiny federation should learn (else the comparison says nothing)"
    assert abs(acc_poisoned - acc_clean) <= 0.1  # the same accuracy band, from two clients instead of three


def test_without_screening_one_nan_client_would_make_the_model_nan():
    """What the screening prevents: FedAvg of one NaN upload is NaN everywhere."""
    from fedsafe.federation.aggregators import aggregate_with

    good = tiny_model().state_dict()
    bad = {k: torch.full_like(v, float("nan")) for k, v in good.items()}
    avg, _ = aggregate_with("fedavg", [good, bad], [1.0, 1.0])
    assert all(torch.isnan(v).all() for v in avg.values() if v.is_floating_point())


def test_a_huge_update_is_flagged_clipped_or_rejected_as_configured(clean, caplog):
    with caplog.at_level(logging.WARNING, logger="fedsafe.federation.protocol"), \
            pytest.raises(ValueError, match=r"^round 1: the aggregate of clients 0, 1, 2 exploded: .*; cause: client "
                                            r"2's update norm .* \(.* x the median, flagged: norm .* > 10 x median"):
        _run(Poison(2, "huge"), rounds=1, norm_factor=10.0, norm_action="flag")  # flagged, averaged: it explodes
    assert "round 1: flagged the upload of client 2" in caplog.text
    rejected = _run(Poison(2, "huge"), rounds=2, norm_factor=10.0, norm_action="reject")
    assert [r["client"] for r in rejected.metrics[0]["rejected_uploads"]] == [2]
    clipped = _run(Poison(2, "huge"), rounds=2, norm_factor=10.0, norm_action="clip")
    assert global_norm(clipped.global_state) < 10 * global_norm(clean.global_state)


def test_a_round_where_every_upload_is_non_finite_is_an_error():
    spec = tiny_spec(rounds=1)
    data = tiny_data()
    model = tiny_model()
    updates = [client_update(model, model.state_dict(), train=data.client_train[i], test=data.client_test[i],
                             spec=spec, round_=1, client=i, client_state={}, hooks=Hooks(upload=Poison(i, "nan")))
               for i in range(3)]
    with pytest.raises(ValueError, match=r"^round 1: all 3 uploads are non-finite: a round cannot aggregate nothing "
                                         r"\(clients 0, 1, 2\)"):
        server_aggregate([u.upload for u in updates], sizes=[1, 1, 1], spec=spec, round_=1, server_hook=None, row={})


@pytest.mark.parametrize("rule", ["median", "trimmed-mean"])
def test_robust_aggregators_run_in_the_federation(rule):
    r = _run(Poison(0, "huge"), rounds=2, aggregator=rule, trim_fraction=0.34)
    assert all(torch.isfinite(v).all() for v in r.global_state.values())
    assert global_norm(r.global_state) < 1e3
