"""What (epsilon, delta) a federated run's noise really gives, from dp-accounting (design §4).

Two adversaries, two channels (design §3: every client takes part in every round):

* **uplink** -- the server, or an eavesdropper of the uplink, sees client i's clipped upload plus
  N(0, s_U^2 I) in each of the T rounds: T Gaussian mechanisms with L2 sensitivity 2C/m (NbAFL's bound for
  replacing one sample of the smallest local data set, m samples), noise multiplier z = s_U / (2C/m).
* **downlink** -- another client j receives its own copy w_{t+1} + N(0, s_D^2 I) with
  w_{t+1} = sum_k p_k (clip(w_k) + n_k). Client j knows its own upload (and the noise it added), so the
  noise that protects client i from j is sum_{k != j} p_k n_k + n_j^D, of std
  sqrt(s_U^2 sum_{k != j} p_k^2 + s_D^2); client i's sensitivity there is 2C p_i / m. Composed over T rounds,
  reported per client i against the worst observer j != i (the one with the largest weight), and the worst
  client. (An observer that did not know any uplink noise would face the larger std
  sqrt(s_U^2 sum_k p_k^2 + s_D^2), so that case is covered. An eavesdropper capturing all N downlink copies
  could average their independent downlink noise down to s_D / sqrt(N); that adversary is not reported.)

Accountants (both from Google's ``dp_accounting`` 0.6, add-or-remove relation on a sensitivity-1 query,
which for a Gaussian is exactly the mechanism "L2 sensitivity Delta, std Delta z"):

* ``"rdp"`` (default, conservative): Renyi DP of the Gaussian, alpha / (2 z^2) per round, converted with the
  bound of Canonne, Kamath & Steinke (2020) over the default orders extended up to 2^20.
* ``"pld"``: privacy-loss distributions with pessimistic discretisation (still an upper bound); tighter, and
  for Gaussians within 1e-3 (relative, usually far closer) of the exact analytic value of Balle & Wang (2018).
  Its discretisation step is 1e-4 times the RDP epsilon, which keeps it fast (~0.1 s) at every scale.

Two sensitivities (design §4; ``sensitivity=`` of :func:`account_run` and :func:`noise_for_target`):

* ``"nbafl"`` -- 2C/m, NbAFL's assumption (their lemma on the local ERM solution): replacing one sample of the
  smallest data set moves the clipped upload by at most 2C/m. It presumes a bounded per-sample influence that
  multi-epoch (Adam) training clipped only at the end does not guarantee.
* ``"unconditional"`` -- 2C: two weight vectors clipped to norm C differ by at most 2C whatever the data, so this
  bound holds for any training and for replacing a client's whole data set (client-level).

:func:`account_run_both` reports both; a table names the one it uses. :func:`dp_label` / :func:`is_dp` implement
design §4's rule for calling a setting "DP": accounted epsilon finite and at most 10 (:data:`DP_MAX_EPSILON`), at a
delta of at most 1e-5 (:data:`DP_MAX_DELTA`; a guarantee at a smaller delta implies it at 1e-5), with the
sensitivity assumption named in the label.

Example:
    >>> report = account_run(sigma_uplink=48.448, sigma_downlink=0.0, clip=10.0, min_local_size=100,
    ...                      rounds=50, num_clients=3, delta=1e-5)
    >>> 0 < report.epsilon_uplink < 1
    True
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..jsonsafe import json_safe
from .gaussian import check_accountant, gaussian_epsilon, gaussian_noise_multiplier
from .nbafl import _check_count, _check_delta, _check_non_negative, _check_positive

__all__ = [
    "DP_MAX_DELTA",
    "DP_MAX_EPSILON",
    "SENSITIVITIES",
    "ChannelPrivacy",
    "PrivacyReport",
    "TargetNoise",
    "account_run",
    "account_run_both",
    "dp_label",
    "is_dp",
    "noise_for_target",
    "uplink_sensitivity_for",
]

# name -> (what a table writes beside epsilon, the neighbouring relation it protects)
SENSITIVITIES: dict[str, tuple[str, str]] = {
    "nbafl": ("NbAFL sensitivity 2C/m",
              "one sample of one client's data set replaced; NbAFL sensitivity 2C/m (assumes bounded per-sample "
              "influence on the clipped weights)"),
    "unconditional": ("unconditional sensitivity 2C",
                      "one client's whole data set replaced; unconditional sensitivity 2C of weights clipped to C"),
}
DP_MAX_EPSILON = 10.0
DP_MAX_DELTA = 1e-5



def _check_sensitivity(sensitivity: str) -> str:
    if sensitivity not in SENSITIVITIES:
        raise ValueError(f"sensitivity must be one of {', '.join(SENSITIVITIES)}, got {sensitivity!r}.")
    return sensitivity


def uplink_sensitivity_for(sensitivity: str, *, clip: float, min_local_size: int) -> float:
    """L2 sensitivity of one client's clipped upload: 2C/m (``"nbafl"``) or 2C (``"unconditional"``)."""
    sensitivity = _check_sensitivity(sensitivity)
    clip = _check_positive("clip", clip)
    min_local_size = _check_count("min_local_size", min_local_size)
    return 2.0 * clip / (min_local_size if sensitivity == "nbafl" else 1)


def is_dp(epsilon: float, delta: float) -> bool:
    """Design §4's rule: finite ``epsilon`` <= 10 accounted at ``delta`` <= 1e-5 (both bounds inclusive)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or math.isnan(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a number >= 0 (inf allowed), got {epsilon!r}.")
    delta = _check_delta(delta)
    return math.isfinite(epsilon) and epsilon <= DP_MAX_EPSILON and delta <= DP_MAX_DELTA


def dp_label(epsilon: float, delta: float, *, sensitivity: str) -> str | None:
    """The "DP" label a table may print beside a setting, naming the assumption, or ``None`` when it is not DP.

    Example:
        >>> dp_label(3.2, 1e-5, sensitivity="unconditional")
        'DP (epsilon 3.2 at delta 1e-05, unconditional sensitivity 2C)'
        >>> dp_label(2.9e6, 1e-5, sensitivity="nbafl") is None
        True
    """
    sensitivity = _check_sensitivity(sensitivity)
    if not is_dp(epsilon, delta):
        return None
    return f"DP (epsilon {epsilon:.3g} at delta {delta:g}, {SENSITIVITIES[sensitivity][0]})"


@dataclass(frozen=True)
class ChannelPrivacy:
    """One Gaussian mechanism composed over the rounds, as one adversary sees it.

    ``sigma`` is the total noise std the adversary faces, ``sensitivity`` the L2 sensitivity of what it sees
    to one sample of the client, ``noise_multiplier`` = sigma / sensitivity. ``reason`` says why epsilon is
    infinite or zero, and is empty otherwise.
    """

    channel: str
    client: int | None
    adversary: str
    mechanism: str
    sensitivity: float
    sigma: float
    noise_multiplier: float
    compositions: int
    epsilon_rdp: float
    epsilon_pld: float
    reason: str

    def epsilon(self, accountant: str = "rdp") -> float:
        return self.epsilon_rdp if check_accountant(accountant) == "rdp" else self.epsilon_pld


@dataclass(frozen=True)
class PrivacyReport:
    """The (epsilon, delta) a run's noise gives, per channel (see the module docstring).

    ``epsilon_uplink`` and ``epsilon_downlink`` (worst client) come from ``accountant``; each channel also
    carries both accountants' values. ``noise`` is ``"calibrated"`` or ``"hand-set"``. ``sensitivity`` names the
    assumption (``"nbafl"``: 2C/m, ``"unconditional"``: 2C) and ``neighbouring`` says it in words.
    """

    accountant: str
    noise: str
    delta: float
    clip: float | None
    min_local_size: int
    rounds: int
    num_clients: int
    weights: tuple[float, ...]
    sigma_uplink: float
    sigma_downlink: float
    sensitivity: str
    neighbouring: str
    uplink: ChannelPrivacy
    downlink: tuple[ChannelPrivacy, ...]
    epsilon_uplink: float
    epsilon_downlink: float
    epsilon_downlink_per_client: tuple[float, ...]

    @property
    def epsilon(self) -> float:
        """The weaker of the two guarantees: max(epsilon_uplink, epsilon_downlink)."""
        return max(self.epsilon_uplink, self.epsilon_downlink)

    @property
    def dp(self) -> str | None:
        """:func:`dp_label` of :attr:`epsilon` under this report's sensitivity (``None``: not DP)."""
        return dp_label(self.epsilon, self.delta, sensitivity=self.sensitivity)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: infinities become the string ``"inf"``."""
        data = dataclasses.asdict(self)
        data["epsilon"] = self.epsilon
        data["dp"] = self.dp
        return json_safe(data)


def _normalise_weights(weights: Sequence[float] | None, num_clients: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0 / num_clients,) * num_clients
    weights = [_check_non_negative("weights", w) for w in weights]
    if len(weights) != num_clients:
        raise ValueError(f"weights must have one entry per client ({num_clients}), got {len(weights)}.")
    total = sum(weights)
    if total <= 0:
        raise ValueError("weights must not all be zero.")
    return tuple(w / total for w in weights)


def _observer_variance_factor(weights: tuple[float, ...], client: int) -> float:
    """sum_{k != j} p_k^2 for the observer j != client with the largest weight (the least noise left)."""
    others = [w for k, w in enumerate(weights) if k != client]
    return sum(w * w for w in weights) - max(others) ** 2


@functools.lru_cache(maxsize=1024)
def _epsilons(noise_multiplier: float, steps: int, delta: float) -> tuple[float, float]:
    """(RDP, PLD) epsilons; cached because clients with equal weights share one mechanism."""
    return (gaussian_epsilon(noise_multiplier, steps=steps, delta=delta, accountant="rdp"),
            gaussian_epsilon(noise_multiplier, steps=steps, delta=delta, accountant="pld"))


def _channel(*, channel: str, client: int | None, adversary: str, sensitivity: float, sigma: float,
             rounds: int, delta: float, unbounded: bool) -> ChannelPrivacy:
    if unbounded:
        z, reason = 0.0, "no clipping (clip is None): the sensitivity is unbounded"
    elif sensitivity == 0:
        z, reason = math.inf, "weight 0: what this adversary sees does not depend on the client's data"
    elif sigma == 0:
        z, reason = 0.0, "no noise: this adversary sees the clipped weights exactly"
    else:
        z, reason = sigma / sensitivity, ""
    eps_rdp, eps_pld = _epsilons(z, rounds, delta)
    sens_text = "unbounded" if unbounded else f"{sensitivity:.6g}"
    mechanism = f"Gaussian, L2 sensitivity {sens_text}, std {sigma:.6g}, composed over {rounds} rounds"
    return ChannelPrivacy(channel=channel, client=client, adversary=adversary, mechanism=mechanism,
                          sensitivity=math.inf if unbounded else sensitivity, sigma=sigma, noise_multiplier=z,
                          compositions=rounds, epsilon_rdp=eps_rdp, epsilon_pld=eps_pld, reason=reason)


def account_run(*, sigma_uplink: float, sigma_downlink: float, clip: float | None, min_local_size: int,
                rounds: int, num_clients: int, delta: float, weights: Sequence[float] | None = None,
                calibrated: bool = False, accountant: str = "rdp", sensitivity: str = "nbafl") -> PrivacyReport:
    """The (epsilon, delta) that a run with these noises gives, per channel (see the module docstring).

    Args:
        sigma_uplink: s_U, std of the noise each client adds to its clipped upload (>= 0).
        sigma_downlink: s_D, std of the noise on each client's downlink copy (>= 0).
        clip: C, the L2 clipping norm of uploads; ``None`` (no clipping) gives epsilon = inf.
        min_local_size: m, the size of the smallest local data set (only the NbAFL sensitivity uses it).
        rounds: T; every client takes part in every round.
        num_clients: N.
        delta: the delta the epsilons are reported at.
        weights: aggregation weights p_i (e.g. local data sizes; normalised here); uniform if ``None``.
        calibrated: whether the noise came from a calibration (``noise = "calibrated"``) or by hand.
        accountant: ``"rdp"`` (conservative, default) or ``"pld"`` (tighter) for the headline epsilons.
        sensitivity: ``"nbafl"`` (2C/m, the papers' assumption; default) or ``"unconditional"`` (2C).
    """
    sigma_uplink = _check_non_negative("sigma_uplink", sigma_uplink)
    sigma_downlink = _check_non_negative("sigma_downlink", sigma_downlink)
    unbounded = clip is None
    clip_value = 1.0 if clip is None else _check_positive("clip", clip)
    min_local_size = _check_count("min_local_size", min_local_size)
    rounds = _check_count("rounds", rounds)
    num_clients = _check_count("num_clients", num_clients)
    delta = _check_delta(delta)
    accountant = check_accountant(accountant)
    sensitivity = _check_sensitivity(sensitivity)
    p = _normalise_weights(weights, num_clients)

    sens_up = uplink_sensitivity_for(sensitivity, clip=clip_value, min_local_size=min_local_size)
    uplink = _channel(channel="uplink", client=None, adversary="server or an uplink eavesdropper",
                      sensitivity=sens_up, sigma=sigma_uplink, rounds=rounds, delta=delta, unbounded=unbounded)

    downlink: list[ChannelPrivacy] = []
    for i, p_i in enumerate(p):
        if num_clients == 1:
            downlink.append(ChannelPrivacy(
                channel="downlink", client=i, adversary="no other client", mechanism="none",
                sensitivity=0.0, sigma=sigma_downlink, noise_multiplier=math.inf, compositions=rounds,
                epsilon_rdp=0.0, epsilon_pld=0.0, reason="a single client: no other client receives a model"))
            continue
        sigma = math.sqrt(sigma_uplink**2 * _observer_variance_factor(p, i) + sigma_downlink**2)
        downlink.append(_channel(channel="downlink", client=i,
                                 adversary="another client, who knows its own upload",
                                 sensitivity=sens_up * p_i, sigma=sigma, rounds=rounds, delta=delta,
                                 unbounded=unbounded))

    per_client = tuple(ch.epsilon(accountant) for ch in downlink)
    return PrivacyReport(
        accountant=accountant, noise="calibrated" if calibrated else "hand-set", delta=delta, clip=clip,
        min_local_size=min_local_size, rounds=rounds, num_clients=num_clients, weights=p,
        sigma_uplink=sigma_uplink, sigma_downlink=sigma_downlink, sensitivity=sensitivity,
        neighbouring=SENSITIVITIES[sensitivity][1],
        uplink=uplink, downlink=tuple(downlink), epsilon_uplink=uplink.epsilon(accountant),
        epsilon_downlink=max(per_client), epsilon_downlink_per_client=per_client)


def account_run_both(**kwargs: Any) -> dict[str, PrivacyReport]:
    """:func:`account_run` under both sensitivities: ``{"nbafl": report, "unconditional": report}``.

    Takes :func:`account_run`'s keyword arguments except ``sensitivity``.
    """
    if "sensitivity" in kwargs:
        raise ValueError("account_run_both reports every sensitivity; do not pass sensitivity.")
    return {name: account_run(**kwargs, sensitivity=name) for name in SENSITIVITIES}


@functools.lru_cache(maxsize=256)
def _noise_multiplier(target_epsilon: float, steps: int, delta: float, accountant: str, rtol: float) -> float:
    """Cached: both sensitivities share one z (only the scale z x sensitivity differs)."""
    return gaussian_noise_multiplier(target_epsilon, steps=steps, delta=delta, accountant=accountant, rtol=rtol)


@dataclass(frozen=True)
class TargetNoise:
    """The noise an accountant needs for ``target_epsilon`` on both channels over ``rounds`` rounds.

    ``noise_multiplier`` is the z with epsilon(z, T rounds) <= target. ``sigma_uplink`` is the s_U used for
    the downlink (the calibrated z * 2C/m unless one was given) and ``sigma_downlink`` the least s_D that
    brings every client's downlink epsilon to the target on top of it. ``sensitivity`` names the assumption.
    """

    target_epsilon: float
    delta: float
    accountant: str
    sensitivity: str
    rounds: int
    noise_multiplier: float
    sensitivity_uplink: float
    sigma_uplink: float
    sigma_downlink: float
    uplink_meets_target: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return json_safe(dataclasses.asdict(self))


def noise_for_target(*, target_epsilon: float, delta: float, clip: float, min_local_size: int, rounds: int,
                     num_clients: int, weights: Sequence[float] | None = None,
                     sigma_uplink: float | None = None, accountant: str = "rdp", sensitivity: str = "nbafl",
                     rtol: float = 1e-6) -> TargetNoise:
    """The inverse of :func:`account_run`: s_U and s_D that give ``target_epsilon`` over ``rounds`` rounds,
    under ``sensitivity`` (``"nbafl"``: 2C/m, ``"unconditional"``: 2C).

    With ``sigma_uplink=None`` s_U = z x sensitivity is calibrated; it meets the target on both channels with
    s_D = 0, and any s_D >= 0 only lowers the downlink epsilon (the uplink adversary sees no downlink noise, so
    no s_D lowers the s_U needed). Otherwise the given s_U is kept (``uplink_meets_target`` says whether it is
    enough) and only s_D is solved for.
    """
    target_epsilon = _check_positive("target_epsilon", target_epsilon)
    clip = _check_positive("clip", clip)
    min_local_size = _check_count("min_local_size", min_local_size)
    rounds = _check_count("rounds", rounds)
    num_clients = _check_count("num_clients", num_clients)
    p = _normalise_weights(weights, num_clients)

    sensitivity = _check_sensitivity(sensitivity)
    z = _noise_multiplier(target_epsilon, rounds, _check_delta(delta), check_accountant(accountant),
                          _check_positive("rtol", rtol))
    sens_up = uplink_sensitivity_for(sensitivity, clip=clip, min_local_size=min_local_size)
    s_up = z * sens_up if sigma_uplink is None else _check_non_negative("sigma_uplink", sigma_uplink)

    needed_var = 0.0
    if num_clients > 1:
        for i, p_i in enumerate(p):
            have = s_up**2 * _observer_variance_factor(p, i)
            needed_var = max(needed_var, (z * sens_up * p_i) ** 2 - have)
    return TargetNoise(target_epsilon=target_epsilon, delta=delta, accountant=accountant, sensitivity=sensitivity,
                       rounds=rounds, noise_multiplier=z, sensitivity_uplink=sens_up, sigma_uplink=s_up,
                       sigma_downlink=math.sqrt(needed_var), uplink_meets_target=s_up >= z * sens_up)
