"""Robust aggregators against Flower's reference implementations, hand-computed cases and robustness properties."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from fedsafe.federation.aggregators import (
    AGGREGATORS,
    aggregate_with,
    coordinate_median,
    krum,
    krum_scores,
    krum_select,
    multi_krum,
    trimmed_mean,
)
from fedsafe.federation.state import clone, fedavg

SHAPES = (("conv.weight", (2, 1, 3, 3)), ("conv.bias", (2,)), ("fc.weight", (3, 4)))


def random_states(n: int, seed: int, *, dtype: torch.dtype = torch.float64, scale: float = 1.0) -> list[
        OrderedDict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    return [OrderedDict((k, torch.from_numpy(rng.normal(size=shape) * scale).to(dtype)) for k, shape in SHAPES)
            for _ in range(n)]


def scalar_states(values: list[float]) -> list[dict[str, torch.Tensor]]:
    return [{"w": torch.tensor([v], dtype=torch.float64)} for v in values]


def to_flower(states, sizes=None):
    """Flower's input: a list of (NDArrays, num_examples)."""
    sizes = sizes or [1] * len(states)
    return [([v.numpy() for v in s.values()], int(size)) for s, size in zip(states, sizes, strict=True)]


def assert_state_close(ours, theirs, rtol=1e-12, atol=1e-12):
    assert len(ours) == len(theirs)
    for (key, value), expected in zip(ours.items(), theirs, strict=True):
        assert_allclose(value.numpy(), expected, rtol=rtol, atol=atol, err_msg=key)


@pytest.fixture(scope="module")
def flower():
    return pytest.importorskip("flwr.server.strategy.aggregate")


# --- reference: Flower's flwr.server.strategy.aggregate ---------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_median_matches_flower(flower, n, seed):
    states = random_states(n, seed)

    assert_state_close(coordinate_median(states), flower.aggregate_median(to_flower(states)))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), beta=st.floats(0.0, 0.49), seed=st.integers(0, 2**32 - 1))
def test_trimmed_mean_matches_flower(flower, n, beta, seed):
    states = random_states(n, seed)

    expected = flower.aggregate_trimmed_avg(to_flower(states), beta)

    assert_state_close(trimmed_mean(states, trim_fraction=beta), expected)


@settings(max_examples=25, deadline=None)
@given(f=st.integers(0, 3), extra=st.integers(0, 4), seed=st.integers(0, 2**32 - 1))
def test_krum_matches_flower(flower, f, extra, seed):
    states = random_states(2 * f + 3 + extra, seed)

    expected = flower.aggregate_krum(to_flower(states), num_malicious=f, to_keep=0)

    assert_state_close(krum(states, byzantine=f), expected)


@settings(max_examples=25, deadline=None)
@given(f=st.integers(0, 3), extra=st.integers(0, 4), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_weighted_multi_krum_matches_flower(flower, f, extra, data, seed):
    n = 2 * f + 3 + extra
    states = random_states(n, seed)
    sizes = data.draw(st.lists(st.integers(1, 500), min_size=n, max_size=n))
    m = data.draw(st.integers(1, n))

    expected = flower.aggregate_krum(to_flower(states, sizes), num_malicious=f, to_keep=m)

    assert_state_close(multi_krum(states, sizes, byzantine=f, m=m), expected)


# --- hand-computed tiny cases -----------------------------------------------------------------------------------

def test_median_of_odd_and_even_counts():
    assert coordinate_median(scalar_states([100.0, 1.0, 2.0]))["w"].item() == 2.0
    assert coordinate_median(scalar_states([3.0, 100.0, 1.0, 2.0]))["w"].item() == 2.5  # mean of the middle two


def test_trimmed_mean_drops_floor_beta_n_from_each_side():
    states = scalar_states([4.0, 100.0, 1.0, 3.0, 2.0])

    assert trimmed_mean(states, trim_fraction=0.2)["w"].item() == 3.0  # k = 1: mean(2, 3, 4)
    assert trimmed_mean(states, trim_fraction=0.19)["w"].item() == 22.0  # k = 0: the plain mean
    assert trimmed_mean(states, trim_fraction=0.4)["w"].item() == 3.0  # k = 2: the median


def test_krum_scores_and_selection_by_hand():
    # values 0, 1, 2, 10; f = 0: each score sums the squared distances to the n - f - 2 = 2 nearest others
    states = scalar_states([0.0, 1.0, 2.0, 10.0])

    scores = krum_scores(states, byzantine=0)

    assert scores.tolist() == [1 + 4, 1 + 1, 1 + 4, 64 + 81]
    assert krum_select(states, byzantine=0, m=3) == (1, 0, 2)  # the tie 0 / 2 goes to the lower index
    assert krum(states, byzantine=0)["w"].item() == 1.0
    assert multi_krum(states, byzantine=0, m=2)["w"].item() == 0.5
    assert multi_krum(states, [1, 3, 1, 1], byzantine=0, m=2)["w"].item() == 0.75  # (3 * 1 + 1 * 0) / 4
    assert multi_krum(states, byzantine=0)["w"].item() == pytest.approx(13 / 4)  # m = n - f = 4: the mean


def test_aggregate_with_reports_selected_positions_and_trimming():
    states = scalar_states([0.0, 1.0, 2.0, 10.0])

    _, k_info = aggregate_with("krum", states, None, byzantine=0)
    state, m_info = aggregate_with("multi-krum", states, [1, 3, 1, 1], byzantine=0, multi_krum_m=2)
    _, t_info = aggregate_with("trimmed-mean", states, [1, 1, 1, 1], trim_fraction=0.25)
    avg, avg_info = aggregate_with("fedavg", states, [1, 3, 1, 1])

    assert k_info["selected"] == [1] and k_info["scores"] == [5.0, 2.0, 5.0, 145.0]
    assert m_info["selected"] == [1, 0] and m_info["weighted"] and state["w"].item() == 0.75
    assert t_info["trimmed_per_side"] == 1 and t_info["weighted"] is False
    assert avg_info == {} and avg["w"].item() == fedavg(states, [1, 3, 1, 1])["w"].item() == 2.5  # 15 / 6


# --- robustness: one poisoned client does not leave the benign range --------------------------------------------

@pytest.mark.parametrize("poison", [1e6, -1e6, float(2**60)])
@pytest.mark.parametrize("where", [0, 2, 4])
def test_one_poisoned_client_cannot_move_robust_results_out_of_the_benign_range(poison, where):
    benign = random_states(4, seed=11)
    poisoned = OrderedDict((k, torch.full_like(v, poison)) for k, v in benign[0].items())
    states = benign[:where] + [poisoned] + benign[where:]
    low = {k: torch.stack([s[k] for s in benign]).amin(0) for k in benign[0]}
    high = {k: torch.stack([s[k] for s in benign]).amax(0) for k in benign[0]}

    results = {
        "median": coordinate_median(states),
        "trimmed-mean": trimmed_mean(states, trim_fraction=0.2),
        "krum": krum(states, byzantine=1),
        "multi-krum": multi_krum(states, byzantine=1),
    }

    for name, result in results.items():
        for k in result:
            assert torch.all((low[k] <= result[k]) & (result[k] <= high[k])), (name, k)
    assert where not in krum_select(states, byzantine=1, m=4)
    mean = fedavg(states)  # the reason for the options: plain FedAvg is dragged out of the range
    assert not torch.all((low["fc.weight"] <= mean["fc.weight"]) & (mean["fc.weight"] <= high["fc.weight"]))


# --- conventions ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_every_rule_keeps_dtypes_and_leaves_inputs_untouched(name):
    states = [OrderedDict(a=s["fc.weight"].float(), b=s["conv.bias"].to(torch.bfloat16), c=torch.tensor([i]))
              for i, s in enumerate(random_states(5, seed=3))]
    before = [clone(s) for s in states]

    out, info = aggregate_with(name, states, [1, 2, 3, 4, 5], trim_fraction=0.2, byzantine=1, multi_krum_m=2)

    assert [v.dtype for v in out.values()] == [torch.float32, torch.bfloat16, torch.int64]
    assert list(out) == ["a", "b", "c"]
    for s, b in zip(states, before, strict=True):
        assert all(torch.equal(s[k], b[k]) for k in s)
    again, info_again = aggregate_with(name, states, [1, 2, 3, 4, 5], trim_fraction=0.2, byzantine=1,
                                       multi_krum_m=2)
    assert all(torch.equal(out[k], again[k]) for k in out) and info == info_again


def test_float64_accumulation_of_float32_entries():
    # 1e8 + 1 is not a float32: summed in float32 the 1 is lost and the mean would be 0, not 1/3.
    states = [{"w": torch.tensor([v], dtype=torch.float32)} for v in (1e8, 1.0, -1e8)]

    result = trimmed_mean(states, trim_fraction=0.0)["w"]

    assert result.dtype == torch.float32
    assert result.item() == torch.tensor(1 / 3, dtype=torch.float32).item()


def test_registry_implements_exactly_the_config_names():
    """The config's choices (fedsafe.names) and the registry's keys are one list, in one order."""
    from fedsafe.config import FederationConfig
    from fedsafe.names import AGGREGATORS as NAMES

    assert tuple(AGGREGATORS) == NAMES
    assert FederationConfig.model_fields["aggregator"].annotation.__args__ == NAMES


# --- bad input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "message"), [
    (lambda s: coordinate_median([]), "at least one state"),
    (lambda s: aggregate_with("krum", [], None), "at least one state"),
    (lambda s: coordinate_median([s[0], {"x": s[1]["w"]}]), "different keys"),
    (lambda s: trimmed_mean([s[0], {"w": torch.zeros(2, dtype=torch.float64)}], trim_fraction=0.1), "shape"),
    (lambda s: trimmed_mean(s, trim_fraction=0.5), "trim_fraction"),
    (lambda s: trimmed_mean(s, trim_fraction=-0.1), "trim_fraction"),
    (lambda s: krum(s, byzantine=1), "n > 2f \\+ 2"),
    (lambda s: krum(s[:2], byzantine=0), "n > 2f \\+ 2"),
    (lambda s: krum(s, byzantine=-1), "byzantine"),
    (lambda s: multi_krum(s, byzantine=0, m=5), "cannot exceed"),
    (lambda s: multi_krum(s, byzantine=0, m=0), "multi_krum_m"),
    (lambda s: aggregate_with("mean", s, None), "unknown aggregator"),
    (lambda s: aggregate_with("median", s, [1.0, 2.0]), "4 states but 2 weights"),
])
def test_bad_input_raises_a_value_error_with_a_sentence(call, message):
    states = scalar_states([0.0, 1.0, 2.0, 3.0])

    with pytest.raises(ValueError, match=message):
        call(states)
