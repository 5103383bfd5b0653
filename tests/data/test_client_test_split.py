"""Per-client test sets drawn with each client's label distribution, and the fairness view of
per-client accuracy (mean, std, worst 10%, worst client) by hand."""

import numpy as np
import pytest

from fedjax_sim.data.dataset import DataError, FederatedDataset, label_matched_test_split
from fedjax_sim.runtime.evaluation import evaluation_metrics, prefixed


def _dataset(test_client_indices=None):
    y_train = np.array([0, 0, 0, 1, 2, 2, 2, 2], np.int32)  # client 0: 0,0,0,1  client 1: 2x4
    y_test = np.array([0, 1, 2, 0, 1, 2, 0, 2, 2, 1], np.int32)
    return FederatedDataset(
        name="toy",
        train={"x": np.arange(8, dtype=np.float32)[:, None], "y": y_train},
        test={"x": np.arange(10, dtype=np.float32)[:, None], "y": y_test},
        train_client_indices=(np.arange(4), np.arange(4, 8)),
        test_client_indices=test_client_indices,
        client_ids=("a", "b"),
        num_classes=3,
    )


def test_each_client_gets_its_label_distribution_from_the_test_split():
    dataset = _dataset()
    split = label_matched_test_split(dataset, 4, seed=0)
    a, b = (split.test["y"][idx] for idx in split.test_client_indices)
    assert sorted(a) == [0, 0, 0, 1] and list(b) == [2, 2, 2, 2]
    # each drawn example is a test example of that label (x carries the original position)
    positions = split.test["x"][:, 0].astype(int)
    np.testing.assert_array_equal(dataset.test["y"][positions], split.test["y"])
    # 3 class-0 test examples, all needed by client 0: drawn without replacement
    assert len(set(positions[split.test_client_indices[0]])) == 4
    # 4 of class 2 asked, 4 present: without replacement too; 6 would need replacement
    big = label_matched_test_split(dataset, 6, seed=0)
    assert [len(i) for i in big.test_client_indices] == [6, 6]
    again = label_matched_test_split(dataset, 6, seed=0)
    np.testing.assert_array_equal(again.test["x"], big.test["x"])


def test_label_matched_split_refuses_data_with_its_own_split():
    with pytest.raises(DataError, match="own per-client test split"):
        label_matched_test_split(_dataset((np.arange(5), np.arange(5, 10))), 4, seed=0)


def test_fairness_metrics_by_hand():
    dataset = _dataset((np.arange(4), np.arange(4, 10)))
    correct = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0], bool)  # client accuracies 0.75, 1/6
    metrics = evaluation_metrics(dataset, np.zeros(10), correct, per_client=True)
    accs = np.array([0.75, 1 / 6])
    assert metrics["client_accuracy_mean"] == pytest.approx(accs.mean())
    assert metrics["client_accuracy_std"] == pytest.approx(accs.std())
    assert metrics["client_accuracy_p10"] == pytest.approx(1 / 6 + 0.1 * (0.75 - 1 / 6))
    assert metrics["client_accuracy_min"] == pytest.approx(1 / 6)
    assert metrics["test_accuracy"] == pytest.approx(0.4)
    renamed = prefixed(metrics, "personal")
    assert renamed["personal_accuracy_min"] == metrics["client_accuracy_min"]
    assert renamed["personal_test_accuracy"] == metrics["test_accuracy"]
