"""NbAFL calibration (Wei et al. 2020) against hand-computed values, and the ``fedsafe privacy calibrate`` CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from fedsafe.privacy import (
    calibrate_nbafl,
    downlink_sigma,
    gaussian_constant,
    uplink_sensitivity,
    uplink_sigma,
)

# epsilon = 1, delta = 1e-5: c = sqrt(2 ln(1.25 / 1e-5)) = sqrt(2 ln 125000) = sqrt(23.472138...)
C_1E5 = 4.844805262605389
BASE = dict(epsilon=1.0, delta=1e-5, clip=10.0, min_local_size=100, exposures=50, rounds=50, num_clients=3)


def test_gaussian_constant_matches_hand_value() -> None:
    assert gaussian_constant(1e-5) == pytest.approx(C_1E5, abs=1e-12)
    ln_125000 = 11.736069016284437
    assert math.sqrt(2 * ln_125000) == pytest.approx(C_1E5, abs=1e-12)


def test_every_client_every_round_gives_uplink_noise_and_zero_downlink() -> None:
    # dS_U = 2 * 10 / 100 = 0.2; s_U = c * 50 * 0.2 / 1 = 10 c; T = 50 <= 50 sqrt(3) so s_D = 0.
    cal = calibrate_nbafl(**BASE)

    assert cal.c == pytest.approx(C_1E5, abs=1e-9)
    assert cal.sensitivity_uplink == pytest.approx(0.2, abs=1e-12)
    assert cal.sigma_uplink == pytest.approx(48.44805262605389, abs=1e-9)
    assert cal.sigma_downlink == 0.0
    assert "s_D = 0" in cal.note and "L = T" in cal.note and "0.01 to 0.03" in cal.note


def test_many_rounds_give_nonzero_downlink_noise() -> None:
    # T = 200 > L sqrt(N) = 86.6: s_D = 2 c 10 sqrt(200^2 - 50^2 * 3) / (100 * 3 * 1)
    #                                 = c * 20 * sqrt(32500) / 300 = c * 12.01850425154663
    cal = calibrate_nbafl(**{**BASE, "rounds": 200})

    assert cal.sigma_downlink == pytest.approx(C_1E5 * 12.01850425154663, abs=1e-9)
    assert cal.sigma_downlink == pytest.approx(58.227312646538365, abs=1e-9)
    assert cal.sigma_uplink == pytest.approx(48.44805262605389, abs=1e-9)  # s_U does not depend on T
    assert "s_D > 0" in cal.note and "T = 200 > L*sqrt(N) = 86.6" in cal.note


def test_downlink_threshold_is_exact_at_t_equal_l_sqrt_n() -> None:
    # L = 2, N = 4: L sqrt(N) = 4 exactly. T = 4 is not above it; T = 5 gives sqrt(25 - 16) = 3.
    common = dict(epsilon=0.5, delta=1e-5, clip=5.0, min_local_size=10, exposures=2, num_clients=4)

    assert downlink_sigma(rounds=4, **common) == 0.0
    # 2 c 5 * 3 / (10 * 4 * 0.5) = 1.5 c
    assert downlink_sigma(rounds=5, **common) == pytest.approx(1.5 * C_1E5, abs=1e-12)


def test_uplink_noise_scales_as_the_formula_says() -> None:
    base = uplink_sigma(epsilon=1.0, delta=1e-5, clip=1.0, min_local_size=10, exposures=1)

    assert base == pytest.approx(C_1E5 * 0.2, abs=1e-12)
    assert uplink_sigma(epsilon=0.5, delta=1e-5, clip=1.0, min_local_size=10, exposures=1) == pytest.approx(2 * base)
    assert uplink_sigma(epsilon=1.0, delta=1e-5, clip=3.0, min_local_size=10, exposures=1) == pytest.approx(3 * base)
    assert uplink_sigma(epsilon=1.0, delta=1e-5, clip=1.0, min_local_size=40, exposures=1) == pytest.approx(base / 4)
    assert uplink_sigma(epsilon=1.0, delta=1e-5, clip=1.0, min_local_size=10, exposures=7) == pytest.approx(7 * base)
    assert uplink_sensitivity(clip=3.0, min_local_size=4) == 1.5


def test_epsilon_of_one_or_more_is_flagged() -> None:
    assert "only proved for epsilon < 1" in calibrate_nbafl(**BASE).note
    assert "only proved" not in calibrate_nbafl(**{**BASE, "epsilon": 0.5}).note


def test_calibration_is_frozen_and_json_safe() -> None:
    cal = calibrate_nbafl(**BASE)

    with pytest.raises(dataclasses.FrozenInstanceError):
        cal.sigma_uplink = 0.0  # type: ignore[misc]
    data = json.loads(json.dumps(cal.to_dict(), allow_nan=False))
    assert data["sigma_uplink"] == cal.sigma_uplink and data["rounds"] == 50


@pytest.mark.parametrize(("name", "value"), [
    ("epsilon", 0.0), ("epsilon", -1.0), ("epsilon", math.inf), ("epsilon", math.nan),
    ("delta", 0.0), ("delta", 1.0), ("delta", 1.5),
    ("clip", 0.0), ("clip", -2.0),
    ("min_local_size", 0), ("min_local_size", 2.5),
    ("exposures", 0), ("rounds", 0), ("num_clients", 0), ("num_clients", True),
])
def test_bad_arguments_raise_a_value_error_naming_them(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        calibrate_nbafl(**{**BASE, name: value})


def test_more_exposures_than_rounds_is_rejected() -> None:
    with pytest.raises(ValueError, match="exposures"):
        calibrate_nbafl(**{**BASE, "exposures": 51})


# --- fedsafe privacy calibrate ---------------------------------------------------------------------------------

@pytest.fixture
def cli_app():
    from fedsafe.cli.privacy import app

    return app


def test_cli_calibrate_prints_nbafl_noise_and_what_it_gives(cli_app) -> None:
    from typer.testing import CliRunner

    from fedsafe.privacy import account_run, gaussian_noise_multiplier

    result = CliRunner().invoke(cli_app, ["calibrate", "--epsilon", "1", "--delta", "1e-5", "--clip", "10",
                                          "--m", "100", "--L", "50", "--T", "50", "--N", "3"])

    assert result.exit_code == 0, result.output
    assert "48.448" in result.output  # s_U = 10 c
    assert "4.8448" in result.output  # c
    report = account_run(sigma_uplink=10 * C_1E5, sigma_downlink=0.0, clip=10.0, min_local_size=100, rounds=50,
                         num_clients=3, delta=1e-5)
    unconditional = account_run(sigma_uplink=10 * C_1E5, sigma_downlink=0.0, clip=10.0, min_local_size=100,
                                rounds=50, num_clients=3, delta=1e-5, sensitivity="unconditional")
    for eps in (report.uplink.epsilon_rdp, report.uplink.epsilon_pld, report.epsilon_downlink,
                unconditional.uplink.epsilon_rdp, unconditional.uplink.epsilon_pld, unconditional.epsilon_downlink):
        assert f"{eps:.5g}" in result.output
    assert "NbAFL sensitivity 2C/m" in result.output and "unconditional sensitivity 2C" in result.output
    z_rdp = gaussian_noise_multiplier(1.0, steps=50, delta=1e-5, rtol=1e-4)
    assert f"{z_rdp * 0.2:.5g}" in result.output  # the s_U the RDP accountant needs for epsilon = 1 (2C/m)
    assert f"{z_rdp * 20:.5g}" in result.output  # and under the unconditional 2C


def test_cli_calibrate_json_has_both_directions(cli_app) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli_app, ["calibrate", "--epsilon", "0.5", "--clip", "1", "--m", "50",
                                          "--T", "20", "--N", "2", "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["nbafl"]["sigma_uplink"] == pytest.approx(gaussian_constant(1e-5) * 20 * (2 / 50) / 0.5)
    nbafl, unconditional = data["accountant"]["nbafl"], data["accountant"]["unconditional"]
    assert nbafl["noise"] == unconditional["noise"] == "calibrated"
    assert nbafl["epsilon_uplink"] < 0.5  # NbAFL's linear-in-L noise is conservative (under its own sensitivity)
    assert unconditional["epsilon_uplink"] > nbafl["epsilon_uplink"]  # 2C is m = 50 times 2C/m
    assert nbafl["sensitivity"] == "nbafl" and "2C/m" in nbafl["neighbouring"]
    assert unconditional["sensitivity"] == "unconditional" and "2C " in unconditional["neighbouring"]
    assert nbafl["dp"].startswith("DP (epsilon") and nbafl["dp"].endswith("NbAFL sensitivity 2C/m)")
    assert unconditional["dp"].endswith("unconditional sensitivity 2C)")  # epsilon ~ 5.6 <= 10 here too
    for sensitivity in ("nbafl", "unconditional"):
        assert [need["accountant"] for need in data["needed"][sensitivity]] == ["rdp", "pld"]
        assert all(need["sensitivity"] == sensitivity for need in data["needed"][sensitivity])
    assert data["needed"]["unconditional"][0]["sigma_uplink"] == pytest.approx(
        50 * data["needed"]["nbafl"][0]["sigma_uplink"])


def test_cli_calibrate_rejects_bad_input_with_one_line(cli_app) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli_app, ["calibrate", "--epsilon", "0", "--clip", "1", "--m", "50",
                                          "--T", "20", "--N", "2"])

    assert result.exit_code == 1
    assert "epsilon must be a finite number > 0" in result.output
