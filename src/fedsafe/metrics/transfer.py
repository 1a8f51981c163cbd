"""Attack success and transferability (design §8) as pure functions over predicted labels.

Attacker m crafts adversarial examples on its own test set X_m (n images) against its own model; every
client c is then evaluated on X_m and on the adversarial X_m. For one attacker the inputs are the predicted
labels ``clean_pred[c]`` and ``adv_pred[c]`` (n,) of every client c and the true labels (n,).

Per (attacker m, target c):

* ``clean_acc``   ACC_c on X_m.
* ``attack_acc``  accuracy of c on the adversarial examples.
* ``asr``         the authors' ASR: among the samples c classified correctly before the attack, the fraction
                  whose predicted label changes. Undefined (NaN) when c classified none correctly.
* ``asr_literal`` the papers' literal ASR: the fraction of all n whose predicted label changes.
* ``aetr``        AETR(m -> c): among the samples that fooled m's own model (its label changed) and that c
                  classified correctly, the fraction that also fool c (c's label changes). NaN when there are
                  no such samples. AETR(m -> m) is 1 by construction (or NaN) and is left out of the average.

Aggregates (:func:`summarise`), with ``self`` the cell (m, m):

* ASR self = mean over m of ASR(m -> m);
* ASR avg (benign) = mean over m of the mean over c != m of ASR(m -> c);
* AASR = mean over m of the mean over all c;
* AETR = mean over m of the mean over c != m of AETR(m -> c).

Undefined cells: a NaN cell is left out of its attacker's mean (nanmean), an attacker whose cells are all
NaN is left out of the mean over attackers, an aggregate with nothing defined is NaN, and the number of
undefined cells is reported beside the aggregates. The denominators of every ratio are kept as count matrices.

>>> y = np.array([0, 1, 1, 0])
>>> clean = np.array([[0, 1, 1, 0], [0, 1, 0, 0]])   # client 0 (the attacker), client 1
>>> adv = np.array([[1, 0, 1, 0], [1, 1, 0, 0]])
>>> row = transfer_row(clean, adv, y, attacker=0)
>>> row.asr.tolist(), row.aetr.tolist()
([0.5, 0.3333333333333333], [1.0, 0.5])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TransferMatrices", "TransferRow", "TransferSummary", "summarise", "transfer_matrices", "transfer_row"]


@dataclass(frozen=True)
class TransferRow:
    """The metrics of one attacker against every target c, each of shape (C,)."""

    attacker: int
    clean_acc: np.ndarray
    attack_acc: np.ndarray
    asr: np.ndarray
    asr_literal: np.ndarray
    aetr: np.ndarray
    n: int
    n_correct: np.ndarray  # denominator of asr
    n_aetr: np.ndarray  # denominator of aetr


@dataclass(frozen=True)
class TransferMatrices:
    """The metrics per (attacker, target), each (M, C); row i is attacker ``attackers[i]``."""

    attackers: tuple[int, ...]
    clean_acc: np.ndarray
    attack_acc: np.ndarray
    asr: np.ndarray
    asr_literal: np.ndarray
    aetr: np.ndarray
    n: np.ndarray  # (M,) size of each attacker's set
    n_correct: np.ndarray  # (M, C) denominators of asr
    n_aetr: np.ndarray  # (M, C) denominators of aetr

    def self_mask(self) -> np.ndarray:
        """(M, C) True at the attacker's own model."""
        mask = np.zeros(self.asr.shape, dtype=bool)
        mask[np.arange(len(self.attackers)), list(self.attackers)] = True
        return mask


@dataclass(frozen=True)
class TransferSummary:
    """Aggregates of :class:`TransferMatrices` (module docstring) and how many cells were undefined."""

    asr_self: float
    asr_avg_benign: float
    aasr: float
    aetr: float
    asr_self_literal: float
    asr_avg_benign_literal: float
    aasr_literal: float
    clean_acc: float  # mean over all (m, c)
    attack_acc: float  # mean over all (m, c)
    undefined_asr_cells: int
    undefined_aetr_cells: int  # off the diagonal only


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(den.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def transfer_row(clean_pred, adv_pred, labels, *, attacker: int) -> TransferRow:
    """Metrics of attacker ``attacker`` (a client index) from (C, n) clean / adversarial predictions of every
    client on the attacker's set and the (n,) true labels."""
    clean, adv, y = np.asarray(clean_pred), np.asarray(adv_pred), np.asarray(labels)
    if clean.ndim != 2 or clean.shape != adv.shape or y.shape != clean.shape[1:] or y.size == 0:
        raise ValueError(f"need (C, n) clean and adversarial predictions and (n,) labels with n > 0, got "
                         f"{clean.shape}, {adv.shape}, {y.shape}")
    if not 0 <= attacker < clean.shape[0]:
        raise ValueError(f"attacker must index one of the {clean.shape[0]} clients, got {attacker}")
    correct, changed = clean == y, clean != adv
    eligible = correct & changed[attacker]
    n_correct, n_aetr = correct.sum(1), eligible.sum(1)
    return TransferRow(
        attacker=int(attacker),
        clean_acc=correct.mean(1),
        attack_acc=(adv == y).mean(1),
        asr=_ratio((changed & correct).sum(1), n_correct),
        asr_literal=changed.mean(1),
        aetr=_ratio((changed & eligible).sum(1), n_aetr),
        n=int(y.size),
        n_correct=n_correct,
        n_aetr=n_aetr,
    )


def transfer_matrices(rows: Sequence[TransferRow]) -> TransferMatrices:
    """Stack the rows of several attackers (all against the same C targets) into (M, C) matrices."""
    if not rows or len({r.asr.shape for r in rows}) != 1:
        raise ValueError("need at least one row, all against the same number of targets")

    def stack(name: str) -> np.ndarray:
        return np.stack([getattr(r, name) for r in rows])

    return TransferMatrices(
        attackers=tuple(r.attacker for r in rows),
        clean_acc=stack("clean_acc"),
        attack_acc=stack("attack_acc"),
        asr=stack("asr"),
        asr_literal=stack("asr_literal"),
        aetr=stack("aetr"),
        n=np.array([r.n for r in rows]),
        n_correct=stack("n_correct"),
        n_aetr=stack("n_aetr"),
    )


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _mean_of_row_means(matrix: np.ndarray, keep: np.ndarray) -> float:
    return _nanmean(np.array([_nanmean(row[k]) for row, k in zip(matrix, keep, strict=True)]))


def summarise(m: TransferMatrices) -> TransferSummary:
    """The aggregates of the module docstring (nested nanmeans) and the counts of undefined cells."""
    own = m.self_mask()
    every = np.ones_like(own)
    return TransferSummary(
        asr_self=_nanmean(m.asr[own]),
        asr_avg_benign=_mean_of_row_means(m.asr, ~own),
        aasr=_mean_of_row_means(m.asr, every),
        aetr=_mean_of_row_means(m.aetr, ~own),
        asr_self_literal=_nanmean(m.asr_literal[own]),
        asr_avg_benign_literal=_mean_of_row_means(m.asr_literal, ~own),
        aasr_literal=_mean_of_row_means(m.asr_literal, every),
        clean_acc=_nanmean(m.clean_acc.ravel()),
        attack_acc=_nanmean(m.attack_acc.ravel()),
        undefined_asr_cells=int(np.isnan(m.asr).sum()),
        undefined_aetr_cells=int(np.isnan(m.aetr[~own]).sum()),
    )
