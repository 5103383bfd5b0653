"""Batched, jitted evaluation of the global model, centrally and per client."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_sim.core.tasks import Task
from fedjax_sim.data.dataset import FederatedDataset


def on_one_device(tree):
    """``tree`` on this process's first device, whatever its arrays' sharding.

    Why: a jitted call runs where its committed inputs are, so parameters replicated over a
    client mesh make every device of it evaluate every chunk: the same work and memory again,
    on cores the devices share (docs/performance.md, Memory).
    """
    return jax.device_put(tree, jax.local_devices()[0])


def make_evaluator(task: Task, batch_size: int = 1000):
    """``evaluate(variables, examples) -> (loss_N, correct_N, predictions_N)`` as numpy arrays.

    ``variables`` are ``{"params", "state"}`` (or bare parameters of a stateless model); the
    model runs in evaluation mode (BatchNorm with its running statistics).

    Each chunk of ``batch_size`` examples is one call of a jitted function (the last chunk is
    padded, so there is one compiled shape); chunks are dispatched without waiting on the host.
    The variables are first put on one device, so a chunk runs once, not on every device of a
    client mesh that replicates them.
    Fewer than ``batch_size / 2`` examples (one client's test split) are padded only to the
    next power of two, so evaluating 100 small clients one by one is not 100 full chunks.
    """

    @jax.jit
    def chunk_fn(variables, x, y):
        logits, _ = task.model.apply(variables, task.prepare(x, None))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y.astype(jnp.int32))
        pred = jnp.argmax(logits, -1)
        return loss, pred == y, pred

    def evaluate(variables, examples):
        if not (isinstance(variables, dict) and set(variables) == {"params", "state"}):
            variables = {"params": variables, "state": {}}
        variables = on_one_device(variables)
        x, y = examples["x"], examples["y"]
        n = len(y)
        chunk = min(batch_size, 1 << max(n - 1, 0).bit_length())  # a few compiled shapes
        outputs = []
        for start in range(0, n, chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            pad = chunk - len(yb)
            if pad:
                xb = np.concatenate([xb, np.repeat(xb[:1], pad, 0)])
                yb = np.concatenate([yb, np.repeat(yb[:1], pad, 0)])
            outputs.append(chunk_fn(variables, xb, yb))
        loss, correct, pred = (
            np.concatenate([np.asarray(o[i]) for o in outputs])[:n] for i in range(3)
        )
        return loss, correct, pred

    return evaluate


def per_client_accuracy(dataset: FederatedDataset, correct_N: np.ndarray) -> np.ndarray:
    """Test accuracy of the global model for every client.

    With a natural per-client test split (LEAF) it is the accuracy on the client's own test
    examples. Without one (label-skew partitions of a central test set) it is the expected
    accuracy on test data drawn from the client's label distribution:
    ``sum_c p_k(c) * acc(c)``, with ``p_k`` from the client's training labels and ``acc(c)`` the
    per-class accuracy on the central test set.
    """
    if dataset.test_client_indices is not None:
        return np.array(
            [correct_N[idx].mean() if len(idx) else np.nan for idx in dataset.test_client_indices]
        )
    y_test = np.asarray(dataset.test["y"])
    k = dataset.num_classes
    per_class = np.bincount(y_test, weights=correct_N, minlength=k) / np.maximum(
        np.bincount(y_test, minlength=k), 1
    )
    y_train = np.asarray(dataset.train["y"])
    accs = []
    for idx in dataset.train_client_indices:
        p = np.bincount(y_train[idx], minlength=k) / max(len(idx), 1)
        accs.append(float(p @ per_class) if len(idx) else np.nan)
    return np.array(accs)


def evaluation_metrics(dataset: FederatedDataset, loss_N, correct_N, *, per_client: bool):
    """The metrics one evaluation reports (JSON-ready floats).

    ``client_accuracy_{mean,std,p10,min}`` (the fairness view: mean, spread, the 10th
    percentile, i.e. the worst 10%, and the worst client) are over the clients that have test
    data; they are left out when no client has any.
    """
    metrics = {"test_loss": float(loss_N.mean()), "test_accuracy": float(correct_N.mean())}
    if per_client:
        accs = per_client_accuracy(dataset, correct_N)
        accs = accs[~np.isnan(accs)]
        if accs.size:
            metrics.update(fairness_metrics(accs))
    return metrics


def fairness_metrics(accs) -> dict:
    """``client_accuracy_{mean,std,p10,min}`` of the per-client accuracies ``accs``."""
    return {
        "client_accuracy_mean": float(accs.mean()),
        "client_accuracy_std": float(accs.std()),
        "client_accuracy_p10": float(np.percentile(accs, 10)),
        "client_accuracy_min": float(accs.min()),
    }


def prefixed(metrics: dict, prefix: str) -> dict:
    """``metrics`` of personalized models renamed beside the global model's: ``test_*`` ->
    ``<prefix>_test_*``, ``client_accuracy_*`` -> ``<prefix>_accuracy_*``."""
    renamed = {}
    for name, value in metrics.items():
        if name.startswith("client_accuracy_"):
            renamed[f"{prefix}_accuracy_" + name.removeprefix("client_accuracy_")] = value
        else:
            renamed[f"{prefix}_{name}"] = value
    return renamed


def personalized_evaluation(evaluate, dataset: FederatedDataset, variables_of) -> dict:
    """Metrics of personalized models: client k evaluated with its own ``variables_of(k)``
    (FedBN's normalization layers, local BatchNorm statistics).

    With a per-client test split each client's test examples are evaluated with its own model
    and the metrics are those of `evaluation_metrics` over the combined predictions. Without
    one, each client's model is evaluated on the whole test set: its accuracy is the expected
    accuracy on its label distribution (as `per_client_accuracy`), and ``test_accuracy`` /
    ``test_loss`` are the means over clients weighted by their training examples.

    Args:
      evaluate: `make_evaluator`'s function.
      dataset: the dataset (with its test split).
      variables_of: ``variables_of(k) -> variables`` of client k.
    """
    n = len(dataset.test["y"])
    if dataset.test_client_indices is not None:
        loss_N, correct_N = np.zeros(n, np.float32), np.zeros(n, bool)
        for k, idx in enumerate(dataset.test_client_indices):
            if len(idx):
                examples = {name: array[idx] for name, array in dataset.test.items()}
                loss_N[idx], correct_N[idx], _ = evaluate(variables_of(k), examples)
        return evaluation_metrics(dataset, loss_N, correct_N, per_client=True)
    y_test = np.asarray(dataset.test["y"])
    y_train = np.asarray(dataset.train["y"])
    k_classes = dataset.num_classes
    test_per_class = np.maximum(np.bincount(y_test, minlength=k_classes), 1)
    accs, losses, sizes = [], [], []
    for k, idx in enumerate(dataset.train_client_indices):
        if not len(idx):
            continue
        loss_N, correct_N, _ = evaluate(variables_of(k), dataset.test)
        p = np.bincount(y_train[idx], minlength=k_classes) / len(idx)
        accs.append(float(p @ (np.bincount(y_test, weights=correct_N, minlength=k_classes)
                               / test_per_class)))  # fmt: skip
        losses.append(float(p @ (np.bincount(y_test, weights=loss_N, minlength=k_classes)
                                 / test_per_class)))  # fmt: skip
        sizes.append(len(idx))
    accs, weights = np.array(accs), np.array(sizes) / np.sum(sizes)
    return {
        "test_loss": float(np.dot(weights, losses)),
        "test_accuracy": float(np.dot(weights, accs)),
        **fairness_metrics(accs),
    }


def make_statistics_recomputer(task: Task):
    """``recompute(variables, x_raw) -> model_state``: the model's running statistics (e.g.
    BatchNorm's) replaced by those of the batch ``x_raw``, computed by the training-mode
    forward pass (as SWA's ``bn_update`` does), layer after layer.

    Any exponential-moving-average state ``new = m * old + (1 - m) * batch`` works without
    knowing m: two passes from states of all zeros and all ones give ``m = new_1 - new_0`` and
    ``batch = new_0 / (1 - m)``.
    """

    @jax.jit
    def recompute(variables, x_raw):
        x = task.prepare(x_raw, None)
        mask = jnp.ones(x.shape[0], bool)

        def updated(fill):
            state = jax.tree.map(lambda s: jnp.full_like(s, fill), variables["state"])
            inputs = {"params": variables["params"], "state": state}
            return task.model.apply(inputs, x, train=True, mask=mask)[1]

        from_zeros, from_ones = updated(0.0), updated(1.0)
        return jax.tree.map(lambda n0, n1: n0 / (1.0 - (n1 - n0)), from_zeros, from_ones)

    return recompute
