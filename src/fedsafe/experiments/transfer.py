"""Evaluation of transfer from a run directory (design §8): the public face of its parts.

* :mod:`fedsafe.attacks.spec`: what to run (:class:`AttackSpec`, :class:`Start`, :func:`sweep`);
* :mod:`.run_context`: the run, read for attacking it (:func:`load_run` -> :class:`RunContext`);
* :mod:`.starts`: the start each attacker steps from (zero, uniform, its CRN online or replayed);
* :mod:`.sanity`: Carlini et al.'s checks, once per run;
* :mod:`.evaluation`: the loop (every client attacks, every client is evaluated): :func:`evaluate_transfer`;
* :mod:`.results`: :class:`TransferResult` and its files ``RUN/attacks/<key>.{csv,json}``.
"""

from __future__ import annotations

from ..attacks.spec import AttackSpec, Start, parse_start, sweep
from .evaluation import evaluate_transfer
from .results import TransferResult, tidy
from .run_context import RunContext, load_run
from .sanity import sanity_warnings
from .starts import crn_start

__all__ = [
    "AttackSpec",
    "RunContext",
    "Start",
    "TransferResult",
    "crn_start",
    "evaluate_transfer",
    "load_run",
    "parse_start",
    "sanity_warnings",
    "sweep",
    "tidy",
]
