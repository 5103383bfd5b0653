"""Federated averaging (McMahan et al. 2017) with an optax server optimizer (Reddi et al. 2021).

One round, all inside one compiled call: sample C clients, draw every client's J batches, run
each client's J local steps (the client axis added by `fedjax_sim.engine.map_clients`), aggregate
the deltas with an optax aggregator, and apply the server optimizer to the negated mean delta as
a pseudo-gradient. Server SGD with learning rate 1 is plain FedAvg.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from fedjax_sim import aggregation
from fedjax_sim.algorithms.local import (
    Algorithm,
    make_local_steps,
    sum_metrics,
    training_metrics,
)
from fedjax_sim.data.client_data import ClientData, round_batch_plan, sample_clients
from fedjax_sim.engine import map_clients
from fedjax_sim.tasks import Task


@flax.struct.dataclass
class ServerState:
    params: Any
    opt_state: Any
    round: jax.Array


def fed_avg(
    task: Task,
    client_tx: optax.GradientTransformation,
    server_tx: optax.GradientTransformation,
    *,
    clients_per_round: int,
    local_steps: int,
    batch_size: int,
    local_epochs: int | None = None,
    weighting: str = "examples",
    client_axis: str = "vmap",
    chunk_size: int | None = None,
    unroll_local_steps: int | bool = 1,
    aggregator: optax.GradientTransformationExtraArgs | None = None,
    augment: bool = True,
    client_mesh: jax.sharding.Mesh | None = None,
) -> Algorithm:
    """Builds FedAvg.

    Args:
      task: model and input pipeline.
      client_tx: the client optimizer; its state starts fresh every round.
      server_tx: the server optimizer, fed the negated aggregated delta.
      clients_per_round: C, sampled uniformly without replacement every round.
      local_steps: J minibatch steps per client (with ``local_epochs``: the static maximum, i.e.
        ``ceil(E * max_n / B)``; steps past a client's E epochs are masked no-ops).
      batch_size: B.
      local_epochs: E, or None for exactly J steps per client.
      weighting: ``"examples"`` (weights n_k) or ``"uniform"``.
      client_axis: ``"vmap"``, ``"map"`` or ``"chunked"`` (see `fedjax_sim.engine`).
      chunk_size: clients vectorized together when ``client_axis="chunked"``.
      unroll_local_steps: ``unroll`` of the `lax.scan` over local steps.
      aggregator: defaults to `aggregation.weighted_mean`.
      augment: apply the task's training augmentation.
      client_mesh: optional mesh with a ``"clients"`` axis: the round's clients are split over
        its devices, each running its share by ``client_axis`` (`fedjax_sim.engine.map_clients`).

    Returns:
      `Algorithm` with ``init(params) -> ServerState`` and the jit-able ``round_fn``.

    Example:
      >>> algo = fed_avg(task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=10,
      ...                local_steps=8, batch_size=64)
      >>> state = algo.init(task.model.init(jax.random.key(0)))
      >>> state, metrics = jax.jit(algo.round_fn)(state, clients, jax.random.key(1))
    """
    aggregation.client_weights(jnp.zeros(1), weighting)  # validates the name early
    server_chain = optax.chain(
        aggregator or aggregation.weighted_mean(), optax.scale(-1.0), server_tx
    )
    run_local = make_local_steps(task, client_tx, augment=augment, unroll=unroll_local_steps)

    def client_update(params, data, indices_JxB, mask_JxB, rng):
        new_params, _, metrics = run_local(
            params, client_tx.init(params), data, indices_JxB, mask_JxB, rng
        )
        delta = jax.tree.map(jnp.subtract, new_params, params)
        return delta, metrics

    def init(params) -> ServerState:
        return ServerState(
            params=params, opt_state=server_chain.init(params), round=jnp.zeros((), jnp.int32)
        )

    def round_fn(state: ServerState, clients: ClientData, key):
        round_key = jax.random.fold_in(key, state.round)
        select_key, batch_key, train_key = jax.random.split(round_key, 3)
        client_ids_C = sample_clients(select_key, clients.num_clients, clients_per_round)
        indices_CxJxB, mask_CxJxB = round_batch_plan(
            batch_key,
            clients,
            client_ids_C,
            num_steps=local_steps,
            batch_size=batch_size,
            epochs=local_epochs,
        )
        rngs_C = jax.vmap(lambda c: jax.random.fold_in(train_key, c))(client_ids_C)
        update_C = map_clients(
            lambda i, m, r: client_update(state.params, clients, i, m, r),
            client_axis,
            chunk_size,
            client_mesh,
        )
        deltas_C, metrics_C = update_C(indices_CxJxB, mask_CxJxB, rngs_C)
        weights_C = aggregation.client_weights(clients.counts_K[client_ids_C], weighting)
        updates, opt_state = server_chain.update(
            deltas_C, state.opt_state, state.params, weights=weights_C
        )
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(params=params, opt_state=opt_state, round=state.round + 1)
        return new_state, training_metrics(sum_metrics(metrics_C))

    return Algorithm(init=init, round_fn=round_fn)
