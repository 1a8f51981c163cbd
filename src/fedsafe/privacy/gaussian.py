"""The Gaussian mechanism composed over rounds, as the accountants of Google's ``dp_accounting`` (0.6) see it:
epsilon of a history of (noise multiplier, steps), the noise multiplier for a target epsilon, and a small stateful
accountant that only keeps its history (as Opacus' does). :mod:`fedsafe.privacy.accountant` builds the per-channel
report of a federated run on these.

Accountants (both add-or-remove relation on a sensitivity-1 query, which for a Gaussian is exactly the mechanism
"L2 sensitivity Delta, std Delta z"):

* ``"rdp"`` (default, conservative): Renyi DP of the Gaussian, alpha / (2 z^2) per round, converted with the
  bound of Canonne, Kamath & Steinke (2020) over the default orders extended up to 2^20.
* ``"pld"``: privacy-loss distributions with pessimistic discretisation (still an upper bound); tighter, and
  for Gaussians within 1e-3 (relative, usually far closer) of the exact analytic value of Balle & Wang (2018).
  Its discretisation step is 1e-4 times the RDP epsilon, which keeps it fast (~0.1 s) at every scale.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from .nbafl import _check_count, _check_delta, _check_positive

__all__ = ["ACCOUNTANTS", "RDP_ORDERS", "GaussianAccountant", "History", "check_accountant", "epsilon_from_history",
           "gaussian_epsilon", "gaussian_noise_multiplier"]

ACCOUNTANTS = ("rdp", "pld")
RDP_ORDERS: tuple[float, ...] = tuple(rdp_privacy_accountant.DEFAULT_RDP_ORDERS) + tuple(
    float(2**k) for k in range(11, 21))
_PLD_RELATIVE_STEP = 1e-4


History = Sequence[tuple[float, int]]


def check_accountant(accountant: str) -> str:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}.")
    return accountant


def _check_history(history: History) -> list[tuple[float, int]]:
    events = []
    for noise_multiplier, steps in history:
        if isinstance(noise_multiplier, bool) or not (
                isinstance(noise_multiplier, numbers.Real) and noise_multiplier >= 0):  # inf is allowed
            raise ValueError(f"noise_multiplier must be a number >= 0, got {noise_multiplier!r}.")
        events.append((float(noise_multiplier), _check_count("steps", steps)))
    return events


def epsilon_from_history(history: History, *, delta: float, accountant: str = "rdp") -> float:
    """Epsilon at ``delta`` of composing Gaussian mechanisms given as ``(noise_multiplier, steps)`` events.

    Each event is ``steps`` releases of a sensitivity-1 query with N(0, noise_multiplier^2) noise.
    A zero noise multiplier gives ``inf``; an infinite one (a query that does not depend on the data)
    contributes nothing.

    Example:
        >>> round(epsilon_from_history([(1.0, 10)], delta=1e-5, accountant="pld"), 3)
        17.857
    """
    delta = _check_delta(delta)
    accountant = check_accountant(accountant)
    events = [(z, steps) for z, steps in _check_history(history) if not math.isinf(z)]
    if any(z == 0 for z, _ in events):
        return math.inf
    if not events:
        return 0.0
    rdp = rdp_privacy_accountant.RdpAccountant(orders=RDP_ORDERS)
    for z, steps in events:
        rdp.compose(dp_accounting.GaussianDpEvent(z), steps)
    eps_rdp = float(rdp.get_epsilon(delta))
    if accountant == "rdp" or eps_rdp == 0 or math.isinf(eps_rdp):
        return eps_rdp
    # The PLD grid step scales with the answer: 1e-4 absolute is needlessly slow at epsilon ~ 1e3 (minutes)
    # and too coarse at epsilon ~ 1e-4.
    pld = pld_privacy_accountant.PLDAccountant(value_discretization_interval=_PLD_RELATIVE_STEP * eps_rdp)
    try:
        for z, steps in events:
            pld.compose(dp_accounting.GaussianDpEvent(z), steps)
        return float(pld.get_epsilon(delta))
    except OverflowError:
        # dp-accounting's PLD overflows for noise multipliers below ~1e-3 (epsilon ~ 1e6): there the privacy
        # is void anyway, and the RDP bound (still a valid upper bound) is reported instead.
        return eps_rdp


def gaussian_epsilon(noise_multiplier: float, *, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon of ``steps`` Gaussian releases with noise multiplier z = std / L2-sensitivity."""
    return epsilon_from_history([(noise_multiplier, steps)], delta=delta, accountant=accountant)


def gaussian_noise_multiplier(target_epsilon: float, *, steps: int, delta: float, accountant: str = "rdp",
                              rtol: float = 1e-6) -> float:
    """The smallest noise multiplier (to within ``rtol``) whose ``steps``-fold composition meets the target.

    Geometric bisection over the accountant; the value returned always satisfies
    ``gaussian_epsilon(z, ...) <= target_epsilon``.
    """
    target_epsilon = _check_positive("target_epsilon", target_epsilon)
    steps = _check_count("steps", steps)
    rtol = _check_positive("rtol", rtol)

    def eps(z: float) -> float:
        return gaussian_epsilon(z, steps=steps, delta=delta, accountant=accountant)

    # RDP needs at least as much noise as PLD, so its (fast) answer is a tight first guess for PLD.
    guess = 1.0 if accountant == "rdp" else gaussian_noise_multiplier(
        target_epsilon, steps=steps, delta=delta, accountant="rdp", rtol=1e-3)
    lo = hi = guess
    for _ in range(200):
        if eps(hi) <= target_epsilon:
            break
        lo, hi = hi, hi * 2.0
    else:
        raise ValueError(f"no noise multiplier up to {hi:.3g} reaches target_epsilon = {target_epsilon:g}.")
    if lo == hi:
        for _ in range(200):
            lo = lo / 2.0
            if eps(lo) > target_epsilon:
                break
            hi = lo
        else:
            raise ValueError(f"target_epsilon = {target_epsilon:g} is met even with noise multiplier {lo:.3g}.")
    while hi / lo > 1.0 + rtol:
        mid = math.sqrt(lo * hi)
        if eps(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi


class GaussianAccountant:
    """A running accountant that only keeps its history of ``(noise_multiplier, steps)`` events (like Opacus).

    Example:
        >>> acc = GaussianAccountant()
        >>> for _ in range(10):
        ...     acc.step(noise_multiplier=1.0)
        >>> acc.history
        [(1.0, 10)]
        >>> round(acc.get_epsilon(1e-5, accountant="pld"), 3)
        17.857
    """

    def __init__(self) -> None:
        self.history: list[tuple[float, int]] = []

    def step(self, *, noise_multiplier: float, steps: int = 1) -> None:
        """Record ``steps`` Gaussian releases with this noise multiplier (std / L2 sensitivity)."""
        ((z, steps),) = _check_history([(noise_multiplier, steps)])
        if self.history and self.history[-1][0] == z:
            self.history[-1] = (z, self.history[-1][1] + steps)
        else:
            self.history.append((z, steps))

    @property
    def steps(self) -> int:
        """How many releases have been recorded."""
        return sum(steps for _, steps in self.history)

    def get_epsilon(self, delta: float, *, accountant: str = "rdp") -> float:
        """Epsilon at ``delta`` of everything recorded so far."""
        return epsilon_from_history(self.history, delta=delta, accountant=accountant)


