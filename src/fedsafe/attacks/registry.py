"""The attacks by name (explicit dicts; nothing registers itself at import time).

``ATTACKS``: the three of design §6, which share a keyword set: ``eps``, ``start``, ``centre_grad``,
``precision``; BIM and PGD add ``alpha`` and ``steps``, PGD adds ``generator`` (its random start). FGSM is one step
of size eps. Every attack there needs only the attacker's final model, so a runner can call any of them alike.

``ADAPTIVE_ATTACKS``: the insider's adaptive attacks, which need more than the final model and are kept apart so
that a runner that only has the final model cannot select them by name: EOT-PGD (adds ``samples`` = K and
``noise_std`` = s_D, the downlink noise it expects) and the surrogate-ensemble PGD (adds ``models``, the copies
received over the last rounds). Both take PGD's keywords too.

>>> get_attack("pgd").__name__
'pgd'
>>> get_adaptive_attack("eot-pgd").__name__
'eot_pgd'
"""

from __future__ import annotations

from collections.abc import Callable

from fedsafe.attacks.ensemble import ensemble_pgd
from fedsafe.attacks.eot import eot_pgd
from fedsafe.attacks.iterative import AttackResult, bim, fgsm, pgd

__all__ = ["ADAPTIVE_ATTACKS", "ATTACKS", "get_adaptive_attack", "get_attack"]

ATTACKS: dict[str, Callable[..., AttackResult]] = {"fgsm": fgsm, "bim": bim, "pgd": pgd}
ADAPTIVE_ATTACKS: dict[str, Callable[..., AttackResult]] = {"eot-pgd": eot_pgd, "ensemble-pgd": ensemble_pgd}


def get_attack(name: str) -> Callable[..., AttackResult]:
    """The attack function called ``name``; ValueError listing the known names otherwise."""
    return _lookup(ATTACKS, name, "attack")


def get_adaptive_attack(name: str) -> Callable[..., AttackResult]:
    """The adaptive attack function called ``name``; ValueError listing the known names otherwise."""
    return _lookup(ADAPTIVE_ATTACKS, name, "adaptive attack")


def _lookup(table: dict[str, Callable[..., AttackResult]], name: str, kind: str) -> Callable[..., AttackResult]:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}") from None
