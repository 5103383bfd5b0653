"""Batched, jitted evaluation of the global model, centrally and per client."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_sim.data.dataset import FederatedDataset
from fedjax_sim.tasks import Task


def make_evaluator(task: Task, batch_size: int = 1000):
    """``evaluate(params, examples) -> (loss_N, correct_N, predictions_N)`` as numpy arrays.

    Each chunk of ``batch_size`` examples is one call of a jitted function (the last chunk is
    padded, so there is one compiled shape); chunks are dispatched without waiting on the host.
    """

    @jax.jit
    def chunk_fn(params, x, y):
        logits = task.model.apply(params, task.prepare(x, None))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y.astype(jnp.int32))
        pred = jnp.argmax(logits, -1)
        return loss, pred == y, pred

    def evaluate(params, examples):
        x, y = examples["x"], examples["y"]
        n = len(y)
        outputs = []
        for start in range(0, n, batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            pad = batch_size - len(yb)
            if pad:
                xb = np.concatenate([xb, np.repeat(xb[:1], pad, 0)])
                yb = np.concatenate([yb, np.repeat(yb[:1], pad, 0)])
            outputs.append(chunk_fn(params, xb, yb))
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

    ``client_accuracy_{mean,std,p10}`` are over the clients that have test data; they are left
    out when no client has any.
    """
    metrics = {"test_loss": float(loss_N.mean()), "test_accuracy": float(correct_N.mean())}
    if per_client:
        accs = per_client_accuracy(dataset, correct_N)
        accs = accs[~np.isnan(accs)]
        if accs.size:
            metrics.update(
                client_accuracy_mean=float(accs.mean()),
                client_accuracy_std=float(accs.std()),
                client_accuracy_p10=float(np.percentile(accs, 10)),
            )
    return metrics
