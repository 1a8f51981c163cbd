"""Inference-time attacks (SPEC sections 6-7): L-inf gradient-sign attacks as functions over tensors, their
start points, cross-round noise, and sanity checks of an evaluation."""

from fedsafe.attacks.crn import CrnState, crn_absorbs_round, crn_alpha, crn_replay, crn_update
from fedsafe.attacks.iterative import (
    AttackResult,
    attack_in_batches,
    bim,
    centre_gradient,
    eval_mode,
    fgsm,
    iterative_attack,
    pgd,
    predict,
    resolve_labels,
)
from fedsafe.attacks.registry import ATTACKS, get_attack
from fedsafe.attacks.starts import project_start, uniform_start, zero_start

__all__ = [
    "ATTACKS",
    "AttackResult",
    "CrnState",
    "attack_in_batches",
    "bim",
    "centre_gradient",
    "crn_absorbs_round",
    "crn_alpha",
    "crn_replay",
    "crn_update",
    "eval_mode",
    "fgsm",
    "get_attack",
    "iterative_attack",
    "pgd",
    "predict",
    "project_start",
    "resolve_labels",
    "uniform_start",
    "zero_start",
]
