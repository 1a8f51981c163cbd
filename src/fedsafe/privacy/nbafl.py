"""NbAFL noise calibration (Wei et al. 2020, design §4).

K. Wei et al., "Federated learning with differential privacy: algorithms and performance analysis",
IEEE TIFS 15 (2020). Each client clips its weights to L2 norm ``C`` and adds N(0, s_U^2 I) before upload
("noising before aggregation"); the server may add N(0, s_D^2 I) to what it sends back. The paper calibrates

    c    = sqrt(2 ln(1.25 / delta))                        (classical Gaussian-mechanism constant)
    dS_U = 2C / m                                          (uplink sensitivity, m = smallest local data set)
    s_U  = c L dS_U / epsilon                              (L = exposures of a client's parameters)
    s_D  = 2 c C sqrt(T^2 - L^2 N) / (m N epsilon)         if T > L sqrt(N), else 0

These are the paper's *calibration* formulas. What a run with these noises really gives is computed by
:mod:`fedsafe.privacy.accountant`; the two differ (the L factor is a linear composition bound, and ``c``
is only proved for epsilon < 1). dS_U = 2C/m is NbAFL's *assumption* of a bounded per-sample influence; the
unconditional sensitivity of weights clipped to C is 2C (``sensitivity="unconditional"`` in the accountant,
design §4), which needs m times the noise for the same epsilon.

Example:
    >>> cal = calibrate_nbafl(epsilon=1.0, delta=1e-5, clip=10.0, min_local_size=100,
    ...                       exposures=50, rounds=50, num_clients=3)
    >>> round(cal.sigma_uplink, 4), cal.sigma_downlink
    (48.4481, 0.0)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

__all__ = [
    "NbaflCalibration",
    "calibrate_nbafl",
    "downlink_sigma",
    "gaussian_constant",
    "uplink_sensitivity",
    "uplink_sigma",
]


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def _check_non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def _check_delta(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"delta must lie strictly between 0 and 1, got {value!r}.")
    return float(value)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class NbaflCalibration:
    """The NbAFL noise for a privacy target, with every input it was computed from.

    Symbols of the paper: ``clip`` = C, ``min_local_size`` = m, ``exposures`` = L, ``rounds`` = T,
    ``num_clients`` = N; ``c`` = sqrt(2 ln(1.25/delta)), ``sensitivity_uplink`` = 2C/m,
    ``sigma_uplink`` = s_U, ``sigma_downlink`` = s_D. ``note`` says why s_D is 0 when it is.
    """

    epsilon: float
    delta: float
    clip: float
    min_local_size: int
    exposures: int
    rounds: int
    num_clients: int
    c: float
    sensitivity_uplink: float
    sigma_uplink: float
    sigma_downlink: float
    note: str

    def to_dict(self) -> dict[str, float | int | str]:
        """A JSON-safe dict (every value is finite)."""
        return dataclasses.asdict(self)


def gaussian_constant(delta: float) -> float:
    """c = sqrt(2 ln(1.25 / delta)), the classical Gaussian-mechanism constant (Dwork & Roth, Thm A.1)."""
    delta = _check_delta(delta)
    return math.sqrt(2.0 * math.log(1.25 / delta))


def uplink_sensitivity(*, clip: float, min_local_size: int) -> float:
    """dS_U = 2C/m: the L2 sensitivity NbAFL assigns to one client's clipped upload."""
    clip = _check_positive("clip", clip)
    min_local_size = _check_count("min_local_size", min_local_size)
    return 2.0 * clip / min_local_size


def uplink_sigma(*, epsilon: float, delta: float, clip: float, min_local_size: int, exposures: int) -> float:
    """s_U = c L dS_U / epsilon, the std of the noise each client adds before upload."""
    epsilon = _check_positive("epsilon", epsilon)
    exposures = _check_count("exposures", exposures)
    sensitivity = uplink_sensitivity(clip=clip, min_local_size=min_local_size)
    return gaussian_constant(delta) * exposures * sensitivity / epsilon


def downlink_sigma(*, epsilon: float, delta: float, clip: float, min_local_size: int, exposures: int,
                   rounds: int, num_clients: int) -> float:
    """s_D = 2cC sqrt(T^2 - L^2 N) / (m N epsilon) if T > L sqrt(N), else 0."""
    epsilon = _check_positive("epsilon", epsilon)
    clip = _check_positive("clip", clip)
    min_local_size = _check_count("min_local_size", min_local_size)
    exposures, rounds, num_clients = _check_rounds(exposures, rounds, num_clients)
    c = gaussian_constant(delta)
    excess = rounds**2 - exposures**2 * num_clients
    if excess <= 0:  # T <= L sqrt(N), compared exactly in integers
        return 0.0
    return 2.0 * c * clip * math.sqrt(excess) / (min_local_size * num_clients * epsilon)


def _check_rounds(exposures: int, rounds: int, num_clients: int) -> tuple[int, int, int]:
    exposures = _check_count("exposures", exposures)
    rounds = _check_count("rounds", rounds)
    num_clients = _check_count("num_clients", num_clients)
    if exposures > rounds:
        raise ValueError(f"exposures (L = {exposures}) cannot exceed the number of rounds (T = {rounds}).")
    return exposures, rounds, num_clients


def calibrate_nbafl(*, epsilon: float, delta: float, clip: float, min_local_size: int, exposures: int,
                    rounds: int, num_clients: int) -> NbaflCalibration:
    """The NbAFL uplink and downlink noise for an (epsilon, delta) target (design §4).

    Args:
        epsilon: target epsilon (> 0).
        delta: target delta, in (0, 1).
        clip: C, the L2 norm each client's weights are clipped to (> 0).
        min_local_size: m, the size of the smallest local data set (>= 1).
        exposures: L, how many times each client's parameters are uploaded (1 <= L <= T).
        rounds: T, the number of aggregation rounds (>= 1).
        num_clients: N, the number of clients (>= 1).

    Raises:
        ValueError: an argument is out of range; the message names it.
    """
    epsilon = _check_positive("epsilon", epsilon)
    delta = _check_delta(delta)
    clip = _check_positive("clip", clip)
    min_local_size = _check_count("min_local_size", min_local_size)
    exposures, rounds, num_clients = _check_rounds(exposures, rounds, num_clients)

    c = gaussian_constant(delta)
    sens = uplink_sensitivity(clip=clip, min_local_size=min_local_size)
    s_up = uplink_sigma(epsilon=epsilon, delta=delta, clip=clip, min_local_size=min_local_size,
                        exposures=exposures)
    s_down = downlink_sigma(epsilon=epsilon, delta=delta, clip=clip, min_local_size=min_local_size,
                            exposures=exposures, rounds=rounds, num_clients=num_clients)

    threshold = exposures * math.sqrt(num_clients)
    if s_down > 0:
        note = (f"s_D > 0 because T = {rounds} > L*sqrt(N) = {threshold:.4g}: the uplink noise averaged over "
                f"the N clients does not cover the downlink for that many rounds.")
    else:
        note = (f"s_D = 0 because T = {rounds} <= L*sqrt(N) = {threshold:.4g}: the uplink noise averaged over "
                f"the N clients already covers the downlink.")
        if exposures == rounds:
            note += (" With every client in every round (L = T) this always holds; the papers set s_D by "
                     "hand (0.01 to 0.03).")
    if epsilon >= 1:
        note += (f" Caution: c = sqrt(2 ln(1.25/delta)) is only proved for epsilon < 1 (got {epsilon:g}); "
                 "see the accountant for what the noise really gives.")
    return NbaflCalibration(epsilon=epsilon, delta=delta, clip=clip, min_local_size=min_local_size,
                            exposures=exposures, rounds=rounds, num_clients=num_clients, c=c,
                            sensitivity_uplink=sens, sigma_uplink=s_up, sigma_downlink=s_down, note=note)
