"""The names a config may choose from: one list per kind, below the config so that its ``Literal`` choices, the
registries that implement the names and the CLI's choice types all read the same tuple.

A registry (``DEFENSES`` in :mod:`fedsafe.defenses.defense_registry`, ``AGGREGATORS`` in
:mod:`fedsafe.federation.aggregators`, the profiles shipped in :mod:`fedsafe.profiles`) registers one
implementation against each of these names, in this order; the tests check that the keys and these lists are the
same. Plain strings only: this module imports nothing.

>>> DEFENSES[0], "fed-safe" in SERVER_DEFENSES, "fed-safe" in PER_CLIENT_DEFENSES
('none', True, True)
"""

from __future__ import annotations

__all__ = ["AGGREGATORS", "BYZANTINE_AGGREGATORS", "CLIENT_DEFENSES", "DEFENSES", "NORM_ACTIONS", "OPTIMIZERS",
           "PARTITIONS", "PER_CLIENT_DEFENSES", "PRECISIONS", "PROFILES", "SERVER_DEFENSES", "SPLIT_PARTITIONS"]

PROFILES = ("cpu", "paper", "paper-sgd")
"""The shipped profiles, each a ``fedsafe/profiles/<name>.yaml`` (the only place their values are written)."""

DEFENSES = ("none", "adversarial-training", "fed-safe", "client-adversarial-training", "adversarial-training-shared")
"""Every defense (design §5)."""
SERVER_DEFENSES = ("adversarial-training", "fed-safe", "adversarial-training-shared")
"""The defenses that adapt the global model on the server's images (``defense.fraction`` and ``defense.epochs``
apply)."""
PER_CLIENT_DEFENSES = ("adversarial-training", "fed-safe")
"""The server defenses that adapt one copy a client at every downlink (the shared variant adapts one model a
round)."""
CLIENT_DEFENSES = ("client-adversarial-training",)
"""The defenses that run PGD inside the clients' local training (every image costs steps + 1 passes)."""

AGGREGATORS = ("fedavg", "median", "trimmed-mean", "krum", "multi-krum")
"""The aggregation rules (design §3)."""
BYZANTINE_AGGREGATORS = ("krum", "multi-krum")
"""The rules that tolerate ``federation.byzantine`` clients (they need at least 2 f + 3 clients)."""
NORM_ACTIONS = ("flag", "clip", "reject")
"""What the upload screen does with an update norm above ``norm_factor`` x the median."""

PRECISIONS = ("fp32", "bf16", "auto")
"""Arithmetic of training, attacks and the CRN buffers; ``auto`` is bf16 where the hardware has it."""

OPTIMIZERS = ("sgd", "adam")
"""The local and server optimisers (``federation.client.make_optimizer``)."""
SPLIT_PARTITIONS = ("shards", "dirichlet", "iid")
"""The synthetic client partitions (``data.partition.PARTITIONS``)."""
PARTITIONS = (*SPLIT_PARTITIONS, "sites")
"""``splits.partition``: a synthetic partition, or ``sites``, the hospitals a sites CSV names."""
