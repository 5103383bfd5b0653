"""A federated round composed of parts, all inside one compiled call.

    sampler -> each client's plan (batches, keys, local steps, its per-client state) ->
    client update (ONE client; the engine adds the client axis) -> server update
    (aggregator + server optimizer) -> per-client state scattered back

An algorithm supplies `FederatedParts`: its one-client update and its server update, and the
initial per-client and server-side state. Everything else (sampling, batch plans, keys, the
gather and scatter of per-client state, the client axis, weights, metrics) is this module's,
so each algorithm is a short file of its own pieces. Execution settings
(`fedjax_sim.core.engine.Execution`) are passed separately and change speed and memory only.

Per-client state: a pytree whose leaves have a leading axis of all K clients, kept in
`ServerState.clients`. The round gathers the rows of its C clients, passes them to the client
update as mapped arguments, and scatters the updated rows back; a client drawn twice in one
round (sampling with replacement) runs twice with independent batches and keys, and only its
first draw's state is written back. Clients that drop out (``present`` false) run but do not
report: zero weight, no state written, no metrics.

Keys: client c of the round, drawn for the ``o``-th time in it, has the slot ``id + o * K``;
its batches and training key are ``fold_in(key, slot)`` of the round's batch and train keys,
so results depend on nothing but (seed, round) and without duplicates the slot is the id.

Shape letters: K clients in the population, C clients in a round, J local steps, B batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from fedjax_sim.core import aggregation
from fedjax_sim.core.engine import CLIENT_MESH_AXIS, Execution, map_clients
from fedjax_sim.core.local import Algorithm, sum_metrics, training_metrics
from fedjax_sim.core.selection import Sampler
from fedjax_sim.core.tasks import Task, masked_loss_and_metrics
from fedjax_sim.data.client_data import (
    ClientData,
    client_batch_plan,
    gather_batch,
    round_batch_plan,
)

LOCAL_WORK = ("fixed", "proportional", "random")


@flax.struct.dataclass
class ServerState:
    """The whole state of a federated run.

    Attributes:
      params: the global parameters.
      model_state: the global model state (BatchNorm statistics; ``{}`` for stateless models).
      opt_state: the server optimizer's state.
      round: rounds done.
      clients: per-client state, every leaf with a leading axis of K (``{}`` when none).
      extra: the algorithm's own server-side state (SCAFFOLD's control variate, ...).
    """

    params: Any
    model_state: Any
    opt_state: Any
    round: jax.Array
    clients: Any = flax.struct.field(default_factory=dict)
    extra: Any = flax.struct.field(default_factory=dict)


class ClientInput(NamedTuple):
    """What one client's update receives (each field gains the client axis C).

    Attributes:
      client_state: the client's row of `ServerState.clients`.
      info: ``{"id", "count", "steps", **attributes}``: the client's id, example count, the
        local steps it runs this round, and the `ClientData.attributes` of the client.
      indices_JxB, mask_JxB: its batches (steps past ``steps`` are fully masked).
      rng: its training key.
    """

    client_state: Any
    info: dict
    indices_JxB: jax.Array
    mask_JxB: jax.Array
    rng: jax.Array


class ClientOutput(NamedTuple):
    """What one client's update returns.

    Attributes:
      delta: local parameters minus the global ones (what the aggregator averages).
      model_state: the client's model state after training.
      client_state: its new per-client state (``{}`` when the algorithm keeps none).
      metrics: summed training metrics (`fedjax_sim.core.tasks.masked_loss_and_metrics`).
      extras: anything else the server update needs, per client (``{}`` when nothing).
    """

    delta: Any
    model_state: Any
    client_state: Any
    metrics: dict
    extras: Any


class FederatedParts(NamedTuple):
    """An algorithm's own pieces.

    Attributes:
      client_update: ``client_update(state, clients, client_input) -> ClientOutput`` for ONE
        client; ``state`` is the round's `ServerState` (what every client receives).
      server_update: ``server_update(state, outputs_C, weights_C) -> state`` with ``params``,
        ``model_state``, ``opt_state`` and ``extra`` updated (``clients`` and ``round`` are
        the round's); ``weights_C`` are 0 for clients that did not report.
      init: ``init(variables) -> ServerState`` with ``round`` 0 and the per-client state of all
        K clients.
      personal: ``personal(state, k) -> variables`` of client k's own model (evaluation), or
        None when the clients use the global model.
    """

    client_update: Callable[[ServerState, ClientData, ClientInput], ClientOutput]
    server_update: Callable[[ServerState, ClientOutput, jax.Array], ServerState]
    init: Callable[[dict], ServerState]
    personal: Callable[[ServerState, int], dict] | None = None


def client_info(clients: ClientData, client_ids, counts, steps) -> dict:
    """`ClientInput.info` of the clients ``client_ids`` (any shape): their id, example count,
    local steps and every per-client attribute of ``clients`` (e.g. the attacks' ``bad``)."""
    info = {"id": client_ids, "count": counts, "steps": steps}
    info.update({name: value[client_ids] for name, value in clients.attributes.items()})
    return info


def draw_occurrence(client_ids_C) -> jax.Array:
    """How many earlier slots of the round drew the same client (0 for a first draw)."""
    same = client_ids_C[:, None] == client_ids_C[None, :]
    return jnp.sum(jnp.tril(same, k=-1), axis=1).astype(jnp.int32)


def local_steps_per_client(policy: str, key, counts_C, max_counts, num_steps: int) -> jax.Array:
    """Local steps each client runs this round (at most ``num_steps``).

    ``"fixed"``: all ``num_steps``; ``"proportional"``: ``ceil(J * n_k / max_k n_k)``, at least
    1, so the largest client runs J; ``"random"``: uniform in ``[1, J]``, drawn every round.
    """
    if policy == "fixed":
        return jnp.full(counts_C.shape, num_steps, jnp.int32)
    if policy == "proportional":
        share = counts_C.astype(jnp.float32) / jnp.maximum(max_counts, 1).astype(jnp.float32)
        return jnp.clip(jnp.ceil(num_steps * share), 1, num_steps).astype(jnp.int32)
    if policy == "random":
        return jax.random.randint(key, counts_C.shape, 1, num_steps + 1, jnp.int32)
    raise ValueError(f"client.local_work must be one of {list(LOCAL_WORK)}, got {policy!r}")


def federated_round(
    parts: FederatedParts,
    *,
    task: Task | None = None,
    sampler: Sampler,
    local_steps: int,
    batch_size: int,
    local_epochs: int | None = None,
    local_work: str = "fixed",
    weighting: str = "examples",
    execution: Execution | None = None,
) -> Callable:
    """``round_fn(state, clients, key) -> (state, metrics)`` of the algorithm ``parts``.

    Args:
      parts: the algorithm's `FederatedParts`.
      task: the task; loss-based samplers (power of choice) evaluate its model.
      sampler: `fedjax_sim.core.selection` sampler: who takes part in the round.
      local_steps: J, the static number of local steps (the maximum under ``local_work``).
      batch_size: B.
      local_epochs: E, or None: steps past E passes over a client's data are masked.
      local_work: how many of the J steps each client runs (`local_steps_per_client`).
      weighting: aggregation weights, ``"examples"`` or ``"uniform"``.
      execution: client axis, chunking, mesh (speed and memory only); default vmap.
    """
    execution = execution or Execution()
    aggregation.client_weights(jnp.zeros(1), weighting)  # validates the name early
    if local_work not in LOCAL_WORK:
        raise ValueError(f"client.local_work must be one of {list(LOCAL_WORK)}, got {local_work!r}")
    plan = _ClientPlan(local_steps, batch_size, local_epochs, local_work)

    def client_losses(state, clients, client_ids, key):
        return sampler_losses(task, execution, state, clients, client_ids, key, batch_size)

    def round_fn(state: ServerState, clients: ClientData, key):
        select_key, batch_key, train_key, work_key = round_keys(key, state.round)
        draw = _draw(sampler, select_key, state, clients, client_losses)
        inputs_C = _client_inputs(plan, state, clients, draw, batch_key, train_key, work_key)
        update_C = execution.map_clients(lambda inputs: parts.client_update(state, clients, inputs))
        outputs_C = update_C(inputs_C)
        weights_C = aggregation.client_weights(draw.counts_C, weighting) * draw.present_C
        new_state = parts.server_update(state, outputs_C, weights_C)
        client_states = _written_back(
            state.clients, outputs_C.client_state, draw, clients.num_clients, execution.mesh
        )
        present_C = draw.present_C
        reported = jax.tree.map(
            lambda m: m * present_C.astype(m.dtype).reshape((-1,) + (1,) * (m.ndim - 1)),
            outputs_C.metrics,
        )
        new_state = new_state.replace(clients=client_states, round=state.round + 1)
        return new_state, training_metrics(sum_metrics(reported))

    return round_fn


def round_keys(key, round_number) -> jax.Array:
    """The round's four keys (selection, batches, training, and one more: the local work's or
    the member order's), from the run's ``key`` folded with the round's number."""
    return jax.random.split(jax.random.fold_in(key, round_number), 4)


def client_keys(train_key, slots) -> jax.Array:
    """Each slot's training key, ``fold_in(train_key, slot)`` (slots of any shape)."""
    flat = slots.reshape(-1)
    return jax.vmap(lambda slot: jax.random.fold_in(train_key, slot))(flat).reshape(slots.shape)


class _ClientPlan(NamedTuple):
    """`federated_round`'s J, B, E and ``local_work`` (`local_steps_per_client`)."""

    local_steps: int
    batch_size: int
    local_epochs: int | None
    local_work: str


class _Draw(NamedTuple):
    """The round's C slots: each one's client, whether it reports (``present_C``), how many
    earlier slots drew the same client (``occurrence_C``) and its example count."""

    client_ids_C: jax.Array
    present_C: jax.Array
    occurrence_C: jax.Array
    counts_C: jax.Array


def _draw(sampler: Sampler, select_key, state, clients: ClientData, client_losses) -> _Draw:
    """The sampler's draw for the round."""
    client_ids_C, present_C = sampler(select_key, state, clients, client_losses)
    counts_C = clients.counts_K[client_ids_C]
    return _Draw(client_ids_C, present_C, draw_occurrence(client_ids_C), counts_C)


def _client_inputs(
    plan: _ClientPlan, state, clients: ClientData, draw: _Draw, batch_key, train_key, work_key
) -> ClientInput:
    """Every slot's `ClientInput`: its client's row of per-client state, its info, batches
    (steps past its share of the local work masked) and key, both drawn by its slot."""
    ids_C, num_steps = draw.client_ids_C, plan.local_steps
    slot_C = ids_C + draw.occurrence_C * clients.num_clients
    steps_C = local_steps_per_client(
        plan.local_work, work_key, draw.counts_C, jnp.max(clients.counts_K), num_steps
    )
    indices_CxJxB, mask_CxJxB = round_batch_plan(
        batch_key, clients, ids_C, num_steps=num_steps, batch_size=plan.batch_size,
        epochs=plan.local_epochs, slots_C=slot_C,
    )  # fmt: skip
    # Steps past a client's share of the local work are masked no-ops.
    mask_CxJxB = mask_CxJxB & (jnp.arange(num_steps) < steps_C[:, None])[:, :, None]
    return ClientInput(
        client_state=jax.tree.map(lambda s: s[ids_C], state.clients),
        info=client_info(clients, ids_C, draw.counts_C, steps_C),
        indices_JxB=indices_CxJxB,
        mask_JxB=mask_CxJxB,
        rng=client_keys(train_key, slot_C),
    )


def _written_back(client_states, new_C, draw: _Draw, num_clients: int, mesh):
    """``client_states`` (all K) with the rows of the clients that reported replaced by their
    new ones ``new_C``; a client drawn twice writes its first draw's."""
    write_C = draw.present_C & (draw.occurrence_C == 0)
    rows_C = jnp.where(write_C, draw.client_ids_C, num_clients)  # out of range: dropped
    written = jax.tree.map(
        lambda all_k, new_c: all_k.at[rows_C].set(new_c, mode="drop"), client_states, new_C
    )
    return shard_client_states(written, mesh)


def sampler_losses(task: Task, execution: Execution, state, clients, client_ids, key, batch_size):
    """Each of ``client_ids``' mean loss of the global model on one batch of its data (for
    loss-based client selection), computed with the round's client axis."""
    if task is None:
        raise ValueError("loss-based client selection needs federated_round(..., task=...)")
    variables = {"params": state.params, "state": state.model_state}

    def loss(client_id):
        indices, mask = client_batch_plan(
            jax.random.fold_in(key, client_id),
            clients.order_N,
            clients.offsets_K[client_id],
            clients.counts_K[client_id],
            num_steps=1,
            batch_size=batch_size,
        )
        batch = gather_batch(clients, indices[0], mask[0])
        value, _ = masked_loss_and_metrics(task, variables, batch, None, train=False)
        return value

    return map_clients(loss, execution.client_axis, execution.chunk_size)(client_ids)


def shard_client_states(client_states, mesh):
    """Per-client state constrained to be split along the K axis over the client mesh axis
    (replicated when K does not divide evenly or there is no mesh)."""
    if mesh is None or not jax.tree.leaves(client_states):
        return client_states
    devices = mesh.shape[CLIENT_MESH_AXIS]
    spec = jax.sharding.PartitionSpec(CLIENT_MESH_AXIS)

    def constrain(leaf):
        if leaf.shape[0] % devices:
            return leaf
        return jax.lax.with_sharding_constraint(leaf, jax.sharding.NamedSharding(mesh, spec))

    return jax.tree.map(constrain, client_states)


def per_client_state_bytes(state) -> int:
    """Bytes of the per-client state of all K clients (0 for a state without any)."""
    leaves = jax.tree.leaves(getattr(state, "clients", {}))
    return sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)


def new_server_state(variables, opt_state, clients=None, extra=None) -> ServerState:
    """A round-0 `ServerState` from the model's initial ``variables``."""
    return ServerState(
        params=variables["params"],
        model_state=variables["state"],
        opt_state=opt_state,
        round=jnp.zeros((), jnp.int32),
        clients={} if clients is None else clients,
        extra={} if extra is None else extra,
    )


def replicate_for_clients(tree, num_clients: int):
    """``tree`` repeated along a new leading axis of ``num_clients`` (initial client state)."""
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_clients, *leaf.shape)), tree)


def federated_algorithm(parts: FederatedParts, **round_options) -> Algorithm:
    """``Algorithm(parts.init, federated_round(parts, **round_options), parts.personal)``."""
    return Algorithm(parts.init, federated_round(parts, **round_options), parts.personal)
