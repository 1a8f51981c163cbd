"""The settings several reproductions share, as typed config deltas (design §9): three clients and FedAvg;
the CRN paper's run (downlink noise 0.01, online CRN at the papers' eps and windows); the Fed-Safe paper's three
methods on one split. Settings of one reproduction only live in its own file.

The Fed-Safe reproductions share one split (:data:`FS_SPLIT`): its server set holds f = 1 of the largest client's
training set (``splits.server_for_fraction``, design §5), so that every f of Figure 3 is a real f x |D_i| and every
Fed-Safe training (with or without a defense, at any f) sees the same clients and attack sets.

>>> CRN_RUN.describe()
'3 clients, defense none, downlink noise s_D 0.01, online CRN, CRN eps 0.05, CRN windows 5, 10'
>>> cfg = with_delta(ExperimentConfig(), at_fraction(FED_SAFE))
>>> cfg.defense.name, cfg.defense.fraction, cfg.splits.server_for_fraction
('fed-safe', 0.2, 1.0)
"""

from __future__ import annotations

from typing import Any

from ...attacks.spec import DEFAULT_EPS, DEFAULT_WINDOWS
from ...config import ExperimentConfig
from ...training.delta import ConfigDelta

__all__ = ["ADV_TRAINING", "AT", "AT_LEAKY", "CRN_RUN", "DIRICHLET", "DN", "DN_LEAKY", "FED_SAFE", "FS_ATTACK_STEPS",
           "FS_EPS", "FS_FRACTION", "FS_SPLIT", "LEAKY", "METHODS", "NONE", "NO_DEFENSE", "SENSITIVITY_SUFFIX",
           "THREE_CLIENTS", "at_fraction", "sensitivity_note", "with_delta"]

THREE_CLIENTS = ConfigDelta.of(splits={"num_clients": 3})
"""Both papers: three clients, the attacker role cycling over all of them."""

CRN_RUN = THREE_CLIENTS | ConfigDelta.of(defense={"name": "none"}, federation={"downlink_noise": 0.01},
                                         crn={"enabled": True, "eps": DEFAULT_EPS, "windows": DEFAULT_WINDOWS})
"""The CRN paper's federation (its four reproductions train this one run)."""

FS_SPLIT = ConfigDelta.of(splits={"server_for_fraction": 1.0})
"""The Fed-Safe reproductions' one split: a server set that holds f = 1 of the largest |D_i|."""
FS_FRACTION = 0.2
"""The paper's "20% of the training samples" (Fed-Safe, Section 4): f of Tables 1 and 2."""

_FS_BASE = THREE_CLIENTS | FS_SPLIT | ConfigDelta.of(crn={"enabled": False})
NO_DEFENSE = _FS_BASE | ConfigDelta.of(defense={"name": "none"}, federation={"downlink_noise": 0.0})
ADV_TRAINING = _FS_BASE | ConfigDelta.of(defense={"name": "adversarial-training"}, federation={"downlink_noise": 0.0})
"""Per-client adversarial training (each client's copy of the clean global model adapted with its own draws: the
authors' baseline, = Fed-Safe with s_D = 0). The shared-model variant never decides a transfer verdict (design §5)."""
FED_SAFE = _FS_BASE | ConfigDelta.of(defense={"name": "fed-safe"}, federation={"downlink_noise": 0.01})
LEAKY = ConfigDelta.of(defense={"adaptation_data": "attack-sets"})
"""The authors' protocol, a labelled variant: the server adapts on the clients' attack sets themselves."""
DIRICHLET = ConfigDelta.of(splits={"partition": "dirichlet", "dirichlet_alpha": 0.5})
"""The sensitivity partition: Dirichlet(0.5) over the classes, not the papers' shards (where the shard split leaves
too few matched seeds for a verdict, design §11; docs/results/did-not-learn.md)."""
SENSITIVITY_SUFFIX = " [Dirichlet 0.5]"
"""Appended to an arm's name on the sensitivity partition."""


def sensitivity_note(also: str = "") -> str:
    """What a SENSITIVITY table's rows are and are not (Fed-Safe Tables 1 and 2); ``also``: a clause of the table's
    own (e.g. how its noise was calibrated on this split)."""
    return ("The papers' shard split can leave a client with almost no image of one class; the cpu-profile runs may "
            "then stay at the majority class, which leaves too few matched seeds for a verdict "
            "(docs/results/did-not-learn.md). These rows split the same pool by a Dirichlet(0.5) draw over the "
            f"classes instead, same seeds, same attacks{also}; they ask the same question on another partition (with "
            "two classes a Dirichlet(0.5) draw can be as lopsided, so whether they answer it depends on how many of "
            "their seeds learn: see their claims) and never replace the main table.")

AT, DN, NONE = "adversarial training", "distributed noise (Fed-Safe)", "no defense (FedAvg)"
AT_LEAKY, DN_LEAKY = "adversarial training, LEAKY", "distributed noise, LEAKY"
METHODS = {AT: ADV_TRAINING, DN: FED_SAFE}
"""The Fed-Safe paper's two defenses, by their names in its tables."""

FS_EPS, FS_ATTACK_STEPS = DEFAULT_EPS, 20
"""The Fed-Safe paper gives the PGD step but not eps nor the number of steps: these (named in every output)."""


def at_fraction(delta: ConfigDelta, fraction: float = FS_FRACTION) -> ConfigDelta:
    """``delta`` with the defense's fraction f (client i adapts on round(f |D_i|) server images)."""
    return delta | ConfigDelta.of(defense={"fraction": fraction})


def with_delta(cfg: ExperimentConfig, delta: ConfigDelta) -> ExperimentConfig:
    """``cfg`` with ``delta``'s settings applied (validated again as a whole)."""
    data: dict[str, Any] = cfg.model_dump()
    for path, value in delta.items:
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return ExperimentConfig.model_validate(data)
