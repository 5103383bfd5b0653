"""FedSeq (Zaccone et al. 2022, "Speeding up Heterogeneous Federated Learning with Sequentially
Trained Superclients"): clients grouped into superclients (`fedjax_sim.algorithms.fedseq_groups`);
in each round S superclients are drawn, and each trains the global model through its members one
after another, each member starting from the previous member's model; the server aggregates the
superclients' deltas as FedAvg does (same aggregator and server optimizer).

Inside the one compiled round the superclients are the vectorized client axis (the round's
`Execution`), and the members are a `lax.scan` inside each superclient. A member's work is
the wrapped algorithm's one-client update (FedAvg's J local steps from a fresh client optimizer
state, up to ``local_epochs`` passes); members padded into short superclients are fully masked
and change nothing. A superclient's delta is the sum of its members' deltas (final model minus
global, to rounding), its weight the sum of their example counts.

Keys follow `fedjax_sim.core.round`: the member that is client k draws its batches
and its training key as ``fold_in(key, k)`` of the round's batch and train keys (k the
client's id, not its place in the superclient), so with superclients of one client each
FedSeq runs exactly FedAvg's round.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fedjax_sim.core import aggregation
from fedjax_sim.core.engine import Execution
from fedjax_sim.core.local import Algorithm, sum_metrics, training_metrics
from fedjax_sim.core.round import (
    ClientInput,
    ClientOutput,
    FederatedParts,
    ServerState,
    client_info,
    client_keys,
    round_keys,
)
from fedjax_sim.data.client_data import ClientData, round_batch_plan, sample_clients

ORDERS = ("fixed", "shuffle")


def sequential_update(parts: FederatedParts) -> Callable:
    """``update(state, clients, inputs_M) -> ClientOutput`` of ONE superclient: ``parts``'
    client update run through the M members of ``inputs_M`` (a `ClientInput` with a leading
    member axis) in order, each from the model the previous member returned."""

    def update(state: ServerState, clients: ClientData, inputs_M: ClientInput) -> ClientOutput:
        def member(carry, inputs):
            params, model_state, delta = carry
            start = state.replace(params=params, model_state=model_state)
            out = parts.client_update(start, clients, inputs)
            params = jax.tree.map(jnp.add, params, out.delta)
            delta = jax.tree.map(jnp.add, delta, out.delta)
            return (params, out.model_state, delta), out.metrics

        # jnp.zeros, not zeros_like: the params' mesh sharding is not valid inside shard_map
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, p.dtype), state.params)
        carry = (state.params, state.model_state, zeros)
        (_, model_state, delta), metrics_M = jax.lax.scan(member, carry, inputs_M)
        return ClientOutput(delta, model_state, {}, sum_metrics(metrics_M), {})

    return update


def shuffle_members(key, members_M) -> jax.Array:
    """``members_M`` in a random order, padding (-1) kept at the end."""
    noise = jax.random.uniform(key, members_M.shape)
    return members_M[jnp.argsort(jnp.where(members_M >= 0, noise, 2.0))]


def fedseq_round(
    parts: FederatedParts,
    *,
    groups,
    superclients_per_round: int,
    local_steps: int,
    batch_size: int,
    local_epochs: int | None = None,
    order: str = "fixed",
    weighting: str = "examples",
    execution: Execution | None = None,
) -> Callable:
    """``round_fn(state, clients, key) -> (state, metrics)`` of FedSeq over ``parts``.

    Args:
      parts: the member work and the server update (`fedjax_sim.algorithms.fedavg.
        fedavg_parts` without per-client state).
      groups: ``[G, M]`` client ids of the superclients, padded with -1
        (`fedjax_sim.algorithms.fedseq_groups.group_clients`).
      superclients_per_round: S, drawn uniformly without replacement among the G.
      local_steps, batch_size, local_epochs: each member's J steps of B, at most E passes.
      order: ``"fixed"`` (the grouping's order) or ``"shuffle"`` (a new random order of each
        superclient's members every round).
      weighting: ``"examples"`` (a superclient's members' examples) or ``"uniform"``.
      execution: the superclient axis (speed and memory only).
    """
    if order not in ORDERS:
        raise ValueError(f"fedseq.order must be one of {list(ORDERS)}, got {order!r}")
    execution = execution or Execution()
    aggregation.client_weights(jnp.zeros(1), weighting)  # validates the name early
    groups_GxM = jnp.asarray(groups, jnp.int32)
    num_groups, members = groups_GxM.shape
    update = sequential_update(parts)

    def round_fn(state: ServerState, clients: ClientData, key):
        select_key, batch_key, train_key, order_key = round_keys(key, state.round)
        members_SxM = groups_GxM[sample_clients(select_key, num_groups, superclients_per_round)]
        if order == "shuffle":
            keys = jax.random.split(order_key, superclients_per_round)
            members_SxM = jax.vmap(shuffle_members)(keys, members_SxM)
        inputs, valid_SxM = _member_inputs(
            clients, members_SxM, batch_key, train_key, local_steps, batch_size, local_epochs
        )
        update_S = execution.map_clients(lambda inputs_M: update(state, clients, inputs_M))
        outputs_S = update_S(inputs)
        weights_S = aggregation.client_weights(inputs.info["count"].sum(1), weighting)
        new_state = parts.server_update(state, outputs_S, weights_S)
        metrics = training_metrics(sum_metrics(outputs_S.metrics))
        # the ledger's synchronizations: every member receives the model and sends it on, one
        # after another within a superclient (superclients of one client: FedAvg's one a round)
        metrics["syncs"] = jnp.mean(valid_SxM.sum(1).astype(jnp.float32))
        return new_state.replace(round=state.round + 1), metrics

    return round_fn


def _member_inputs(
    clients: ClientData, members_SxM, batch_key, train_key, local_steps, batch_size, local_epochs
) -> tuple[ClientInput, jax.Array]:
    """``(inputs, valid_SxM)``: every member's `ClientInput` (leading axes S and M), its
    batches and key drawn by its client id as `fedjax_sim.core.round` draws them, padding
    (-1) fully masked with no examples; ``valid_SxM``: which members are not padding."""
    valid_SxM = members_SxM >= 0
    ids_SxM = jnp.where(valid_SxM, members_SxM, 0)
    indices, mask = round_batch_plan(
        batch_key, clients, ids_SxM.reshape(-1), num_steps=local_steps, batch_size=batch_size,
        epochs=local_epochs,
    )  # fmt: skip
    shape = (*ids_SxM.shape, local_steps, batch_size)
    counts_SxM = clients.counts_K[ids_SxM] * valid_SxM
    steps_SxM = jnp.full(ids_SxM.shape, local_steps, jnp.int32)
    inputs = ClientInput(
        client_state={},
        info=client_info(clients, ids_SxM, counts_SxM, steps_SxM),
        indices_JxB=indices.reshape(shape),
        mask_JxB=mask.reshape(shape) & valid_SxM[:, :, None, None],
        rng=client_keys(train_key, ids_SxM),
    )
    return inputs, valid_SxM


def fedseq_algorithm(parts: FederatedParts, **round_options) -> Algorithm:
    """``Algorithm(parts.init, fedseq_round(parts, **round_options))``."""
    return Algorithm(parts.init, fedseq_round(parts, **round_options))
