"""The centralized baseline through the same machinery: one client holding all data.

A "round" is ``steps_per_round`` optimizer steps; the data stream continues across rounds in
shuffled passes (epochs) over the pooled training set, and the optimizer state persists.
Large batches run as gradient accumulation (`optax.MultiSteps`): ``accumulation_steps``
micro-batches of ``batch_size / accumulation_steps`` examples per optimizer step, in a rolled
loop, so memory is that of one micro-batch whatever the batch.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from fedjax_sim.core.local import Algorithm, make_local_steps, training_metrics
from fedjax_sim.core.tasks import Task, cross_entropy
from fedjax_sim.data.client_data import ClientData, client_batch_plan


@flax.struct.dataclass
class TrainState:
    params: Any
    model_state: Any
    opt_state: Any
    round: jax.Array


def centralized(
    task: Task,
    tx: optax.GradientTransformation,
    *,
    batch_size: int,
    steps_per_round: int = 1,
    accumulation_steps: int = 1,
    augment: bool = True,
    unroll: int | bool = 1,
) -> Algorithm:
    """Minibatch training on client 0 of the `ClientData` (use `pooled_client_data`).

    Args:
      task: model and input pipeline.
      tx: the optimizer (schedules count optimizer steps, not micro-batches).
      batch_size: B, the examples of one optimizer step.
      steps_per_round: optimizer steps per call of ``round_fn``.
      accumulation_steps: micro-batches per optimizer step (must divide B); their mean
        gradient is the step's, as with one batch of B (float reassociation aside).
      augment: apply the task's training augmentation.
      unroll: ``unroll`` of the `lax.scan` over steps.
    """
    if accumulation_steps < 1 or batch_size % accumulation_steps:
        raise ValueError(
            f"micro_batch_size must divide batch_size={batch_size} "
            f"({accumulation_steps} micro-batches asked for)"
        )
    if accumulation_steps > 1:
        tx = optax.MultiSteps(tx, accumulation_steps).gradient_transformation()
    micro_batch = batch_size // accumulation_steps
    micro_steps = steps_per_round * accumulation_steps
    run_local = make_local_steps(cross_entropy(task, augment=augment), tx, unroll=unroll)

    def init(variables) -> TrainState:
        params = variables["params"]
        return TrainState(
            params=params,
            model_state=variables["state"],
            opt_state=tx.init(params),
            round=jnp.zeros((), jnp.int32),
        )

    def round_fn(state: TrainState, clients: ClientData, key):
        data_key, train_key = jax.random.split(key)
        offset = state.round * (steps_per_round * batch_size)
        indices_JxB, mask_JxB = client_batch_plan(
            data_key,
            clients.order_N,
            clients.offsets_K[0],
            clients.counts_K[0],
            num_steps=micro_steps,
            batch_size=micro_batch,
            offset=offset,
        )
        result = run_local(
            state.params,
            state.model_state,
            state.opt_state,
            clients,
            indices_JxB,
            mask_JxB,
            jax.random.fold_in(train_key, state.round),
            None,
        )
        new_state = state.replace(
            params=result.params,
            model_state=result.model_state,
            opt_state=result.opt_state,
            round=state.round + 1,
        )
        return new_state, training_metrics(result.metrics)

    return Algorithm(init=init, round_fn=round_fn)
