"""The privacy accountant against published values, independent re-computations and its own inverse."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize
from scipy.stats import norm

from fedsafe.privacy import (
    GaussianAccountant,
    account_run,
    epsilon_from_history,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    noise_for_target,
)
from fedsafe.privacy.gaussian import RDP_ORDERS

RUN = dict(sigma_uplink=1.0, sigma_downlink=0.0, clip=1.0, min_local_size=20, rounds=10, num_clients=3, delta=1e-5)


def balle_wang_epsilon(sigma: float, delta: float) -> float:
    """Exact epsilon of one Gaussian release, sensitivity 1, std sigma (Balle & Wang 2018, Theorem 8)."""

    def delta_of(eps: float) -> float:
        return norm.cdf(1 / (2 * sigma) - eps * sigma) - math.exp(eps) * norm.cdf(-1 / (2 * sigma) - eps * sigma)

    return optimize.brentq(lambda eps: delta_of(eps) - delta, 0.0, 500.0, xtol=1e-12)


# --- single and composed Gaussian mechanisms ------------------------------------------------------------------

@pytest.mark.parametrize("epsilon", [0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-8])
@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_classic_gaussian_mechanism_noise_gives_at_most_its_epsilon(epsilon, delta, accountant) -> None:
    # Dwork & Roth, Thm A.1: sigma = sqrt(2 ln(1.25/delta)) / epsilon gives (epsilon, delta)-DP for epsilon < 1.
    sigma = math.sqrt(2 * math.log(1.25 / delta)) / epsilon

    assert gaussian_epsilon(sigma, steps=1, delta=delta, accountant=accountant) <= epsilon


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 5.0, 20.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-3])
def test_pld_matches_the_analytic_gaussian_mechanism(sigma, delta) -> None:
    exact = balle_wang_epsilon(sigma, delta)

    eps_pld = gaussian_epsilon(sigma, steps=1, delta=delta, accountant="pld")
    eps_rdp = gaussian_epsilon(sigma, steps=1, delta=delta, accountant="rdp")

    assert eps_pld == pytest.approx(exact, rel=1e-3)
    assert exact - 1e-9 <= eps_pld <= eps_rdp  # both are upper bounds; PLD is the tighter


@pytest.mark.parametrize(("z", "steps"), [(5.0, 50), (1.0, 1), (0.8, 200), (30.0, 1000)])
def test_rdp_matches_an_independent_gaussian_rdp_composition(z, steps) -> None:
    # Gaussian RDP is alpha / (2 z^2) a release (Mironov 2017), composed by adding; converted with
    # eps = rdp + log(1 - 1/alpha) - log(delta alpha) / (alpha - 1) (Canonne, Kamath & Steinke 2020),
    # minimised over the same orders.
    delta = 1e-5
    alpha = np.asarray([a for a in RDP_ORDERS if a > 1.01])
    rdp = steps * alpha / (2 * z**2)
    tight = np.min(rdp + np.log1p(-1 / alpha) - np.log(delta * alpha) / (alpha - 1))
    classic = np.min(rdp - np.log(delta) / (alpha - 1))  # Mironov, Prop. 3: looser

    eps = gaussian_epsilon(z, steps=steps, delta=delta, accountant="rdp")

    assert eps == pytest.approx(tight, rel=1e-12)
    assert eps <= classic


def test_composition_of_different_gaussians_is_one_gaussian() -> None:
    # T_1 releases at z_1 and T_2 at z_2 are exactly one release at 1 / sqrt(T_1 / z_1^2 + T_2 / z_2^2).
    history = [(2.0, 10), (4.0, 20)]
    z_eff = 1 / math.sqrt(10 / 2.0**2 + 20 / 4.0**2)

    eps = epsilon_from_history(history, delta=1e-5, accountant="pld")

    assert eps == pytest.approx(balle_wang_epsilon(z_eff, 1e-5), rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(z=st.floats(0.1, 1000.0), ratio=st.floats(1.01, 10.0), steps=st.integers(1, 1000))
def test_rdp_epsilon_strictly_decreases_as_noise_grows(z, ratio, steps) -> None:
    eps = gaussian_epsilon(z, steps=steps, delta=1e-5)
    eps_more_noise = gaussian_epsilon(z * ratio, steps=steps, delta=1e-5)

    assert eps_more_noise < eps


@settings(max_examples=15, deadline=None)
@given(z=st.floats(0.3, 300.0), ratio=st.floats(1.01, 10.0), steps=st.integers(1, 200))
def test_pld_epsilon_strictly_decreases_as_noise_grows(z, ratio, steps) -> None:
    eps = gaussian_epsilon(z, steps=steps, delta=1e-5, accountant="pld")
    eps_more_noise = gaussian_epsilon(z * ratio, steps=steps, delta=1e-5, accountant="pld")

    assert eps_more_noise < eps


def test_no_noise_is_infinite_and_a_data_independent_release_is_free() -> None:
    assert epsilon_from_history([(0.0, 3)], delta=1e-5) == math.inf
    assert epsilon_from_history([(math.inf, 3)], delta=1e-5, accountant="pld") == 0.0
    assert epsilon_from_history([], delta=1e-5) == 0.0


# --- the inverse ----------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(target=st.floats(0.05, 20.0), steps=st.integers(1, 500))
def test_noise_multiplier_reaches_target_and_no_less_noise_does(target, steps) -> None:
    rtol = 1e-6
    z = gaussian_noise_multiplier(target, steps=steps, delta=1e-5, rtol=rtol)

    assert gaussian_epsilon(z, steps=steps, delta=1e-5) <= target
    assert gaussian_epsilon(z / (1 + rtol), steps=steps, delta=1e-5) > target


def test_pld_inverse_round_trips_and_needs_less_noise_than_rdp() -> None:
    z_pld = gaussian_noise_multiplier(1.0, steps=50, delta=1e-5, accountant="pld", rtol=1e-5)
    z_rdp = gaussian_noise_multiplier(1.0, steps=50, delta=1e-5, accountant="rdp", rtol=1e-5)

    assert gaussian_epsilon(z_pld, steps=50, delta=1e-5, accountant="pld") == pytest.approx(1.0, rel=1e-4)
    assert z_pld < z_rdp
    # and it is the analytic answer: one Gaussian of std z / sqrt(T)
    assert balle_wang_epsilon(z_pld / math.sqrt(50), 1e-5) == pytest.approx(1.0, rel=1e-3)


def test_noise_for_target_round_trips_through_account_run() -> None:
    need = noise_for_target(target_epsilon=2.0, delta=1e-5, clip=10.0, min_local_size=100, rounds=50,
                            num_clients=3)

    report = account_run(sigma_uplink=need.sigma_uplink, sigma_downlink=need.sigma_downlink, clip=10.0,
                         min_local_size=100, rounds=50, num_clients=3, delta=1e-5, calibrated=True)

    assert need.sigma_downlink == 0.0  # with uniform weights the other clients' uplink noise covers it
    assert need.uplink_meets_target
    assert report.epsilon_uplink <= 2.0
    assert report.epsilon_uplink == pytest.approx(2.0, rel=1e-5)
    assert report.epsilon_downlink < report.epsilon_uplink


def test_noise_for_target_solves_downlink_noise_on_top_of_a_hand_set_uplink() -> None:
    kwargs = dict(delta=1e-5, clip=20.0, min_local_size=300, rounds=100, num_clients=3, weights=[300, 500, 200])
    need = noise_for_target(target_epsilon=1.0, sigma_uplink=0.01, **kwargs)

    report = account_run(sigma_uplink=0.01, sigma_downlink=need.sigma_downlink, **kwargs)

    assert not need.uplink_meets_target and need.sigma_downlink > 0
    assert report.epsilon_downlink <= 1.0 + 1e-9
    assert report.epsilon_downlink == pytest.approx(1.0, rel=1e-4)
    assert report.epsilon_downlink_per_client.index(report.epsilon_downlink) == 1  # the heaviest client


# --- a run ----------------------------------------------------------------------------------------------------

def test_uplink_is_the_gaussian_with_sensitivity_2c_over_m() -> None:
    report = account_run(**RUN)

    z = 1.0 / (2 * 1.0 / 20)  # s_U / (2C/m) = 10
    assert report.uplink.noise_multiplier == pytest.approx(z)
    assert report.uplink.sensitivity == pytest.approx(0.1)
    assert report.epsilon_uplink == gaussian_epsilon(z, steps=10, delta=1e-5)
    assert report.uplink.epsilon_pld == gaussian_epsilon(z, steps=10, delta=1e-5, accountant="pld")
    assert report.accountant == "rdp" and report.noise == "hand-set"


def test_downlink_noise_excludes_the_observers_own_upload() -> None:
    report = account_run(**{**RUN, "sigma_downlink": 0.5})

    # uniform p = 1/3: the observer removes its own term, leaving s_U^2 (2/9) + s_D^2
    expected_sigma = math.sqrt(1.0 * 2 / 9 + 0.25)
    for ch in report.downlink:
        assert ch.sigma == pytest.approx(expected_sigma)
        assert ch.sensitivity == pytest.approx(0.1 / 3)
    assert report.epsilon_downlink == gaussian_epsilon(expected_sigma / (0.1 / 3), steps=10, delta=1e-5)


def test_two_clients_without_downlink_noise_leak_as_much_as_the_uplink() -> None:
    # client 2 subtracts its own upload from the average and sees p_1 (w_1 + n_1): the uplink mechanism, scaled.
    report = account_run(**{**RUN, "num_clients": 2})

    assert report.epsilon_downlink == pytest.approx(report.epsilon_uplink, rel=1e-12)


def test_heavier_clients_leak_more_on_the_downlink() -> None:
    report = account_run(**{**RUN, "weights": [300, 500, 200], "sigma_downlink": 0.1})

    assert report.weights == pytest.approx((0.3, 0.5, 0.2))
    eps = report.epsilon_downlink_per_client
    assert eps[1] > eps[0] > eps[2]
    assert report.epsilon_downlink == eps[1]
    # client 1 is watched by client 0 (weight 0.3), who knows its own upload: noise 0.5^2 + 0.2^2 of s_U^2
    assert report.downlink[1].sigma == pytest.approx(math.sqrt(0.25 + 0.04 + 0.01))


def test_no_clipping_or_no_noise_means_infinite_epsilon_with_a_reason() -> None:
    unclipped = account_run(**{**RUN, "clip": None})
    silent = account_run(**{**RUN, "sigma_uplink": 0.0})

    assert unclipped.epsilon_uplink == unclipped.epsilon_downlink == math.inf
    assert "no clipping" in unclipped.uplink.reason
    assert silent.epsilon_uplink == silent.epsilon_downlink == math.inf
    assert "no noise" in silent.uplink.reason


def test_a_single_client_has_no_downlink_adversary() -> None:
    report = account_run(**{**RUN, "num_clients": 1})

    assert report.epsilon_downlink == 0.0
    assert "single client" in report.downlink[0].reason


def test_pld_headline_and_json_safe_dict() -> None:
    report = account_run(**{**RUN, "clip": None, "accountant": "pld", "calibrated": True})
    finite = account_run(**{**RUN, "accountant": "pld"})

    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["epsilon_uplink"] == "inf" and data["epsilon"] == "inf"
    assert data["accountant"] == "pld" and data["noise"] == "calibrated"
    assert data["uplink"]["mechanism"].startswith("Gaussian")
    assert finite.epsilon_uplink == finite.uplink.epsilon_pld < finite.uplink.epsilon_rdp


def test_running_accountant_keeps_only_a_merged_history() -> None:
    acc = GaussianAccountant()
    for _ in range(5):
        acc.step(noise_multiplier=2.0)
    acc.step(noise_multiplier=4.0, steps=20)
    acc.step(noise_multiplier=2.0, steps=5)

    assert acc.history == [(2.0, 5), (4.0, 20), (2.0, 5)]
    assert acc.steps == 30
    assert acc.get_epsilon(1e-5) == epsilon_from_history([(2.0, 10), (4.0, 20)], delta=1e-5)


@pytest.mark.parametrize(("change", "name"), [
    ({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"),
    ({"sigma_uplink": -1.0}, "sigma_uplink"), ({"sigma_downlink": math.nan}, "sigma_downlink"),
    ({"clip": 0.0}, "clip"), ({"min_local_size": 0}, "min_local_size"),
    ({"rounds": 0}, "rounds"), ({"num_clients": 0}, "num_clients"),
    ({"weights": [1.0, 2.0]}, "weights"), ({"weights": [0, 0, 0]}, "weights"), ({"weights": [1, -1, 1]}, "weights"),
    ({"accountant": "moments"}, "accountant"),
])
def test_bad_run_arguments_raise_a_value_error_naming_them(change, name) -> None:
    with pytest.raises(ValueError, match=name):
        account_run(**{**RUN, **change})


def test_bad_accountant_arguments_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="noise_multiplier"):
        GaussianAccountant().step(noise_multiplier=-1.0)
    with pytest.raises(ValueError, match="steps"):
        GaussianAccountant().step(noise_multiplier=1.0, steps=0)
    with pytest.raises(ValueError, match="target_epsilon"):
        gaussian_noise_multiplier(0.0, steps=1, delta=1e-5)
    with pytest.raises(ValueError, match="clip"):
        noise_for_target(target_epsilon=1.0, delta=1e-5, clip=0.0, min_local_size=1, rounds=1, num_clients=1)


# --- fedsafe privacy account ----------------------------------------------------------------------------------

@pytest.fixture
def cli_app():
    from fedsafe.cli.privacy import app

    return app


def test_cli_account_prints_the_epsilon_of_each_channel(cli_app) -> None:
    from typer.testing import CliRunner

    args = ["account", "--sigma-up", "0.5", "--sigma-down", "0.02", "--clip", "1", "--m", "50", "--T", "30",
            "--N", "3", "--weights", "300,500,200", "--delta", "1e-5", "--target-epsilon", "3"]

    result = CliRunner().invoke(cli_app, args)

    assert result.exit_code == 0, result.output
    report = account_run(sigma_uplink=0.5, sigma_downlink=0.02, clip=1.0, min_local_size=50, rounds=30,
                         num_clients=3, weights=[300, 500, 200], delta=1e-5)
    unconditional = account_run(sigma_uplink=0.5, sigma_downlink=0.02, clip=1.0, min_local_size=50, rounds=30,
                                num_clients=3, weights=[300, 500, 200], delta=1e-5, sensitivity="unconditional")
    for ch in (report.uplink, *report.downlink, unconditional.uplink, *unconditional.downlink):
        assert f"{ch.epsilon_rdp:.5g}" in result.output
        assert f"{ch.epsilon_pld:.5g}" in result.output
    assert "downlink c2" in result.output and "noise hand-set" in result.output
    z = gaussian_noise_multiplier(3.0, steps=30, delta=1e-5, rtol=1e-4)
    assert f"{z:.5g}" in result.output


def test_cli_account_without_clipping_says_inf(cli_app) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli_app, ["account", "--sigma-up", "0.5", "--m", "50", "--T", "30", "--N", "3",
                                          "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for sensitivity in ("nbafl", "unconditional"):
        report = data["accountant"][sensitivity]
        assert report["epsilon_uplink"] == "inf" and "no clipping" in report["uplink"]["reason"]
        assert report["dp"] is None


def test_cli_account_rejects_bad_weights(cli_app) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli_app, ["account", "--sigma-up", "0.5", "--clip", "1", "--m", "50", "--T", "3",
                                          "--N", "3", "--weights", "1,2"])

    assert result.exit_code == 1
    assert "weights must have one entry per client" in result.output


def test_pld_falls_back_to_the_rdp_bound_where_dp_accounting_overflows():
    from fedsafe.privacy.gaussian import gaussian_epsilon

    rdp = gaussian_epsilon(5e-4, steps=20, delta=1e-5, accountant="rdp")
    pld = gaussian_epsilon(5e-4, steps=20, delta=1e-5, accountant="pld")
    assert math.isfinite(rdp) and rdp > 1e5
    assert pld <= rdp
