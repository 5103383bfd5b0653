"""Federated averaging (McMahan et al. 2017) with an optax server optimizer (Reddi et al. 2021),
and FedBN (Li et al. 2021) as its personal-normalization option.

The client update trains the global model for J local steps and returns its delta; the server
applies ``optax.chain(aggregator, scale(-1), server_tx)`` to the deltas, i.e. the server
optimizer sees the negated mean delta as a pseudo-gradient: server SGD with learning rate 1 is
plain FedAvg, momentum gives FedAvgM, adam/yogi/adagrad the FedOpt family.

Model state (BatchNorm statistics), ``model_state``:
  * ``"average"``: averaged with the same weights as the parameters (the default).
  * ``"local"``: every client keeps its own statistics (per-client state); the global model's
    are its initial ones, and evaluation should use the clients' own (`personal_variables`).
  * ``"recompute"``: clients' statistics are dropped; the global model's are recomputed from
    training data before each evaluation
    (`fedjax_sim.runtime.evaluation.make_statistics_recomputer`).
FedBN (``personal="norm"``): each client keeps its BatchNorm layers' parameters (scale and
bias) AND statistics; they are never averaged (their server copy stays at its initial value).
The BatchNorm layers are the modules that own model state (`batch_norm_parameters`), whatever
their names: a LayerNorm, a GroupNorm or a Dense named ``normalizer`` is averaged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from absl import logging
from flax import traverse_util

from fedjax_sim.core import aggregation
from fedjax_sim.core.engine import Execution
from fedjax_sim.core.local import Algorithm, make_local_steps
from fedjax_sim.core.round import (
    ClientOutput,
    FederatedParts,
    ServerState,
    federated_round,
    new_server_state,
    replicate_for_clients,
)
from fedjax_sim.core.selection import Sampler, uniform
from fedjax_sim.core.tasks import Objective, Task, cross_entropy

MODEL_STATE_MODES = ("average", "local", "recompute")
PERSONAL = ("none", "norm")
CLIENT_OPTIMIZER_STATE = ("reset", "keep")

__all__ = [
    "ServerState",
    "batch_norm_parameters",
    "fed_avg",
    "fedavg_parts",
    "personal_variables",
]


def batch_norm_parameters(model_state) -> Callable[[tuple[str, ...]], bool]:
    """``path -> bool``: true for the parameters of the BatchNorm layers, FedBN's local
    parameters: those of a module whose path also holds statistics in the model state's
    ``batch_stats`` collection (a parameter ``(*module, "scale")`` with statistics
    ``(*module, "mean")``), whatever the module is named."""
    stats = traverse_util.flatten_dict(dict(model_state).get("batch_stats", {}))
    modules = {path[:-1] for path in stats}
    return lambda path: tuple(path[:-1]) in modules


def _split(params, personal: Callable):
    """The personal leaves of ``params``, keyed by "/"-joined path."""
    flat = traverse_util.flatten_dict(params)
    return {"/".join(k): v for k, v in flat.items() if personal(k)}


def _merge(params, personal_flat: dict):
    """``params`` with the leaves named in ``personal_flat`` replaced by its values."""
    if not personal_flat:
        return params
    flat = traverse_util.flatten_dict(params)
    flat = {k: personal_flat.get("/".join(k), v) for k, v in flat.items()}
    return traverse_util.unflatten_dict(flat)


def mean_model_state(model_states_C, weights_C, previous):
    """The weighted mean of the clients' model states; ``previous`` when no client reported."""
    mean, _ = aggregation.weighted_mean().update(model_states_C, None, weights=weights_C)
    reported = jnp.sum(weights_C) > 0
    return jax.tree.map(lambda m, p: jnp.where(reported, m, p), mean, previous)


def personal_variables(state: ServerState, client_id: int, personal: str = "none") -> dict:
    """Client ``client_id``'s own variables: the global parameters with its personal
    (FedBN) parameters, and its own model state when it keeps one; else the global model's."""
    own = _client_variables(state, client_id)
    return own if personal != "none" else {**own, "params": state.params}


def _client_variables(state: ServerState, client_id: int) -> dict:
    """The global parameters with every parameter client ``client_id`` keeps for itself, and
    its own model state when it keeps one (else the global model's)."""
    rows = jax.tree.map(lambda leaf: leaf[client_id], state.clients)
    return {
        "params": _merge(state.params, rows.get("params", {})),
        "state": rows.get("model_state", state.model_state),
    }


def fedavg_parts(
    objective: Objective,
    client_tx: optax.GradientTransformation,
    server_tx: optax.GradientTransformation,
    *,
    num_clients: int = 0,
    aggregator: optax.GradientTransformationExtraArgs | None = None,
    model_state: str = "average",
    personal: str = "none",
    client_optimizer_state: str = "reset",
    context: Callable | None = None,
    client_extras: Callable | None = None,
    unroll: int | bool = 1,
    local_parameters: Callable[[tuple[str, ...]], bool] | None = None,
) -> FederatedParts:
    """FedAvg's parts (see the module docstring).

    Args:
      objective: the local objective (`fedjax_sim.core.tasks.cross_entropy` for FedAvg).
      client_tx: the client optimizer.
      server_tx: the server optimizer, fed the negated aggregated delta.
      num_clients: K; needed when clients keep state (``model_state="local"``, ``personal``,
        ``client_optimizer_state="keep"``).
      aggregator: defaults to `aggregation.weighted_mean`.
      model_state: one of `MODEL_STATE_MODES`.
      personal: ``"norm"`` for FedBN (`batch_norm_parameters` stay local), else ``"none"``.
      client_optimizer_state: ``"reset"`` (fresh every round) or ``"keep"`` (each client's
        optimizer state persists across its rounds, as per-client state).
      context: ``context(state, client_input) -> dict`` handed to the objective (FedProx's
        anchor); None gives ``None``.
      client_extras: ``client_extras(client_input, local_result) -> dict`` of per-client values
        passed to the aggregator as extra arguments (FedNova's normalizer ``local_work``).
      unroll: ``unroll`` of the local-step scan.
      local_parameters: ``local_parameters(path) -> bool``: parameters every client keeps for
        itself, never averaged (FedPer's head, LG-FedAvg's body; FedBN's BatchNorm layers
        are ``personal="norm"``); their server copy stays at its initial value. They are
        logged (absl, INFO) when the state is made.

    Raises:
      ValueError: an option outside its values, per-client state without ``num_clients``,
        or (at ``init``) ``personal="norm"`` for a model without BatchNorm layers.
    """
    for name, value, allowed in (
        ("model_state", model_state, MODEL_STATE_MODES),
        ("personal", personal, PERSONAL),
        ("client_optimizer_state", client_optimizer_state, CLIENT_OPTIMIZER_STATE),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    local_state = model_state == "local" or personal == "norm"
    keep_opt = client_optimizer_state == "keep"
    if (local_state or keep_opt) and num_clients < 1:
        raise ValueError("num_clients (K) is needed for per-client state, got 0")
    setup = _FedAvgSetup(
        client_tx=client_tx,
        server_chain=aggregation.server_chain(server_tx, aggregator),
        run_local=make_local_steps(objective, client_tx, unroll=unroll),
        personal=personal,
        local_parameters=local_parameters,
        local_state=local_state,
        keep_opt=keep_opt,
        average_model_state=model_state == "average" and not local_state,
        context=context,
        client_extras=client_extras,
        num_clients=num_clients,
    )
    keeps_own = local_parameters is not None or local_state
    return FederatedParts(
        client_update=functools.partial(_client_update, setup),
        server_update=functools.partial(_server_update, setup),
        init=functools.partial(_init, setup),
        personal=_client_variables if keeps_own else None,
    )


class _FedAvgSetup(NamedTuple):
    """`fedavg_parts`' fixed pieces: its arguments, with ``server_chain`` the whole server
    step, ``run_local`` the client's J steps, and the options resolved: ``local_state`` (each
    client keeps its model state), ``keep_opt`` (and its optimizer state),
    ``average_model_state`` (the server averages the clients' model states)."""

    client_tx: optax.GradientTransformation
    server_chain: optax.GradientTransformationExtraArgs
    run_local: Callable
    personal: str
    local_parameters: Callable[[tuple[str, ...]], bool] | None
    local_state: bool
    keep_opt: bool
    average_model_state: bool
    context: Callable | None
    client_extras: Callable | None
    num_clients: int

    def personal_of(self, model_state) -> Callable | None:
        """``path -> bool`` of the parameters each client keeps, or None when none."""
        if self.personal == "norm":
            return batch_norm_parameters(model_state)
        return self.local_parameters


def _init(setup: _FedAvgSetup, variables) -> ServerState:
    """The round-0 state, with every client's copy of what it keeps for itself."""
    params = variables["params"]
    clients = {}
    personal_fn = setup.personal_of(variables["state"])
    if personal_fn:
        clients["params"] = _split(params, personal_fn)
        if setup.personal == "norm" and not clients["params"]:
            raise ValueError(
                "personal='norm' (FedBN) keeps the BatchNorm layers local, and this model "
                "has none (no batch_stats in its state)"
            )
        logging.info("local parameters, never averaged: %s", ", ".join(clients["params"]))
    if setup.local_state:
        clients["model_state"] = variables["state"]
    if setup.keep_opt:
        clients["opt_state"] = setup.client_tx.init(params)
    return new_server_state(
        variables,
        setup.server_chain.init(params),
        replicate_for_clients(clients, setup.num_clients),
    )


def _client_update(setup: _FedAvgSetup, state: ServerState, clients, inputs) -> ClientOutput:
    """ONE client's J steps from the global model (with its own kept parts); its delta is zero
    on the parameters it keeps, which are never averaged."""
    own = inputs.client_state
    personal_fn = setup.personal_of(state.model_state)
    params = _merge(state.params, own.get("params", {}))
    model_state = own.get("model_state", state.model_state)
    opt_state = own["opt_state"] if setup.keep_opt else setup.client_tx.init(params)
    result = setup.run_local(
        params, model_state, opt_state, clients, inputs.indices_JxB, inputs.mask_JxB,
        inputs.rng, None if setup.context is None else setup.context(state, inputs),
    )  # fmt: skip
    delta = jax.tree.map(jnp.subtract, result.params, params)
    new_own = {}
    if personal_fn:
        new_own["params"] = _split(result.params, personal_fn)
        zero = {k: jnp.zeros_like(v) for k, v in _split(delta, personal_fn).items()}
        delta = _merge(delta, zero)  # personal layers are never averaged
    if setup.local_state:
        new_own["model_state"] = result.model_state
    if setup.keep_opt:
        new_own["opt_state"] = result.opt_state
    extras = {} if setup.client_extras is None else setup.client_extras(inputs, result)
    return ClientOutput(delta, result.model_state, new_own, result.metrics, extras)


def _server_update(setup: _FedAvgSetup, state: ServerState, outputs_C, weights_C) -> ServerState:
    """The server chain on the clients' deltas; the model state averaged when it is shared."""
    updates, opt_state = setup.server_chain.update(
        outputs_C.delta, state.opt_state, state.params, weights=weights_C, **outputs_C.extras
    )
    params = optax.apply_updates(state.params, updates)
    model_state = state.model_state
    if setup.average_model_state:
        model_state = mean_model_state(outputs_C.model_state, weights_C, state.model_state)
    return state.replace(params=params, model_state=model_state, opt_state=opt_state)


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
    sampler: Sampler | None = None,
    local_work: str = "fixed",
    **part_options,
) -> Algorithm:
    """Builds FedAvg (and FedAvgM/FedAdam/FedYogi/FedAdagrad through ``server_tx``, FedBN
    through ``personal="norm"``).

    Args:
      task: model and input pipeline.
      client_tx: the client optimizer.
      server_tx: the server optimizer, fed the negated aggregated delta.
      clients_per_round: C, sampled uniformly without replacement unless ``sampler`` is given.
      local_steps: J minibatch steps per client (with ``local_epochs``: the static maximum, i.e.
        ``ceil(E * max_n / B)``; steps past a client's E epochs are masked no-ops).
      batch_size: B.
      local_epochs: E, or None for exactly J steps per client.
      weighting: ``"examples"`` (weights n_k) or ``"uniform"``.
      client_axis, chunk_size, client_mesh, unroll_local_steps: the `Execution`.
      aggregator: defaults to `aggregation.weighted_mean`.
      augment: apply the task's training augmentation.
      sampler: a `fedjax_sim.core.selection` sampler (default: uniform).
      local_work: `fedjax_sim.core.round.local_steps_per_client` policy.
      **part_options: `fedavg_parts` options (``num_clients``, ``model_state``,
        ``personal``, ``client_optimizer_state``).

    Returns:
      `Algorithm` with ``init(variables) -> ServerState`` and the jit-able ``round_fn``.

    Example:
      >>> algo = fed_avg(task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=10,
      ...                local_steps=8, batch_size=64)
      >>> state = algo.init(task.model.init(jax.random.key(0)))
      >>> state, metrics = jax.jit(algo.round_fn)(state, clients, jax.random.key(1))
    """
    execution = Execution(client_axis, chunk_size, client_mesh, unroll_local_steps)
    parts = fedavg_parts(
        cross_entropy(task, augment=augment),
        client_tx,
        server_tx,
        aggregator=aggregator,
        unroll=unroll_local_steps,
        **part_options,
    )
    round_fn = federated_round(
        parts,
        task=task,
        sampler=sampler or uniform(clients_per_round),
        local_steps=local_steps,
        batch_size=batch_size,
        local_epochs=local_epochs,
        local_work=local_work,
        weighting=weighting,
        execution=execution,
    )
    return Algorithm(init=parts.init, round_fn=round_fn, personal=parts.personal)
