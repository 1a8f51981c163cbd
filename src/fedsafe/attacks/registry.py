"""The attacks by name (explicit dicts; nothing registers itself at import time).

``ATTACKS``: the three of design §6, which share a keyword set: ``eps``, ``start``, ``centre_grad``,
``precision``; BIM and PGD add ``alpha`` and ``steps``, PGD adds ``generator`` (its random start). FGSM is one step
of size eps. Every attack there needs only the attacker's final model, so a runner can call any of them alike.

``ADAPTIVE_ATTACKS``: the insider's adaptive attacks, which need more than the final model and are kept apart so
that a runner that only has the final model cannot select them by name: EOT-PGD (adds ``samples`` = K and
``noise_std`` = s_D, the downlink noise it expects) and the surrogate-ensemble PGD (adds ``models``, the copies
received over the last rounds). Both take PGD's keywords too.

``QUERY_ATTACKS``: the gradient-free attacks, which read only the model's logits: Square (L-inf, Andriushchenko et
al. 2020), with ``eps``, ``queries``, ``generator`` and ``precision`` and its own random start. They measure what
gradient attacks miss where the input gradients are zero or shattered (the masking checks).

>>> get_attack("pgd").__name__
'pgd'
>>> get_adaptive_attack("eot-pgd").__name__
'eot_pgd'
>>> get_query_attack("square").__name__
'square_linf'
"""

from __future__ import annotations

from collections.abc import Callable

from fedsafe.attacks.ensemble import ensemble_pgd
from fedsafe.attacks.eot import eot_pgd
from fedsafe.attacks.iterative import AttackResult, bim, fgsm, pgd
from fedsafe.attacks.square import square_linf

__all__ = ["ADAPTIVE_ATTACKS", "ATTACKS", "QUERY_ATTACKS", "get_adaptive_attack", "get_attack", "get_query_attack"]

ATTACKS: dict[str, Callable[..., AttackResult]] = {"fgsm": fgsm, "bim": bim, "pgd": pgd}
ADAPTIVE_ATTACKS: dict[str, Callable[..., AttackResult]] = {"eot-pgd": eot_pgd, "ensemble-pgd": ensemble_pgd}
QUERY_ATTACKS: dict[str, Callable[..., AttackResult]] = {"square": square_linf}


def get_attack(name: str) -> Callable[..., AttackResult]:
    """The attack function called ``name``; ValueError listing the known names otherwise."""
    return _lookup(ATTACKS, name, "attack")


def get_adaptive_attack(name: str) -> Callable[..., AttackResult]:
    """The adaptive attack function called ``name``; ValueError listing the known names otherwise."""
    return _lookup(ADAPTIVE_ATTACKS, name, "adaptive attack")


def get_query_attack(name: str) -> Callable[..., AttackResult]:
    """The gradient-free attack function called ``name``; ValueError listing the known names otherwise."""
    return _lookup(QUERY_ATTACKS, name, "gradient-free attack")


def _lookup(table: dict[str, Callable[..., AttackResult]], name: str, kind: str) -> Callable[..., AttackResult]:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}") from None
