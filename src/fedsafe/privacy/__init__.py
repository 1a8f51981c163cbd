"""Differential privacy of a federated run: NbAFL calibration and a real accountant (design §4)."""

from .accountant import (
    DP_MAX_DELTA,
    DP_MAX_EPSILON,
    SENSITIVITIES,
    ChannelPrivacy,
    PrivacyReport,
    TargetNoise,
    account_run,
    account_run_both,
    dp_label,
    is_dp,
    noise_for_target,
    uplink_sensitivity_for,
)
from .gaussian import (
    ACCOUNTANTS,
    GaussianAccountant,
    epsilon_from_history,
    gaussian_epsilon,
    gaussian_noise_multiplier,
)
from .nbafl import (
    NbaflCalibration,
    calibrate_nbafl,
    downlink_sigma,
    gaussian_constant,
    uplink_sensitivity,
    uplink_sigma,
)

__all__ = [
    "ACCOUNTANTS",
    "DP_MAX_DELTA",
    "DP_MAX_EPSILON",
    "SENSITIVITIES",
    "ChannelPrivacy",
    "GaussianAccountant",
    "NbaflCalibration",
    "PrivacyReport",
    "TargetNoise",
    "account_run",
    "account_run_both",
    "calibrate_nbafl",
    "downlink_sigma",
    "dp_label",
    "epsilon_from_history",
    "gaussian_constant",
    "gaussian_epsilon",
    "gaussian_noise_multiplier",
    "is_dp",
    "noise_for_target",
    "uplink_sensitivity",
    "uplink_sensitivity_for",
    "uplink_sigma",
]
