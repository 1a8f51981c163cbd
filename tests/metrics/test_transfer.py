"""The transfer metrics on small hand-worked cases (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsafe.metrics import summarise, transfer_matrices, transfer_row

NAN = math.nan

# Attacker 0. Client 2 classifies nothing correctly: its ASR and AETR are undefined.
Y0 = [0, 1, 0, 1]
CLEAN0 = [[0, 1, 0, 1],   # c0: all correct
          [0, 1, 1, 1],   # c1: correct T T F T
          [1, 0, 1, 0]]   # c2: none correct
ADV0 = [[1, 0, 0, 1],     # c0 changed T T F F  (= fooled own model)
        [1, 1, 0, 0],     # c1 changed T F T T
        [1, 1, 1, 0]]     # c2 changed F T F F
# Attacker 2.
Y2 = [1, 1, 0, 0]
CLEAN2 = [[1, 1, 0, 0],   # c0: all correct
          [1, 0, 0, 0],   # c1: correct T F T T
          [1, 1, 0, 1]]   # c2: correct T T T F
ADV2 = [[1, 0, 1, 0],     # c0 changed F T T F
        [0, 0, 0, 1],     # c1 changed T F F T
        [0, 0, 0, 0]]     # c2 changed T T F T  (= fooled own model)


@pytest.fixture
def matrices():
    return transfer_matrices([transfer_row(CLEAN0, ADV0, Y0, attacker=0), transfer_row(CLEAN2, ADV2, Y2, attacker=2)])


def test_row_against_hand_computation():
    row = transfer_row(CLEAN0, ADV0, Y0, attacker=0)
    np.testing.assert_allclose(row.clean_acc, [1, 0.75, 0])
    np.testing.assert_allclose(row.attack_acc, [0.5, 0.5, 0.25])
    np.testing.assert_allclose(row.asr, [2 / 4, 2 / 3, NAN])          # changed & correct / correct
    np.testing.assert_allclose(row.asr_literal, [0.5, 0.75, 0.25])     # changed / n
    # eligible = fooled own (T T F F) & correct: c0 T T F F, c1 T T F F, c2 none
    np.testing.assert_allclose(row.aetr, [2 / 2, 1 / 2, NAN])
    assert row.n_correct.tolist() == [4, 3, 0] and row.n_aetr.tolist() == [2, 2, 0] and row.n == 4


def test_matrices_against_hand_computation(matrices):
    m = matrices
    assert m.attackers == (0, 2)
    np.testing.assert_allclose(m.asr, [[1 / 2, 2 / 3, NAN], [1 / 2, 2 / 3, 2 / 3]])
    np.testing.assert_allclose(m.asr_literal, [[0.5, 0.75, 0.25], [0.5, 0.5, 0.75]])
    # attacker 2: fooled own = T T F T; eligible c0 T T F T (c0 changed F T . F -> 1/3), c1 T F F T (2/2),
    # c2 T T F F (2/2)
    np.testing.assert_allclose(m.aetr, [[1, 1 / 2, NAN], [1 / 3, 1, 1]])
    np.testing.assert_allclose(m.clean_acc, [[1, 0.75, 0], [1, 0.75, 0.75]])
    np.testing.assert_allclose(m.attack_acc, [[0.5, 0.5, 0.25], [0.5, 0.25, 0.5]])
    assert m.n_correct.tolist() == [[4, 3, 0], [4, 3, 3]]
    assert m.n_aetr.tolist() == [[2, 2, 0], [3, 2, 2]]
    assert m.n.tolist() == [4, 4]
    assert m.self_mask().tolist() == [[True, False, False], [False, False, True]]


def test_summary_against_hand_computation(matrices):
    s = summarise(matrices)
    assert s.asr_self == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert s.asr_avg_benign == pytest.approx((2 / 3 + (1 / 2 + 2 / 3) / 2) / 2)  # row 0 keeps only c1
    assert s.aasr == pytest.approx(((1 / 2 + 2 / 3) / 2 + (1 / 2 + 2 / 3 + 2 / 3) / 3) / 2)
    assert s.aetr == pytest.approx((1 / 2 + (1 / 3 + 1) / 2) / 2)
    assert s.asr_self_literal == pytest.approx((0.5 + 0.75) / 2)
    assert s.asr_avg_benign_literal == pytest.approx(0.5)
    assert s.aasr_literal == pytest.approx((0.5 + (0.5 + 0.5 + 0.75) / 3) / 2)
    assert s.clean_acc == pytest.approx(4.25 / 6)
    assert s.attack_acc == pytest.approx(2.5 / 6)
    assert (s.undefined_asr_cells, s.undefined_aetr_cells) == (1, 1)


def test_aggregates_are_nan_when_nothing_is_defined():
    # one client, never correct: no ratio is defined, and there is no benign target at all
    s = summarise(transfer_matrices([transfer_row([[1, 1]], [[0, 1]], [0, 0], attacker=0)]))
    assert math.isnan(s.asr_self) and math.isnan(s.aasr) and math.isnan(s.asr_avg_benign)
    assert math.isnan(s.aetr) and s.undefined_asr_cells == 1
    assert s.asr_self_literal == 0.5


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="attacker"):
        transfer_row(CLEAN0, ADV0, Y0, attacker=3)
    with pytest.raises(ValueError, match=r"\(C, n\)"):
        transfer_row(CLEAN0, ADV0, Y0[:3], attacker=0)
    with pytest.raises(ValueError, match=r"\(C, n\)"):
        transfer_row([[]], [[]], [], attacker=0)
    with pytest.raises(ValueError, match="same number of targets"):
        transfer_matrices([transfer_row(CLEAN0, ADV0, Y0, attacker=0), transfer_row([[0]], [[1]], [0], attacker=0)])
    with pytest.raises(ValueError):
        transfer_matrices([])


def test_results_are_frozen(matrices):
    with pytest.raises(AttributeError):
        matrices.asr = None
