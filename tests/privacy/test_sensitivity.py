"""Accounting under both sensitivities (NbAFL's 2C/m and the unconditional 2C) and the "DP" label (design §4)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsafe.privacy import (
    DP_MAX_EPSILON,
    account_run,
    account_run_both,
    dp_label,
    gaussian_epsilon,
    is_dp,
    noise_for_target,
    uplink_sensitivity_for,
)

# The papers' hand-set noise: C = 59, s_U = 0.001, smallest client m = 230, T = 20 rounds, 3 clients.
PAPER = dict(sigma_uplink=0.001, sigma_downlink=0.0, clip=59.0, min_local_size=230, rounds=20, num_clients=3,
             delta=1e-5)


def test_the_papers_setting_accounts_to_about_3e6_under_nbafl_and_more_unconditionally():
    both = account_run_both(**PAPER)
    nbafl, unconditional = both["nbafl"], both["unconditional"]

    # z = 0.001 / (2 * 59 / 230) = 0.0019492; RDP over 20 rounds
    assert nbafl.uplink.noise_multiplier == pytest.approx(0.001 * 230 / 118, rel=1e-12)
    assert nbafl.epsilon_uplink == pytest.approx(2.895461494703704e6, rel=1e-9)
    assert nbafl.epsilon == nbafl.epsilon_uplink
    # unconditional: z = 0.001 / 118, 230 times less noise per unit of sensitivity: epsilon ~ 230^2 times larger
    assert unconditional.uplink.noise_multiplier == pytest.approx(0.001 / 118, rel=1e-12)
    assert unconditional.epsilon_uplink == pytest.approx(1.531640001117783e11, rel=1e-9)
    assert unconditional.epsilon_uplink > nbafl.epsilon_uplink
    assert unconditional.epsilon_downlink > nbafl.epsilon_downlink
    assert nbafl.dp is None and unconditional.dp is None


def test_each_report_names_its_sensitivity_and_neighbouring_relation():
    both = account_run_both(**PAPER)

    assert [r.sensitivity for r in both.values()] == ["nbafl", "unconditional"]
    assert "2C/m" in both["nbafl"].neighbouring and "one sample" in both["nbafl"].neighbouring
    assert "unconditional sensitivity 2C" in both["unconditional"].neighbouring
    assert "whole data set" in both["unconditional"].neighbouring
    data = json.loads(json.dumps(both["unconditional"].to_dict(), allow_nan=False))
    assert data["sensitivity"] == "unconditional" and data["dp"] is None


@pytest.mark.parametrize("sigma_downlink", [0.0, 0.3])
def test_unconditional_is_nbafl_with_a_local_data_set_of_one(sigma_downlink):
    run = {**PAPER, "sigma_uplink": 5.0, "sigma_downlink": sigma_downlink, "weights": [300, 500, 230]}

    unconditional = account_run(**run, sensitivity="unconditional")
    m_of_one = account_run(**{**run, "min_local_size": 1})

    assert unconditional.uplink == m_of_one.uplink
    assert unconditional.downlink == m_of_one.downlink
    assert unconditional.uplink.sensitivity == 2 * 59.0
    assert account_run(**run).uplink.sensitivity == pytest.approx(2 * 59.0 / 230)


def test_account_run_both_is_account_run_under_each_sensitivity():
    both = account_run_both(**PAPER, accountant="pld")

    assert both == {name: account_run(**PAPER, accountant="pld", sensitivity=name)
                    for name in ("nbafl", "unconditional")}
    with pytest.raises(ValueError, match="sensitivity"):
        account_run_both(**PAPER, sensitivity="nbafl")


def test_uplink_sensitivity_values_and_bad_names():
    assert uplink_sensitivity_for("nbafl", clip=59.0, min_local_size=230) == pytest.approx(118 / 230)
    assert uplink_sensitivity_for("unconditional", clip=59.0, min_local_size=230) == 118.0
    for call in (lambda: uplink_sensitivity_for("per-sample", clip=1.0, min_local_size=1),
                 lambda: account_run(**PAPER, sensitivity="2C"),
                 lambda: noise_for_target(target_epsilon=1.0, delta=1e-5, clip=1.0, min_local_size=1, rounds=1,
                                          num_clients=1, sensitivity="")):
        with pytest.raises(ValueError, match="sensitivity must be one of nbafl, unconditional"):
            call()


# --- the "DP" label ---------------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(epsilon=st.floats(min_value=DP_MAX_EPSILON, allow_nan=False, exclude_min=True) | st.just(math.inf),
       delta=st.floats(1e-12, 1e-5), sensitivity=st.sampled_from(["nbafl", "unconditional"]))
def test_dp_is_never_said_of_epsilon_above_10(epsilon, delta, sensitivity):
    assert dp_label(epsilon, delta, sensitivity=sensitivity) is None
    assert not is_dp(epsilon, delta)


@settings(max_examples=100, deadline=None)
@given(epsilon=st.floats(0.0, DP_MAX_EPSILON), delta=st.floats(1e-12, 1e-5),
       sensitivity=st.sampled_from(["nbafl", "unconditional"]))
def test_dp_is_said_of_epsilon_at_most_10_at_delta_at_most_1e5_naming_the_assumption(epsilon, delta, sensitivity):
    label = dp_label(epsilon, delta, sensitivity=sensitivity)

    assert is_dp(epsilon, delta)
    assert label is not None and label.startswith(f"DP (epsilon {epsilon:.3g} at delta {delta:g}, ")
    assert label.endswith("NbAFL sensitivity 2C/m)" if sensitivity == "nbafl" else "unconditional sensitivity 2C)")


def test_the_dp_rule_at_its_edges():
    assert dp_label(10.0, 1e-5, sensitivity="nbafl") == "DP (epsilon 10 at delta 1e-05, NbAFL sensitivity 2C/m)"
    assert dp_label(math.nextafter(10.0, math.inf), 1e-5, sensitivity="nbafl") is None
    assert dp_label(1.0, 1.0001e-5, sensitivity="unconditional") is None  # a weaker delta than the rule's
    assert dp_label(1.0, 1e-3, sensitivity="unconditional") is None
    assert is_dp(0.0, 1e-5)


@pytest.mark.parametrize(("epsilon", "delta", "sensitivity", "message"), [
    (math.nan, 1e-5, "nbafl", "epsilon"), (-1.0, 1e-5, "nbafl", "epsilon"), (True, 1e-5, "nbafl", "epsilon"),
    (1.0, 0.0, "nbafl", "delta"), (1.0, 1.0, "nbafl", "delta"), (1.0, 1e-5, "rdp", "sensitivity"),
])
def test_bad_label_arguments_raise_value_errors(epsilon, delta, sensitivity, message):
    with pytest.raises(ValueError, match=message):
        dp_label(epsilon, delta, sensitivity=sensitivity)


# --- the inverse under either sensitivity -----------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(target=st.floats(0.5, 10.0), rounds=st.integers(1, 60), clients=st.integers(1, 5),
       sigma_downlink=st.sampled_from([0.0, 0.01, 1.0]), sensitivity=st.sampled_from(["nbafl", "unconditional"]))
def test_noise_for_target_meets_the_target_under_its_sensitivity(target, rounds, clients, sigma_downlink,
                                                                 sensitivity):
    run = dict(delta=1e-5, clip=59.0, min_local_size=230, rounds=rounds, num_clients=clients)
    need = noise_for_target(target_epsilon=target, sensitivity=sensitivity, **run)

    report = account_run(sigma_uplink=need.sigma_uplink, sigma_downlink=sigma_downlink, sensitivity=sensitivity,
                         **run)

    assert need.sensitivity == sensitivity and need.sigma_downlink == pytest.approx(0.0, abs=1e-9 * need.sigma_uplink)
    assert report.epsilon <= target
    assert report.epsilon_uplink == pytest.approx(target, rel=1e-4)  # and not much more noise than needed
    assert report.dp is not None and report.dp.endswith(
        "NbAFL sensitivity 2C/m)" if sensitivity == "nbafl" else "unconditional sensitivity 2C)")


def test_unconditional_noise_is_m_times_the_nbafl_noise_and_the_dp_arm_is_labelled():
    run = dict(target_epsilon=10.0, delta=1e-5, clip=59.0, min_local_size=230, rounds=20, num_clients=3)
    nbafl = noise_for_target(**run)
    unconditional = noise_for_target(**run, sensitivity="unconditional")

    arm = account_run_both(sigma_uplink=unconditional.sigma_uplink, sigma_downlink=0.0,
                           **{k: v for k, v in run.items() if k != "target_epsilon"})

    assert unconditional.noise_multiplier == nbafl.noise_multiplier
    assert unconditional.sigma_uplink == pytest.approx(230 * nbafl.sigma_uplink, rel=1e-12)
    assert unconditional.sigma_uplink > 0.001 * 1e5  # five orders of magnitude above the papers' s_U
    assert arm["unconditional"].epsilon <= 10.0 and arm["unconditional"].dp is not None
    assert arm["nbafl"].epsilon < arm["unconditional"].epsilon  # the same noise, the weaker assumption
    assert gaussian_epsilon(unconditional.noise_multiplier, steps=20, delta=1e-5) <= 10.0
