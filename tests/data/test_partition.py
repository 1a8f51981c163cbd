import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsafe.data.partition import (
    PARTITIONS,
    dirichlet_partition,
    iid_partition,
    partition,
    shard_partition,
)
from fedsafe.seeding import numpy_rng


def _balanced(n_per_class: int, num_classes: int = 2) -> np.ndarray:
    return np.repeat(np.arange(num_classes), n_per_class)


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    flat = np.concatenate(parts)
    assert flat.dtype == np.int64
    assert len(flat) == n
    np.testing.assert_array_equal(np.sort(flat), np.arange(n))
    for p in parts:
        np.testing.assert_array_equal(p, np.sort(p))


def _majority(labels: np.ndarray, part: np.ndarray) -> float:
    return np.bincount(labels[part]).max() / len(part)


RUNS = {
    "shards": {"num_shards": 15},
    "dirichlet": {"alpha": 0.5},
    "iid": {},
}


@pytest.mark.parametrize("name", sorted(PARTITIONS))
@pytest.mark.parametrize("n", [300, 301, 314])
def test_every_partition_covers_each_index_exactly_once(name: str, n: int) -> None:
    labels = numpy_rng(1, "labels").integers(0, 4, size=n)
    parts = partition(name, labels, 3, numpy_rng(1, "part", n), **RUNS[name])
    assert len(parts) == 3
    _assert_exact_cover(parts, n)


@pytest.mark.parametrize("name", sorted(PARTITIONS))
def test_same_seed_same_result_and_other_seed_differs(name: str) -> None:
    labels = numpy_rng(0, "labels").integers(0, 2, size=200)
    a = partition(name, labels, 3, numpy_rng(7, "part"), **RUNS[name])
    b = partition(name, labels, 3, numpy_rng(7, "part"), **RUNS[name])
    c = partition(name, labels, 3, numpy_rng(8, "part"), **RUNS[name])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_unknown_partition_name_raises() -> None:
    with pytest.raises(ValueError, match="Unknown partition"):
        partition("pathological", np.zeros(4, int), 2, numpy_rng(0, "p"))


def test_shards_each_client_gets_s_over_n_shards() -> None:
    labels = _balanced(75)  # 150 items, S = 15: shards of exactly 10
    order = np.argsort(labels, kind="stable")
    shards = [set(s.tolist()) for s in np.array_split(order, 15)]
    parts = shard_partition(labels, 3, 15, numpy_rng(3, "shards"))
    for p in parts:
        owned = [s for s in shards if s <= set(p.tolist())]
        assert len(owned) == 5
        assert sum(len(s) for s in owned) == len(p) == 50


def test_shards_are_label_skewed_on_a_balanced_two_class_set() -> None:
    labels = _balanced(150)
    for seed in range(5):
        parts = shard_partition(labels, 3, 15, numpy_rng(seed, "shards"))
        # 5 shards of 20 per client out of 7.5 shards per class: some client holds >= 3 shards of one class
        assert max(_majority(labels, p) for p in parts) >= 0.6


def test_shards_with_one_shard_per_client_are_pure() -> None:
    labels = _balanced(30, num_classes=3)
    parts = shard_partition(labels, 3, 3, numpy_rng(0, "shards"))
    assert sorted(len(np.unique(labels[p])) for p in parts) == [1, 1, 1]


def test_shards_remainder_is_spread_deterministically_and_nothing_dropped() -> None:
    labels = _balanced(51)  # 102 = 15 * 6 + 12: twelve shards of 7, three of 6
    parts = shard_partition(labels, 3, 15, numpy_rng(0, "shards"))
    _assert_exact_cover(parts, 102)
    assert all(30 <= len(p) <= 35 for p in parts)


def test_shards_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="divisible"):
        shard_partition(_balanced(20), 4, 15, numpy_rng(0, "s"))
    with pytest.raises(ValueError, match="non-empty shards"):
        shard_partition(_balanced(5), 3, 15, numpy_rng(0, "s"))


def test_dirichlet_small_alpha_is_skewed_and_huge_alpha_near_iid() -> None:
    labels = _balanced(500)
    skewed = dirichlet_partition(labels, 3, 0.05, numpy_rng(0, "dir"), min_size=10)
    near_iid = dirichlet_partition(labels, 3, 1e5, numpy_rng(0, "dir"))
    assert np.mean([_majority(labels, p) for p in skewed]) > 0.85
    assert all(_majority(labels, p) < 0.55 for p in near_iid)
    assert all(abs(len(p) - 1000 / 3) < 20 for p in near_iid)


def test_dirichlet_respects_min_size() -> None:
    labels = _balanced(50)
    parts = dirichlet_partition(labels, 5, 0.1, numpy_rng(2, "dir"), min_size=8)
    assert min(len(p) for p in parts) >= 8
    _assert_exact_cover(parts, 100)


def test_dirichlet_gives_up_with_a_sentence() -> None:
    with pytest.raises(ValueError, match="tries"):
        dirichlet_partition(_balanced(50), 4, 0.01, numpy_rng(0, "dir"), min_size=25, max_tries=3)
    with pytest.raises(ValueError, match="at least"):
        dirichlet_partition(_balanced(5), 4, 1.0, numpy_rng(0, "dir"), min_size=3)
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_partition(_balanced(5), 2, 0.0, numpy_rng(0, "dir"))


def test_iid_sizes_differ_by_at_most_one_and_classes_mix() -> None:
    labels = _balanced(500)
    parts = iid_partition(labels, 3, numpy_rng(0, "iid"))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert all(_majority(labels, p) < 0.6 for p in parts)
    with pytest.raises(ValueError):
        iid_partition(labels[:2], 3, numpy_rng(0, "iid"))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(15, 400),
    num_classes=st.integers(1, 5),
    num_clients=st.sampled_from([1, 3, 5]),
    seed=st.integers(0, 2**16),
)
def test_property_all_partitions_are_exact_covers(n: int, num_classes: int, num_clients: int, seed: int) -> None:
    labels = numpy_rng(seed, "labels").integers(0, num_classes, size=n)
    _assert_exact_cover(shard_partition(labels, num_clients, 15, numpy_rng(seed, "s")), n)
    _assert_exact_cover(iid_partition(labels, num_clients, numpy_rng(seed, "i")), n)
    _assert_exact_cover(dirichlet_partition(labels, num_clients, 1.0, numpy_rng(seed, "d")), n)
