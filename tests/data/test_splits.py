import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsafe.data.splits import Splits, make_splits
from fedsafe.data.stratify import server_fraction, stratified_counts
from fedsafe.seeding import numpy_rng

# the de-duplicated meningioma task of design §1: no_tumor 352, meningioma 927
MENINGIOMA = np.repeat(np.array([0, 1]), [352, 927])
NAMES = ("no_tumor", "meningioma_tumor")


def _shuffled(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    return numpy_rng(seed, "shuffle-labels").permutation(labels)


def _assert_partition_of_pool(s: Splits, n: int) -> None:
    s.check_disjoint()
    np.testing.assert_array_equal(s.all_indices(), np.arange(n))


def _assert_stratified(labels: np.ndarray, idx: np.ndarray) -> None:
    pool = np.bincount(labels, minlength=labels.max() + 1)
    got = np.bincount(labels[idx], minlength=len(pool))
    ideal = len(idx) * pool / len(labels)
    assert np.all(np.abs(got - ideal) < 1 + 1e-9), (got, ideal)


def test_meningioma_splits_are_disjoint_cover_and_stratified() -> None:
    labels = _shuffled(MENINGIOMA)
    s = make_splits(
        labels, num_clients=3, server_size=0.1, global_test_size=0.1, rng=numpy_rng(0, "splits")
    )
    _assert_partition_of_pool(s, len(labels))
    assert len(s.global_test) == len(s.server) == 128
    assert [len(t) for t in s.client_test] == [100, 100, 100]
    assert s.notes == ()
    for idx in (s.global_test, s.server, *s.client_test):
        _assert_stratified(labels, idx)
    report = s.to_report(labels, NAMES)
    assert set(report) == {"global_test", "server"} | {f"client{i}_{k}" for i in range(3) for k in ("test", "train")}
    assert sum(sum(v.values()) for v in report.values()) == len(labels)
    assert report["client0_test"]["no_tumor"] in (27, 28)  # 100 * 352 / 1279 = 27.5


def test_same_seed_same_splits_and_other_seed_differs() -> None:
    labels = _shuffled(MENINGIOMA)
    kw = {"num_clients": 3, "server_size": 200, "global_test_size": 150}
    a = make_splits(labels, rng=numpy_rng(4, "splits"), **kw)
    b = make_splits(labels, rng=numpy_rng(4, "splits"), **kw)
    c = make_splits(labels, rng=numpy_rng(5, "splits"), **kw)
    for name, idx in a.named_sets().items():
        np.testing.assert_array_equal(idx, b.named_sets()[name])
    assert not np.array_equal(a.global_test, c.global_test)


def test_global_test_depends_only_on_seed_and_its_size() -> None:
    labels = _shuffled(MENINGIOMA)
    a = make_splits(labels, num_clients=3, server_size=100, global_test_size=150, rng=numpy_rng(1, "s"))
    b = make_splits(
        labels, num_clients=5, client_test_size=50, server_size=300, global_test_size=150,
        partition="iid", rng=numpy_rng(1, "s"),
    )
    np.testing.assert_array_equal(a.global_test, b.global_test)


def test_client_training_follows_the_shard_partition() -> None:
    labels = _shuffled(MENINGIOMA)
    s = make_splits(labels, num_clients=3, server_size=100, global_test_size=100, rng=numpy_rng(0, "s"))
    train_total = sum(len(t) for t in s.client_train)
    assert train_total == len(labels) - 100 - 100 - 300
    # 779 training items in 15 shards: 14 of 52 and 1 of 51; 5 shards per client
    assert sorted(len(t) for t in s.client_train) == [5 * 52 - 1, 5 * 52, 5 * 52]


def test_shrinks_with_a_note_when_asked_too_much() -> None:
    labels = np.repeat([0, 1], [60, 40])
    s = make_splits(
        labels, num_clients=3, client_test_size=30, server_size=20, global_test_size=0.2,
        rng=numpy_rng(0, "s"),
    )
    _assert_partition_of_pool(s, 100)
    # requested 20 + 20 + 90 = 130 > 100 - 15 (15 shards): scaled by 85/130, rounded down
    assert len(s.global_test) == len(s.server) == 13
    assert [len(t) for t in s.client_test] == [19, 19, 19]
    assert sum(len(t) for t in s.client_train) == 100 - 13 - 13 - 57
    assert len(s.notes) == 3
    assert all("Shrunk" in n for n in s.notes)


def test_bad_arguments_raise_sentences() -> None:
    rng = numpy_rng(0, "s")
    with pytest.raises(ValueError, match="too small"):
        make_splits(np.zeros(10, int), num_clients=3, server_size=0, global_test_size=0, rng=rng)
    with pytest.raises(ValueError, match="Unknown partition"):
        make_splits(MENINGIOMA, num_clients=3, server_size=0, global_test_size=0, partition="x", rng=rng)
    with pytest.raises(ValueError, match="fraction"):
        make_splits(MENINGIOMA, num_clients=3, server_size=1.5, global_test_size=0, rng=rng)
    with pytest.raises(ValueError, match=">= 0"):
        make_splits(MENINGIOMA, num_clients=3, server_size=-1, global_test_size=0, rng=rng)


def test_check_disjoint_names_the_overlapping_sets() -> None:
    s = Splits(
        global_test=np.array([0, 1]), server=np.array([2]), client_test=(np.array([3]),),
        client_train=(np.array([1, 4]),),
    )
    with pytest.raises(ValueError, match="index 1 is in client0_train, global_test"):
        s.check_disjoint()


def test_splits_arrays_are_read_only() -> None:
    s = make_splits(MENINGIOMA, num_clients=3, server_size=10, global_test_size=10, rng=numpy_rng(0, "s"))
    with pytest.raises(ValueError):
        s.server[0] = 5


def test_stratified_counts_moves_the_deficit_when_a_class_runs_out() -> None:
    np.testing.assert_array_equal(stratified_counts(10, np.array([50, 50])), [5, 5])
    np.testing.assert_array_equal(stratified_counts(3, np.array([10, 10])), [2, 1])  # tie: lower class
    np.testing.assert_array_equal(stratified_counts(10, np.array([50, 50]), np.array([2, 40])), [2, 8])
    with pytest.raises(ValueError):
        stratified_counts(10, np.array([50, 50]), np.array([2, 3]))


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 120), min_size=2, max_size=4).filter(lambda c: sum(c) >= 40),
    num_clients=st.sampled_from([1, 3, 5]),
    global_test=st.one_of(st.integers(0, 80), st.floats(0.0, 0.5)),
    server=st.one_of(st.integers(0, 80), st.floats(0.0, 0.5)),
    client_test=st.one_of(st.integers(0, 40), st.floats(0.0, 0.2)),
    partition=st.sampled_from(["shards", "iid", "dirichlet"]),
    seed=st.integers(0, 2**16),
)
def test_property_splits_partition_the_pool_exactly(
    counts: list[int], num_clients: int, global_test: int | float, server: int | float,
    client_test: int | float, partition: str, seed: int,
) -> None:
    labels = _shuffled(np.repeat(np.arange(len(counts)), counts), seed)
    kwargs = {"alpha": 1.0} if partition == "dirichlet" else None
    s = make_splits(
        labels, num_clients=num_clients, client_test_size=client_test, server_size=server,
        global_test_size=global_test, partition=partition, partition_kwargs=kwargs, rng=numpy_rng(seed, "s"),
    )
    _assert_partition_of_pool(s, len(labels))
    assert len(s.client_test) == len(s.client_train) == num_clients
    assert len({len(t) for t in s.client_test}) == 1
    if not any("not exactly stratified" in n for n in s.notes):
        for idx in (s.global_test, s.server, *s.client_test):
            _assert_stratified(labels, idx)
    if not s.notes:
        n = len(labels)
        def want(v: int | float) -> int:
            return round(v * n) if isinstance(v, float) else v
        assert len(s.global_test) == want(global_test)
        assert len(s.server) == want(server)


@pytest.mark.parametrize("f", [0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
def test_server_fraction_selects_round_f_len_stratified(f: float) -> None:
    labels = _shuffled(MENINGIOMA)
    server = make_splits(labels, num_clients=3, server_size=333, global_test_size=100, rng=numpy_rng(0, "s")).server
    chosen = server_fraction(server, f, numpy_rng(0, "server-fraction"), labels=labels)
    assert len(chosen) == round(f * len(server))
    assert set(chosen.tolist()) <= set(server.tolist())
    assert len(np.unique(chosen)) == len(chosen)
    pool = np.bincount(labels[server], minlength=2)
    got = np.bincount(labels[chosen], minlength=2)
    assert np.all(np.abs(got - len(chosen) * pool / len(server)) < 1)


def test_server_fraction_is_nested_and_deterministic() -> None:
    labels = _shuffled(np.repeat([0, 1, 2, 3], [30, 70, 15, 85]))
    server = np.arange(len(labels))[::2]
    picks = [server_fraction(server, f, numpy_rng(9, "sf"), labels=labels) for f in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)]
    for small, big in zip(picks, picks[1:], strict=False):
        assert set(small.tolist()) <= set(big.tolist())
    np.testing.assert_array_equal(picks[-1], server)
    again = server_fraction(server, 0.3, numpy_rng(9, "sf"), labels=labels)
    np.testing.assert_array_equal(again, picks[2])


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 60), min_size=2, max_size=4).filter(lambda c: sum(c) >= 1),
    f=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_property_server_fraction_prefixes_are_stratified(counts: list[int], f: float, seed: int) -> None:
    labels = _shuffled(np.repeat(np.arange(len(counts)), counts), seed)
    server = np.arange(len(labels))
    chosen = server_fraction(server, f, numpy_rng(seed, "sf"), labels=labels)
    assert len(chosen) == round(f * len(server))
    got = np.bincount(labels[chosen], minlength=len(counts))
    assert np.all(np.abs(got - len(chosen) * np.array(counts) / len(server)) < 1 + 1e-9)


def test_server_fraction_rejects_bad_fraction() -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        server_fraction(np.arange(10), 0.0, numpy_rng(0, "sf"), labels=np.zeros(10, int))
