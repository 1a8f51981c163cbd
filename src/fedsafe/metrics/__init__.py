"""Evaluation metrics (SPEC section 8): attack success and transferability matrices (attacker x target),
their aggregates, and gradient alignment between models."""

from fedsafe.metrics.alignment import alignment_matrix, gradient_alignment, gradient_cosine, input_gradients
from fedsafe.metrics.transfer import (
    TransferMatrices,
    TransferRow,
    TransferSummary,
    summarise,
    transfer_matrices,
    transfer_row,
)

__all__ = [
    "TransferMatrices",
    "TransferRow",
    "TransferSummary",
    "alignment_matrix",
    "gradient_alignment",
    "gradient_cosine",
    "input_gradients",
    "summarise",
    "transfer_matrices",
    "transfer_row",
]
