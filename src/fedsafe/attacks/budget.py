"""The budget of an L-inf attack (design §§6-7), checked in one place: eps, the step size alpha, the number of
steps K, and the CRN windows R. Every attack function, :class:`fedsafe.attacks.spec.AttackSpec` and the CRN code
call these, so a bad value gets the same one-sentence ValueError wherever it enters.

Budgets are in [0, 1] pixel units (the models normalise inside themselves).

>>> check_budget(eps=0.05, alpha=0.001, steps=20)
>>> check_eps(0.0), check_alpha(0.01), check_steps(3)
(0.0, 0.01, 3)
>>> check_windows([10, 5, 5], total_rounds=20)
(5, 10)
>>> check_eps(1.5)
Traceback (most recent call last):
...
ValueError: eps is an L-inf budget in [0, 1] pixel units, got 1.5
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["check_alpha", "check_budget", "check_eps", "check_steps", "check_window", "check_windows"]


def check_eps(eps: float, *, positive: bool = False) -> float:
    """``eps`` as a float in [0, 1] ((0, 1] with ``positive``: a CRN buffer needs a ball to move in)."""
    if positive and not 0 < eps <= 1:
        raise ValueError(f"CRN needs an L-inf budget eps in (0, 1] pixel units, got {eps}")
    if not 0 <= eps <= 1:
        raise ValueError(f"eps is an L-inf budget in [0, 1] pixel units, got {eps}")
    return float(eps)


def check_alpha(alpha: float | None, *, who: str = "") -> float:
    """The step size ``alpha`` as a float in (0, 1]; ``who`` prefixes the message (e.g. the attack's name)."""
    if alpha is None or not 0 < alpha <= 1:
        raise ValueError(f"{who + ': ' if who else ''}alpha (step size) must be in (0, 1] pixel units, got {alpha}")
    return float(alpha)


def check_steps(steps: int, *, what: str = "steps") -> int:
    """A number of steps: an integer >= 1 (not a bool)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {steps!r}")
    return steps


def check_budget(*, eps: float, alpha: float | None, steps: int) -> None:
    """eps in [0, 1], alpha in (0, 1] (None: not a step size, as in FGSM), steps an integer >= 1."""
    check_eps(eps)
    if alpha is not None:
        check_alpha(alpha)
    check_steps(steps)


def check_window(window: int, *, total_rounds: int | None = None) -> int:
    """A CRN window R: the last R rounds, so 1 <= R (<= the number of rounds when it is known)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"a CRN window R is a number of rounds >= 1, got {window!r}")
    if total_rounds is not None and window > total_rounds:
        raise ValueError(f"CRN window {window} exceeds the run's {total_rounds} rounds")
    return window


def check_windows(windows: Iterable[int], *, total_rounds: int | None = None) -> tuple[int, ...]:
    """Several CRN windows: each checked by :func:`check_window`; returned sorted, without repeats."""
    out = tuple(sorted({check_window(w, total_rounds=total_rounds) for w in windows}))
    if not out:
        raise ValueError("CRN needs at least one window R")
    return out
