"""Differential privacy of a federated run: NbAFL calibration and a real accountant (SPEC section 4)."""

from .accountant import (
    ACCOUNTANTS,
    ChannelPrivacy,
    GaussianAccountant,
    PrivacyReport,
    TargetNoise,
    account_run,
    epsilon_from_history,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    noise_for_target,
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
    "ChannelPrivacy",
    "GaussianAccountant",
    "NbaflCalibration",
    "PrivacyReport",
    "TargetNoise",
    "account_run",
    "calibrate_nbafl",
    "downlink_sigma",
    "epsilon_from_history",
    "gaussian_constant",
    "gaussian_epsilon",
    "gaussian_noise_multiplier",
    "noise_for_target",
    "uplink_sensitivity",
    "uplink_sigma",
]
