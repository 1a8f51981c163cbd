"""Inference-time attacks (design §§6-7): L-inf gradient-sign attacks as functions over tensors, their
start points, cross-round noise, the insider's adaptive attacks (EOT over downlink noise, surrogate ensembles),
a gradient-free attack (Square) for where gradients are masked, and sanity / gradient-masking checks of an
evaluation."""

from fedsafe.attacks.crn import CrnState, crn_absorbs_round, crn_alpha, crn_replay, crn_update
from fedsafe.attacks.ensemble import ensemble_gradient, ensemble_pgd
from fedsafe.attacks.eot import eot_gradient, eot_pgd, noisy_parameters
from fedsafe.attacks.iterative import (
    AttackResult,
    GradientFn,
    attack_in_batches,
    bim,
    centre_gradient,
    fgsm,
    input_gradient,
    input_memory_format,
    iterative_attack,
    pgd,
    resolve_labels,
)
from fedsafe.attacks.masking import MaskingReport, masking_checks, step_rule
from fedsafe.attacks.registry import (
    ADAPTIVE_ATTACKS,
    ATTACKS,
    QUERY_ATTACKS,
    get_adaptive_attack,
    get_attack,
    get_query_attack,
)
from fedsafe.attacks.spec import DEFAULT_EPS, DEFAULT_WINDOWS, AttackSpec, Start, sweep
from fedsafe.attacks.square import square_linf
from fedsafe.attacks.starts import project_start, uniform_start, zero_start
from fedsafe.models.inference import eval_mode, predict

__all__ = [
    "ADAPTIVE_ATTACKS",
    "ATTACKS",
    "AttackResult",
    "AttackSpec",
    "CrnState",
    "DEFAULT_EPS",
    "DEFAULT_WINDOWS",
    "GradientFn",
    "MaskingReport",
    "QUERY_ATTACKS",
    "attack_in_batches",
    "bim",
    "centre_gradient",
    "crn_absorbs_round",
    "crn_alpha",
    "crn_replay",
    "crn_update",
    "ensemble_gradient",
    "ensemble_pgd",
    "eot_gradient",
    "eot_pgd",
    "eval_mode",
    "fgsm",
    "get_adaptive_attack",
    "get_attack",
    "get_query_attack",
    "input_gradient",
    "input_memory_format",
    "iterative_attack",
    "masking_checks",
    "noisy_parameters",
    "pgd",
    "predict",
    "project_start",
    "resolve_labels",
    "Start",
    "step_rule",
    "square_linf",
    "sweep",
    "uniform_start",
    "zero_start",
]
