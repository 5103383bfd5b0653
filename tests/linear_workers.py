"""A linear classifier on K workers whose shard is exactly one batch, for the distributed
track's tests: every step of a worker sees all of its shard in some order, and the mean loss does
not depend on the order, so a plain full-shard gradient is an independent reference for any
batch plan."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_sim.core.tasks import Task, cross_entropy
from fedjax_sim.data.client_data import ClientData, client_data_from_indices
from fedjax_sim.models.model import stateless

D, CLASSES = 3, 2


def init_linear(rng):
    return {"w": 0.3 * jax.random.normal(rng, (D, CLASSES)), "b": jnp.zeros(CLASSES)}


LINEAR = Task(
    stateless(init_linear, lambda p, x: x @ p["w"] + p["b"], (D,), "linear"),
    lambda x, rng: x,
    CLASSES,
)
OBJECTIVE = cross_entropy(LINEAR)
PARAMS0 = init_linear(jax.random.key(0))


class Workers(NamedTuple):
    """``data`` (``x``, ``y``), ``shards`` (each worker's example indices), ``clients`` (the
    `ClientData`) and ``grad(params, indices)``: the mean loss's gradient on those examples."""

    data: dict
    shards: list
    clients: ClientData
    grad: Any


def linear_workers(num_workers: int, batch_size: int, seed: int) -> Workers:
    """``num_workers`` shards of ``batch_size`` random examples each (``seed``)."""
    rng = np.random.default_rng(seed)
    n = num_workers * batch_size
    data = {
        "x": rng.normal(size=(n, D)).astype(np.float32),
        "y": rng.integers(0, CLASSES, n).astype(np.int32),
    }
    shards = [np.arange(k * batch_size, (k + 1) * batch_size) for k in range(num_workers)]

    def mean_loss(params, indices):
        logits = jnp.asarray(data["x"])[indices] @ params["w"] + params["b"]
        labels = jnp.asarray(data["y"])[indices]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    clients = client_data_from_indices(data, shards)
    return Workers(data, shards, clients, jax.jit(jax.grad(mean_loss)))
