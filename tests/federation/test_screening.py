"""Upload screening: non-finite uploads rejected and named, outlying norms flagged / clipped / rejected."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch

from fedsafe.federation.screening import screen_uploads
from fedsafe.federation.state import clip_, clone, fedavg, global_norm


def honest(n: int = 4, seed: int = 0) -> tuple[OrderedDict[str, torch.Tensor], list[OrderedDict[str, torch.Tensor]]]:
    """A reference (the global model) and n uploads = reference + a small update of norm ~ 0.1-0.2."""
    g = torch.Generator().manual_seed(seed)
    ref = OrderedDict(a=torch.randn(3, 4, generator=g), b=torch.randn(5, generator=g))
    ups = [OrderedDict((k, v + 0.03 * torch.randn(v.shape, generator=g)) for k, v in ref.items()) for _ in range(n)]
    return ref, ups


def update_norm(state, ref) -> float:
    return global_norm({k: state[k].double() - ref[k].double() for k in state})


# --- non-finite uploads -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_upload_is_rejected_and_named(bad):
    ref, ups = honest()
    poisoned = clone(ups[2])
    poisoned["b"][1] = bad
    poisoned["b"][3] = bad
    ups[2] = poisoned

    s = screen_uploads(ups, reference=ref, norm_factor=None)

    assert s.accepted == (0, 1, 3)
    assert [r["client"] for r in s.rejected] == [2] and s.flagged == ()
    kind = "2 NaN, 0 Inf" if math.isnan(bad) else "0 NaN, 2 Inf"
    assert s.rejected[0]["reason"] == f"non-finite: 2 entries NaN/Inf ({kind}), first in 'b'"
    assert math.isnan(s.norms[2]) and all(math.isfinite(s.norms[i]) for i in s.accepted)
    # the round aggregates the others, re-weighted: a finite model
    agg = fedavg([s.uploads[i] for i in s.accepted], [10.0, 20.0, 40.0])
    assert all(torch.isfinite(v).all() for v in agg.values())


def test_the_median_is_over_the_finite_uploads_only():
    ref, ups = honest(3)
    bad = clone(ups[0])
    bad["a"][0, 0] = math.nan

    s = screen_uploads([*ups, bad], reference=ref, norm_factor=3.0)

    assert s.median_norm == sorted(update_norm(u, ref) for u in ups)[1]
    assert s.accepted == (0, 1, 2)


def test_all_non_finite_is_an_error_a_round_cannot_aggregate_nothing():
    ref, ups = honest(2)
    ups = [OrderedDict((k, torch.full_like(v, math.nan)) for k, v in u.items()) for u in ups]

    with pytest.raises(ValueError, match="cannot aggregate nothing"):
        screen_uploads(ups, reference=ref, norm_factor=None)


def test_nan_passes_clip_unchanged_and_inf_becomes_nan_so_screening_must_come_first():
    # Why screening runs before uplink clipping: clip_ computes max(1, NaN / C) = 1 and leaves a NaN upload as it
    # is; an Inf entry makes the norm inf, the scale 0, and Inf * 0 = NaN.
    nan_state = OrderedDict(w=torch.tensor([1.0, math.nan, 3.0]))
    inf_state = OrderedDict(w=torch.tensor([1.0, math.inf, 3.0]))

    nan_scale = clip_(nan_state, 1.0)
    inf_scale = clip_(inf_state, 1.0)

    assert nan_scale == 1.0
    assert nan_state["w"][0] == 1.0 and math.isnan(nan_state["w"][1]) and nan_state["w"][2] == 3.0
    assert inf_scale == 0.0 and math.isnan(inf_state["w"][1]) and inf_state["w"][0] == 0.0


# --- outlying norms ---------------------------------------------------------------------------------------------

def _with_huge_update(factor: float = 1e6):
    ref, ups = honest()
    ups[1] = OrderedDict((k, ref[k] + factor * (v - ref[k])) for k, v in ups[1].items())
    return ref, ups


def test_a_huge_update_is_flagged_but_kept_with_action_flag():
    ref, ups = _with_huge_update()

    s = screen_uploads(ups, reference=ref, norm_factor=10.0, action="flag")

    assert s.accepted == (0, 1, 2, 3) and s.rejected == ()
    assert [f["client"] for f in s.flagged] == [1]
    assert s.flagged[0]["reason"].startswith(f"norm {s.norms[1]:.6g} > 10 x median norm {s.median_norm:.6g}")
    assert s.uploads[1] is ups[1]


def test_a_huge_update_is_clipped_to_factor_times_the_median():
    ref, ups = _with_huge_update()

    s = screen_uploads(ups, reference=ref, norm_factor=10.0, action="clip")

    assert s.accepted == (0, 1, 2, 3) and [f["client"] for f in s.flagged] == [1]
    assert "clipped to" in s.flagged[0]["reason"]
    assert s.bound == pytest.approx(10.0 * s.median_norm)
    assert update_norm(s.uploads[1], ref) == pytest.approx(s.bound, rel=1e-6)  # float32 entries
    # same direction: the clipped update is a positive multiple of the original update
    d_new = torch.cat([(s.uploads[1][k] - ref[k]).double().flatten() for k in ref])
    d_old = torch.cat([(ups[1][k] - ref[k]).double().flatten() for k in ref])
    cos = float(d_new @ d_old / (d_new.norm() * d_old.norm()))
    assert cos == pytest.approx(1.0, abs=1e-6)
    assert all(s.uploads[1][k].dtype == ups[1][k].dtype for k in ref)


def test_a_huge_update_is_rejected_with_action_reject():
    ref, ups = _with_huge_update()

    s = screen_uploads(ups, reference=ref, norm_factor=10.0, action="reject")

    assert s.accepted == (0, 2, 3) and s.flagged == ()
    assert [r["client"] for r in s.rejected] == [1] and s.rejected[0]["reason"].startswith("norm ")


@pytest.mark.parametrize("action", ["flag", "clip", "reject"])
def test_honest_uploads_are_untouched(action):
    ref, ups = honest(5, seed=3)
    before = [clone(u) for u in ups]

    s = screen_uploads(ups, reference=ref, norm_factor=3.0, action=action)

    assert s.accepted == (0, 1, 2, 3, 4) and s.rejected == () and s.flagged == ()
    assert all(out is up for out, up in zip(s.uploads, ups, strict=True))
    for up, b in zip(ups, before, strict=True):
        assert all(torch.equal(up[k], b[k]) for k in up)


def test_the_norm_is_of_the_update_when_a_reference_is_given():
    # A large model with small updates: measured against the reference nothing is flagged, but the upload
    # whose *update* is 50 x the others' is; without a reference, norms of the whole states are compared.
    ref, ups = honest(3, seed=5)
    ups[0] = OrderedDict((k, ref[k] + 50 * (v - ref[k])) for k, v in ups[0].items())

    with_ref = screen_uploads(ups, reference=ref, norm_factor=10.0)
    without = screen_uploads(ups, reference=None, norm_factor=10.0)

    assert [f["client"] for f in with_ref.flagged] == [0]
    assert without.flagged == ()
    assert without.norms == pytest.approx([global_norm(u) for u in ups])


def test_one_huge_upload_of_two_is_caught_by_the_lower_median():
    ref, ups = honest(2)
    ups[1] = OrderedDict((k, ref[k] + 1e6 * (v - ref[k])) for k, v in ups[1].items())

    s = screen_uploads(ups, reference=ref, norm_factor=10.0, action="reject")

    assert s.accepted == (0,)


def test_without_a_norm_factor_a_huge_finite_upload_passes():
    ref, ups = _with_huge_update()

    s = screen_uploads(ups, reference=ref, norm_factor=None, action="reject")

    assert s.accepted == (0, 1, 2, 3) and s.flagged == () and s.bound is None


def test_screening_is_deterministic():
    ref, ups = _with_huge_update()
    ups[3] = OrderedDict((k, torch.full_like(v, math.nan)) for k, v in ups[3].items())

    first = screen_uploads(ups, reference=ref, norm_factor=5.0, action="clip")
    second = screen_uploads(ups, reference=ref, norm_factor=5.0, action="clip")

    assert first.accepted == second.accepted == (0, 1, 2)
    assert first.rejected == second.rejected and first.flagged == second.flagged
    assert first.norms[:3] == second.norms[:3]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first.uploads[:3], second.uploads[:3], strict=True)
               for k in ref)


# --- bad input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(action="drop"), "action must be one of"),
    (dict(norm_factor=0.5), "norm_factor"),
    (dict(norm_factor=math.inf), "norm_factor"),
    (dict(reference=OrderedDict(a=torch.zeros(3, 4))), "keys and shapes"),
    (dict(reference=OrderedDict(a=torch.zeros(3, 4), b=torch.full((5,), math.nan))), "reference state is not"),
])
def test_bad_arguments_raise_value_errors(kwargs, message):
    _, ups = honest(2)

    with pytest.raises(ValueError, match=message):
        screen_uploads(ups, **{"norm_factor": 2.0, **kwargs})


def test_no_uploads_is_an_error():
    with pytest.raises(ValueError, match="at least one upload"):
        screen_uploads([], norm_factor=None)
