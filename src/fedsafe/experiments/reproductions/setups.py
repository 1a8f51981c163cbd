"""The settings several reproductions share, as typed config deltas (SPEC section 9): three clients and FedAvg;
the CRN paper's run (downlink noise 0.01, online CRN at the papers' eps and windows); the Fed-Safe paper's three
methods. Settings of one reproduction only live in its own file.

>>> CRN_RUN.describe()
'3 clients, defense none, downlink noise s_D 0.01, online CRN, CRN eps 0.05, CRN windows 5, 10'
"""

from __future__ import annotations

from ...attacks.spec import DEFAULT_EPS, DEFAULT_WINDOWS
from ..delta import ConfigDelta

__all__ = ["AT", "ADV_TRAINING", "CRN_RUN", "DN", "FED_SAFE", "FS_ATTACK_STEPS", "FS_EPS", "METHODS", "NONE",
           "NO_DEFENSE", "THREE_CLIENTS"]

THREE_CLIENTS = ConfigDelta.of(splits={"num_clients": 3})
"""Both papers: three clients, the attacker role cycling over all of them."""

CRN_RUN = THREE_CLIENTS | ConfigDelta.of(defense={"name": "none"}, federation={"downlink_noise": 0.01},
                                         crn={"enabled": True, "eps": DEFAULT_EPS, "windows": DEFAULT_WINDOWS})
"""The CRN paper's federation (its four reproductions train this one run)."""

_FS_BASE = THREE_CLIENTS | ConfigDelta.of(crn={"enabled": False})
NO_DEFENSE = _FS_BASE | ConfigDelta.of(defense={"name": "none"}, federation={"downlink_noise": 0.0})
ADV_TRAINING = _FS_BASE | ConfigDelta.of(defense={"name": "adversarial-training"}, federation={"downlink_noise": 0.0})
FED_SAFE = _FS_BASE | ConfigDelta.of(defense={"name": "fed-safe"}, federation={"downlink_noise": 0.01})

AT, DN, NONE = "adversarial training", "distributed noise (Fed-Safe)", "no defense (FedAvg)"
METHODS = {AT: ADV_TRAINING, DN: FED_SAFE}
"""The Fed-Safe paper's two defenses, by their names in its tables."""

FS_EPS, FS_ATTACK_STEPS = DEFAULT_EPS, 20
"""The Fed-Safe paper gives the PGD step but not eps nor the number of steps: these (named in every output)."""
