"""Local fine-tuning at evaluation: every client trains its starting model for k steps on its
own training data before it is tested (the personalization baseline of Wang et al. 2019 and
Yu et al. 2020, and FedBABU's evaluation).

All K clients are fine-tuned in one compiled call with the client axis of the round
(`fedjax_sim.core.engine.map_clients`); the batches follow the round's sampler
(`fedjax_sim.data.client_data.client_batch_plan`) from a key fixed by the run's seed and the
round, so an evaluation is deterministic and a resumed run evaluates the same.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.core.engine import map_clients
from fedjax_sim.core.local import make_local_steps
from fedjax_sim.core.tasks import Task, cross_entropy
from fedjax_sim.data.client_data import ClientData, client_batch_plan


def make_finetuner(
    task: Task,
    tx: optax.GradientTransformation,
    start_of: Callable,
    *,
    steps: int,
    batch_size: int,
    augment: bool = True,
    client_axis: str = "vmap",
) -> Callable:
    """``finetune(state, clients, key) -> variables_K``: the variables of every client after
    ``steps`` steps of ``tx`` (fresh state) on its training data, stacked along K; jitted.

    Args:
      task: the task.
      tx: the fine-tuning optimizer (the client optimizer of the run).
      start_of: ``start_of(state, k) -> variables``: client k's starting model (the global
        model, or its personal one), traced with a traced ``k``.
      steps: k local steps (each of ``batch_size``; a client with fewer examples reads them
        in repeated shuffled passes, as in training).
      batch_size: B.
      augment: the task's training augmentation.
      client_axis: ``"vmap"``, ``"map"``, ... (`map_clients`).
    """
    if steps < 1:
        raise ValueError(f"finetune.steps must be >= 1, got {steps}")
    run_local = make_local_steps(cross_entropy(task, augment=augment), tx)

    def finetune(state, clients: ClientData, key):
        batch_key, train_key = jax.random.split(key)

        def one(client_id):
            start = start_of(state, client_id)
            indices, mask = client_batch_plan(
                jax.random.fold_in(batch_key, client_id), clients.order_N,
                clients.offsets_K[client_id], clients.counts_K[client_id], num_steps=steps,
                batch_size=batch_size,
            )  # fmt: skip
            result = run_local(
                start["params"], start["state"], tx.init(start["params"]), clients, indices,
                mask, jax.random.fold_in(train_key, client_id), None,
            )  # fmt: skip
            return {"params": result.params, "state": result.model_state}

        return map_clients(one, client_axis)(jnp.arange(clients.num_clients))

    return jax.jit(finetune)


def client_variables(variables_K, client_id: int) -> dict:
    """Client ``client_id``'s row of stacked variables."""
    return jax.tree.map(lambda leaf: leaf[client_id], variables_K)
