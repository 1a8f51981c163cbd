"""The attacks by name (one explicit dict; nothing registers itself at import time).

The three share a keyword set: ``eps``, ``start``, ``centre_grad``, ``precision``; BIM and PGD add ``alpha`` and
``steps``, PGD adds ``generator`` (its random start). FGSM is one step of size eps.

>>> get_attack("pgd").__name__
'pgd'
"""

from __future__ import annotations

from collections.abc import Callable

from fedsafe.attacks.iterative import AttackResult, bim, fgsm, pgd

__all__ = ["ATTACKS", "get_attack"]

ATTACKS: dict[str, Callable[..., AttackResult]] = {"fgsm": fgsm, "bim": bim, "pgd": pgd}


def get_attack(name: str) -> Callable[..., AttackResult]:
    """The attack function called ``name``; ValueError listing the known names otherwise."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}") from None
