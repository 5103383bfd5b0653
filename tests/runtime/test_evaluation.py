"""Evaluation: batched per-example outputs against an unbatched reference; per-client accuracy."""

import jax
import numpy as np
import pytest

from fedjax_sim.data.dataset import FederatedDataset
from fedjax_sim.models.model import variables
from fedjax_sim.runtime.evaluation import evaluation_metrics, make_evaluator, per_client_accuracy

Y_TEST = np.array([0, 0, 1, 1, 2, 2, 2], np.int32)
CORRECT = np.array([1, 0, 1, 1, 0, 0, 1], bool)  # per class: 1/2, 2/2, 1/3


def _dataset(train_y, train_client_indices, test_client_indices=None):
    return FederatedDataset(
        name="tiny",
        train={"x": np.zeros((len(train_y), 1)), "y": np.asarray(train_y, np.int32)},
        test={"x": np.zeros((len(Y_TEST), 1)), "y": Y_TEST},
        train_client_indices=tuple(np.asarray(i, np.int64) for i in train_client_indices),
        test_client_indices=None
        if test_client_indices is None
        else tuple(np.asarray(i, np.int64) for i in test_client_indices),
        client_ids=tuple(str(k) for k in range(len(train_client_indices))),
        num_classes=3,
    )


@pytest.mark.parametrize("batch_size", [3, 7, 10, 1000])
def test_evaluator_matches_unbatched_reference(batch_size, mlp_task, mlp_params, tiny_examples):
    x, y = tiny_examples["x"][:7], tiny_examples["y"][:7]
    loss, correct, pred = make_evaluator(mlp_task, batch_size)(mlp_params, {"x": x, "y": y})

    logits = np.asarray(mlp_task.model.apply(variables(mlp_params), x)[0], np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert loss.shape == correct.shape == pred.shape == (7,)
    np.testing.assert_allclose(loss, -log_probs[np.arange(7), y], rtol=1e-5)
    np.testing.assert_array_equal(pred, logits.argmax(-1))
    np.testing.assert_array_equal(correct, logits.argmax(-1) == y)
    assert 0 < correct.sum() < 7  # both outcomes occur, so the comparison means something


def test_per_client_accuracy_natural_split():
    dataset = _dataset([0] * 9, [[0], [1], [2], [3]], [[0, 2], [1, 3, 4], [], [5, 6]])
    accs = per_client_accuracy(dataset, CORRECT)
    np.testing.assert_allclose(accs, [1.0, 1 / 3, np.nan, 0.5])


def test_per_client_accuracy_from_label_distribution():
    # Client 0 trains on labels 0, 0, 1, 2: 1/2 * 1/2 + 1/4 * 1 + 1/4 * 1/3 = 7/12.
    # Client 1 trains on labels 2, 2: 1/3. Client 2 is empty.
    dataset = _dataset([0, 2, 0, 1, 2, 2], [[0, 2, 3, 4], [1, 5], []])
    accs = per_client_accuracy(dataset, CORRECT)
    np.testing.assert_allclose(accs, [7 / 12, 1 / 3, np.nan])


def test_evaluation_metrics():
    dataset = _dataset([0, 2, 0, 1, 2, 2], [[0, 2, 3, 4], [1, 5], []])
    loss = np.arange(7, dtype=np.float32)
    metrics = evaluation_metrics(dataset, loss, CORRECT, per_client=True)
    want = {
        "test_loss": 3.0,
        "test_accuracy": 4 / 7,
        "client_accuracy_mean": 11 / 24,
        "client_accuracy_std": 1 / 8,
        "client_accuracy_p10": 1 / 3 + 0.1 * (7 / 12 - 1 / 3),
        "client_accuracy_min": 1 / 3,  # the worst client with test data (client 1)
    }
    assert metrics.keys() == want.keys()
    for name, value in want.items():
        assert isinstance(metrics[name], float)
        np.testing.assert_allclose(metrics[name], value, rtol=1e-6, err_msg=name)
    assert evaluation_metrics(dataset, loss, CORRECT, per_client=False).keys() == {
        "test_loss",
        "test_accuracy",
    }


def test_evaluation_metrics_without_any_client_test_data():
    dataset = _dataset([0, 2, 0, 1, 2, 2], [[0, 2, 3, 4], [1, 5]], test_client_indices=[[], []])
    metrics = evaluation_metrics(dataset, np.arange(7.0), CORRECT, per_client=True)
    assert metrics == {"test_loss": 3.0, "test_accuracy": 4 / 7}


def test_evaluator_compiles_once(mlp_task, mlp_params, tiny_examples, trace_counting):
    task, traces = trace_counting(mlp_task)
    evaluate = make_evaluator(task, batch_size=5)
    examples = {"x": tiny_examples["x"], "y": tiny_examples["y"]}  # 24 = 4 full chunks + 4
    evaluate(mlp_params, examples)
    evaluate(jax.tree.map(lambda p: p + 1.0, mlp_params), examples)
    assert len(traces) == 1


def test_small_splits_are_padded_to_a_power_of_two(
    mlp_task, mlp_params, tiny_examples, trace_counting
):
    # one client's few test examples: padded to 4 or 8 rows, not to the 1000 of a full chunk
    task, traces = trace_counting(mlp_task)
    evaluate = make_evaluator(task, batch_size=1000)
    for n in (3, 4, 5, 7, 8):
        loss, _, _ = evaluate(
            mlp_params, {"x": tiny_examples["x"][:n], "y": tiny_examples["y"][:n]}
        )
        assert loss.shape == (n,)
    assert len(traces) == 2  # the shapes 4 and 8
