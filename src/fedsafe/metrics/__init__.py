"""Evaluation metrics (design §8): attack success and transferability matrices (attacker x target),
their aggregates, gradient alignment between models, and membership inference (loss attack, offline LiRA)."""

from fedsafe.metrics.alignment import alignment_matrix, gradient_alignment, gradient_cosine, input_gradients
from fedsafe.metrics.lira import lira_offline_scores, logit_confidence, model_logit_confidence, out_gaussian
from fedsafe.metrics.membership import (
    MembershipRoc,
    loss_scores,
    membership_roc,
    model_logits,
    per_example_loss,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from fedsafe.metrics.transfer import (
    TransferMatrices,
    TransferRow,
    TransferSummary,
    summarise,
    transfer_matrices,
    transfer_row,
)

__all__ = [
    "MembershipRoc",
    "TransferMatrices",
    "TransferRow",
    "TransferSummary",
    "alignment_matrix",
    "gradient_alignment",
    "gradient_cosine",
    "input_gradients",
    "lira_offline_scores",
    "logit_confidence",
    "loss_scores",
    "membership_roc",
    "model_logit_confidence",
    "model_logits",
    "out_gaussian",
    "per_example_loss",
    "roc_auc",
    "roc_curve",
    "summarise",
    "tpr_at_fpr",
    "transfer_matrices",
    "transfer_row",
]
