"""The tables and figures of the papers (design §9), one reproduction a file, and their registry.

==================  =========================================================================================
crn-table1          3 clients, downlink noise 0.01, online CRN (eps 0.05); PGD-1+CRN10 (CRN step eps/j and 0.001, each
                    beside its final-model control), PGD-20, PGD-40 at eps 0.05, alpha 0.001 and 2.5 eps/K: ACC,
                    AASR, time, gradient passes an image at attack time and in total
crn-table2          the same run; AETR of FGSM and PGD-40 x vanilla / CRN5 / CRN10
crn-fig2            the same run; PGD-20 (eps 0.05) +- CRN5/CRN10 at alpha 0.001 ... 0.02 and 2.5 eps/K; ASR benign
                    vs adversary
crn-fig3            the same run; FGSM and PGD-20 (alpha 0.005) +- CRN5/CRN10 at eps 0.01 ... 0.07
fedsafe-table1      one split (server set for f = 1); no defense / per-client adversarial training (s_D 0) /
                    Fed-Safe (s_D 0.01) at f = 0.2, and both defenses in the authors' LEAKY protocol; PGD-20,
                    eps 0.05 (not given by the paper), alpha ("Step") 0.005, 0.012, 0.017, 0.05
fedsafe-table2      Fed-Safe at f = 0.2 without uplink noise, with the papers' setting (C = 5 x the initial model
                    norm, s_U 0.001: accounted epsilon ~1e6, not DP) and with s_U for epsilon <= 10 (NbAFL
                    sensitivity); PGD-20, alpha eps/4 at eps 0.01, 0.03, 0.05, 0.07
fedsafe-fig3        both defenses at f in 0.1 ... 1.0 of |D_i| (f = 0.2: Table 1's runs); PGD-20 eps 0.05 alpha 0.005
==================  =========================================================================================

``REPRODUCTIONS`` is the registry (explicit: nothing registers itself); ``GROUPS`` names sets of them ("all", one
per paper). A new table is a new file declaring a :class:`~.base.Reproduction`, added here.

>>> [r.name for r in resolve(["crn", "fedsafe-table1"])][-2:]
['crn-fig3', 'fedsafe-table1']
"""

from __future__ import annotations

from collections.abc import Iterable

from .base import BuildInput, Built, Measurement, Options, Reproduction, Table
from .crn_fig2 import CRN_FIG2
from .crn_fig3 import CRN_FIG3
from .crn_table1 import CRN_TABLE1
from .crn_table2 import CRN_TABLE2
from .fedsafe_adaptive import FEDSAFE_ADAPTIVE
from .fedsafe_fig3 import FEDSAFE_FIG3
from .fedsafe_table1 import FEDSAFE_TABLE1
from .fedsafe_table2 import FEDSAFE_TABLE2

__all__ = ["GROUPS", "REPRODUCTIONS", "BuildInput", "Built", "Measurement", "Options", "Reproduction", "Table",
           "resolve"]

PAPER_TABLES = (FEDSAFE_TABLE1, FEDSAFE_TABLE2, FEDSAFE_FIG3, CRN_TABLE1, CRN_TABLE2, CRN_FIG2, CRN_FIG3)
"""The papers' tables and figures; the groups name these. ``fedsafe-adaptive`` is fedsafe's own experiment (an
attacker who knows the noise; membership inference): asked for by name only."""
REPRODUCTIONS: dict[str, Reproduction] = {r.name: r for r in (*PAPER_TABLES, FEDSAFE_ADAPTIVE)}
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(r.name for r in PAPER_TABLES),
    "fedsafe": tuple(r.name for r in PAPER_TABLES if r.name.startswith("fedsafe-")),  # the Fed-Safe paper
    "crn": tuple(r.name for r in PAPER_TABLES if r.name.startswith("crn-")),  # the CRN paper
}


def resolve(names: Iterable[str | Reproduction]) -> tuple[Reproduction, ...]:
    """Reproductions by name (a group expands), or given as objects; duplicates dropped, order kept."""
    out: dict[str, Reproduction] = {}
    for n in names:
        if isinstance(n, Reproduction):
            out[n.name] = n
        elif n in GROUPS:
            out.update((k, REPRODUCTIONS[k]) for k in GROUPS[n])
        elif n in REPRODUCTIONS:
            out[n] = REPRODUCTIONS[n]
        else:
            raise ValueError(f"unknown reproduction {n!r}; known: {', '.join([*REPRODUCTIONS, *GROUPS])}")
    if not out:
        raise ValueError("no reproduction given")
    return tuple(out.values())
