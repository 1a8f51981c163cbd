"""Defaults derived from a config, resolved in one place: the run that uses them and the cost estimates that
predict it call the same function, so they cannot drift apart.

>>> from fedsafe.config import ExperimentConfig
>>> cfg = ExperimentConfig()
>>> crn_steps(cfg) == cfg.train.local_epochs, defense_alpha(cfg.defense) == cfg.defense.eps / 6
(True, True)
>>> server_set_request(cfg.splits.model_copy(update={"server_for_fraction": 1.0}), 1000)
137
"""

from __future__ import annotations

import math

from .config import DefenseConfig, ExperimentConfig, SplitConfig

__all__ = ["ATTACK_BATCH_SIZE", "ATTACK_PRECISION", "LEARN_MARGIN", "LEARN_MARGIN_TEXT", "crn_steps", "defense_alpha",
           "global_test_count", "server_set_request"]

ATTACK_BATCH_SIZE = 100
"""Images attacked at a time: the papers' "one batch", one client's attack set of 100 images."""
ATTACK_PRECISION = "fp32"
"""The attacks' (and their sanity checks') arithmetic unless a caller names another: exact, as the tables are."""
LEARN_MARGIN = 0.02
"""A model within this much of the majority-class rate of its test set did not learn (design §11)."""
LEARN_MARGIN_TEXT = f"{LEARN_MARGIN * 100:g} points"
"""The margin as the warnings and pages say it ("2 points")."""


def crn_steps(cfg: ExperimentConfig) -> int:
    """j, the CRN steps a round: ``crn.steps``, else the number of local epochs (the authors: j = E; design §7)."""
    return int(cfg.crn.steps or cfg.train.local_epochs)


def defense_alpha(defense: DefenseConfig) -> float:
    """The defense's PGD step: ``defense.alpha``, else eps / 6 (the authors')."""
    return defense.alpha if defense.alpha is not None else defense.eps / 6


def global_test_count(splits: SplitConfig, n: int) -> int:
    """Images of the global test set in a pool of ``n``: ``global_test_size`` if >= 1, else that fraction of ``n``."""
    g = splits.global_test_size
    return int(g) if g >= 1 else round(g * n)


def server_set_request(splits: SplitConfig, n: int) -> int | float:
    """The server set the splits are asked for in a pool of ``n`` images: ``server_size`` as given (a count if
    >= 1, a fraction of the pool below), or with ``server_for_fraction`` F the fixed point S = F (rest - S) / N of
    the pool left after the held-out sets (design §5). The run then raises S until the largest client's
    round(F |D_i|) fits (the partition does not cut the training data into exactly equal parts): this is the run's
    first request and the cost estimate's server set."""
    s = splits
    if s.server_for_fraction is None:
        return int(s.server_size) if s.server_size >= 1 else float(s.server_size)
    rest = n - global_test_count(s, n) - s.num_clients * s.client_test_size
    return max(1, math.floor(s.server_for_fraction * rest / (s.num_clients + s.server_for_fraction)))
