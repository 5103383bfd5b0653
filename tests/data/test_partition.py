"""Partitioners: coverage, sizes, the skew they promise, hand-checked statistics, errors."""

import numpy as np
import pytest

from fedjax_sim.data import partition

# 100 classes x 100 examples, shuffled so that class order is not index order.
LABELS_100 = np.random.default_rng(0).permutation(np.repeat(np.arange(100), 100))


def _check_disjoint_sorted(indices, num_examples, *, covers_all):
    for idx in indices:
        assert idx.dtype == np.int64
        assert np.all(np.diff(idx) > 0)
    flat = np.concatenate(indices)
    assert len(np.unique(flat)) == len(flat)
    assert flat.min() >= 0 and flat.max() < num_examples
    if covers_all:
        assert len(flat) == num_examples


def _stats(indices, labels=LABELS_100, num_classes=100):
    return partition.partition_statistics(labels, indices, num_classes)


def test_iid_sizes_and_coverage():
    indices = partition.iid_partition(103, 10, seed=0)
    assert len(indices) == 10
    assert sorted(len(idx) for idx in indices) == [10] * 7 + [11] * 3
    _check_disjoint_sorted(indices, 103, covers_all=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: partition.iid_partition(1000, 7, seed),
        lambda seed: partition.dirichlet_partition(LABELS_100[:1000], 7, 0.5, seed),
        lambda seed: partition.shard_partition(LABELS_100, 20, 5, seed),
    ],
    ids=["iid", "dirichlet", "shards"],
)
def test_deterministic_for_a_seed(make):
    a, b, c = make(3), make(3), make(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_dirichlet_equal_sizes_and_coverage():
    indices = partition.dirichlet_partition(LABELS_100, 100, 0.3, seed=1)
    assert [len(idx) for idx in indices] == [100] * 100
    _check_disjoint_sorted(indices, len(LABELS_100), covers_all=True)


def test_dirichlet_uneven_total_uses_all_data():
    indices = partition.dirichlet_partition(LABELS_100[:1003], 10, 0.1, seed=2, num_classes=100)
    assert sorted(len(idx) for idx in indices) == [100] * 7 + [101] * 3
    _check_disjoint_sorted(indices, 1003, covers_all=True)


def test_dirichlet_tiny_alpha_gives_one_class_per_client():
    stats = _stats(partition.dirichlet_partition(LABELS_100, 100, 1e-3, seed=0))
    # A client whose class was partly used by an earlier one tops up from a second class, so a
    # few clients hold two.
    assert np.median(stats.classes_per_client) == 1
    assert stats.classes_per_client.mean() <= 1.2
    # One class out of 100 uniform ones: |1 - 0.01| + 99 * 0.01.
    assert np.median(stats.emd) == pytest.approx(1.98)


def test_dirichlet_huge_alpha_is_near_iid():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 1000))
    near_iid = _stats(partition.dirichlet_partition(labels, 10, 1e3, seed=0), labels, 10)
    skewed = _stats(partition.dirichlet_partition(labels, 10, 0.1, seed=0), labels, 10)
    assert np.all(near_iid.classes_per_client == 10)
    # The last client takes what is left, so it is the least balanced one.
    assert np.median(near_iid.emd) < 0.2
    assert near_iid.emd.max() < 0.5
    assert np.median(skewed.emd) > 1.0


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_dirichlet_rejects_nonpositive_alpha(alpha):
    with pytest.raises(ValueError, match=r"^data\.alpha must be > 0, got") as e:
        partition.dirichlet_partition(LABELS_100, 10, alpha, seed=0)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"partition": "dirichlet"}, r"^data\.alpha must be set when data\.partition='dirichlet'$"),
        ({"partition": "shards"}, r"^data\.classes_per_client must be set"),
        (
            {"partition": "label"},
            r"^data\.partition must be one of \['iid', 'dirichlet', 'shards'\]",
        ),
    ],
)
def test_partition_labels_names_the_missing_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        partition.partition_labels(LABELS_100, num_clients=10, **kwargs)


def test_partition_labels_dispatches():
    direct = partition.shard_partition(LABELS_100, 10, 2, seed=7)
    named = partition.partition_labels(
        LABELS_100, partition="shards", num_clients=10, classes_per_client=2, seed=7
    )
    assert all(np.array_equal(a, b) for a, b in zip(direct, named, strict=True))


@pytest.mark.parametrize("nc", [1, 5, 10, 50])
def test_shards_exact_classes_per_client(nc):
    indices = partition.shard_partition(LABELS_100, 100, nc, seed=0)
    _check_disjoint_sorted(indices, len(LABELS_100), covers_all=True)
    for idx in indices:
        classes, counts = np.unique(LABELS_100[idx], return_counts=True)
        assert len(classes) == nc
        assert np.all(counts == 100 // nc)


def test_shards_not_a_multiple_still_distinct_and_complete():
    labels = np.repeat(np.arange(10), 30)
    indices = partition.shard_partition(labels, 7, 3, seed=5)
    _check_disjoint_sorted(indices, len(labels), covers_all=True)
    assert all(len(np.unique(labels[idx])) == 3 for idx in indices)


@pytest.mark.parametrize(
    "labels,nc,match",
    [
        (LABELS_100, 0, r"data\.classes_per_client must be in \[1, 100\], got 0"),
        (LABELS_100, 101, r"data\.classes_per_client must be in \[1, 100\], got 101"),
        (np.repeat(np.arange(100), 2), 5, r"data\.classes_per_client=5 .* only 2 examples"),
    ],
)
def test_shards_rejects_bad_classes_per_client(labels, nc, match):
    with pytest.raises(ValueError, match=match) as e:
        partition.shard_partition(labels, 100, nc, seed=0)
    assert "\n" not in str(e.value)


def test_natural_partition_in_order_of_first_appearance():
    keys = np.array(["bob", "al", "bob", "cy", "al"])
    indices = partition.natural_partition(keys)
    assert [idx.tolist() for idx in indices] == [[0, 2], [1, 4], [3]]
    assert all(idx.dtype == np.int64 for idx in indices)


def test_statistics_hand_checked():
    # Global distribution (1/2, 1/3, 1/6). Client 0 holds labels (0, 0): distribution (1, 0, 0),
    # EMD 1/2 + 1/3 + 1/6 = 1. Client 1 holds (0, 1, 1, 2): (1/4, 1/2, 1/4),
    # EMD 1/4 + 1/6 + 1/12 = 1/2.
    labels = np.array([0, 0, 0, 1, 1, 2])
    stats = partition.partition_statistics(labels, [np.array([0, 1]), np.array([2, 3, 4, 5])], 3)
    np.testing.assert_array_equal(stats.examples_per_client, [2, 4])
    np.testing.assert_array_equal(stats.classes_per_client, [1, 3])
    np.testing.assert_allclose(stats.emd, [1.0, 0.5])
    summary = stats.summary()
    assert summary["num_clients"] == 2
    assert summary["emd_mean"] == pytest.approx(0.75)
    assert summary["emd_std"] == pytest.approx(0.25)
    assert (summary["emd_min"], summary["emd_max"]) == pytest.approx((0.5, 1.0))
    assert summary["examples_per_client_mean"] == 3.0
    assert summary["classes_per_client_max"] == 3.0
    text = partition.format_statistics(stats)
    assert "\n" not in text
    assert text.startswith("2 clients;")
    assert "mean 0.750" in text
