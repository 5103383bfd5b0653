"""From a config to an `Algorithm`: the algorithm's parts, its sampler, and the execution.

The algorithm (``config.algorithm`` and its groups) and the execution (``client_axis``,
``chunk_size``, ``client_devices``, ``unroll_local_steps``) are built separately, so fitting a
round to a memory budget changes the execution alone.
"""

from __future__ import annotations

import dataclasses

import ml_collections
from absl import logging

from fedjax_sim.config.checks import ConfigError, build_optimizer, resolved_weighting
from fedjax_sim.core.attacks import attack_updates
from fedjax_sim.core.engine import (
    Execution,
    client_mesh_for,
    clients_within_memory_budget,
    resolve_client_axis,
    resolve_unroll,
    steps_in_program,
)
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.robust_aggregation import make_aggregator
from fedjax_sim.core.round import federated_round
from fedjax_sim.core.selection import make_sampler
from fedjax_sim.core.speeds import make_job_durations
from fedjax_sim.core.tasks import Task, cross_entropy


def clients_per_round(config: ml_collections.ConfigDict, num_clients: int) -> int:
    """C: ``clients_per_round``, or ``participation`` x K when it is 0.

    Raises:
      ConfigError: ``clients_per_round`` exceeds the K clients of the population.
    """
    if config.clients_per_round > num_clients:
        raise ConfigError(
            f"clients_per_round={config.clients_per_round} exceeds the {num_clients} clients of "
            f"the population; at most {num_clients}"
        )
    return config.clients_per_round or max(1, round(config.participation * num_clients))


def execution_for(config: ml_collections.ConfigDict, task: Task, num_clients: int) -> Execution:
    """The config's execution settings, ``"auto"`` resolved for this backend and model."""
    per_round = clients_per_round(config, num_clients)
    mesh = client_mesh_for(config.client_devices, per_round, config.data_devices)
    steps = config.client.local_steps
    unroll = config.unroll_local_steps or resolve_unroll(task.model, num_steps=steps)
    devices = mesh.shape["clients"] if mesh is not None else 1
    client_axis = resolve_client_axis(
        config.client_axis, task.model, clients=per_round // devices,
        steps_in_program=steps_in_program(unroll, steps) if steps else 1,
    )  # fmt: skip
    return Execution(
        client_axis=client_axis, chunk_size=config.chunk_size or None, mesh=mesh, unroll=unroll
    )


def job_durations(config, num_workers: int):
    """Each worker's job durations (`fedjax_sim.core.speeds.make_job_durations`) of ``speed``."""
    speed = config.speed
    try:
        return make_job_durations(
            speed.model, num_workers=num_workers, seed=config.seed, sigma=speed.sigma,
            straggler_fraction=speed.straggler_fraction, slowdown=speed.slowdown,
            durations=speed.durations,
        )  # fmt: skip
    except ValueError as error:  # durations for another number of workers
        raise ConfigError(str(error)) from error


def optimizers(config):
    """The client (or inner) and the server (or outer) optimizers of ``config``."""
    return build_optimizer(config, "client"), build_optimizer(config, "server")


def client_optimizer(config):
    """The client (or inner) optimizer of ``config`` (also the fine-tuning optimizer)."""
    return optimizers(config)[0]


def federated_algorithm(
    config, task: Task, num_clients: int, execution: Execution, parts, *, run_members=None
) -> Algorithm:
    """A federated `Algorithm`: `fedjax_sim.core.round.federated_round` over the parts
    ``parts(config, task, objective, client_tx, server_tx, aggregator, options)`` (``options``:
    num_clients, model_state, client_optimizer_state, unroll), with ``config.robust.attack`` on
    the clients' updates. ``run_members(parts, round_options)``, when given, runs the round
    instead (FedSeq's superclients)."""
    count = clients_per_round(config, num_clients)
    sampler = None
    if run_members is None:
        selection = config.selection
        sampler = make_sampler(
            selection.name,
            count,
            num_clients,
            gamma=selection.gamma,
            candidates=selection.candidates,
            replace=selection.replace,
            dropout=selection.dropout,
            seed=config.data.seed,
        )
    objective = cross_entropy(task, augment=config.data.augment)
    client_tx, server_tx = optimizers(config)
    robust = config.robust
    try:  # checked against the clients a round, known once the data is
        aggregator = make_aggregator(
            robust.aggregator, trim_fraction=robust.trim_fraction, max_norm=robust.max_norm,
            byzantine=robust.byzantine, krum_selected=robust.krum_selected,
            clients_per_round=count,
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(str(error)) from error
    options = {
        "num_clients": num_clients,
        "model_state": config.model_state,
        "client_optimizer_state": config.client.optimizer_state,
        "unroll": execution.unroll,
    }
    built = parts(config, task, objective, client_tx, server_tx, aggregator, options)
    built = attack_updates(built, config.robust.attack, config.robust.attack_scale)
    round_options = {
        "local_steps": config.client.local_steps,
        "batch_size": config.client.batch_size,
        "local_epochs": config.client.local_epochs or None,
        "weighting": resolved_weighting(config),
        "execution": execution,
    }
    if run_members is not None:
        return run_members(built, round_options)
    round_fn = federated_round(
        built, task=task, sampler=sampler, local_work=config.client.local_work, **round_options
    )
    return Algorithm(init=built.init, round_fn=round_fn, personal=built.personal)


def build_algorithm(
    config: ml_collections.ConfigDict,
    task: Task,
    num_clients: int,
    execution: Execution | None = None,
    *,
    superclients=None,
) -> Algorithm:
    """The `Algorithm` that ``config.algorithm`` names (its `fedjax_sim.config.registry`
    entry's builder), run with ``execution`` (default: the config's, `execution_for`); FedSeq
    needs its ``superclients``, the ``[G, M]`` groups of
    `fedjax_sim.algorithms.fedseq_groups.group_clients`.

    Raises:
      ConfigError: an unknown algorithm, fedseq without superclients, or more superclients per
        round than groups.
    """
    from fedjax_sim.config import registry

    entry = registry.get(config.algorithm)
    if entry.family != "centralized":
        execution = execution or execution_for(config, task, num_clients)
    return entry.build(config, task, num_clients, execution, superclients=superclients)


def fit_algorithm_to_memory(
    config, task, clients, state, key, algorithm, *, superclients=None
) -> Algorithm:
    """``algorithm``, or when its vectorized round would exceed ``config.memory_budget_gb``,
    the same algorithm run in chunks of as many clients as fit
    (`engine.clients_within_memory_budget`); only the execution changes.

    The check compiles the round as training will (reused from JAX's cache when it fits); a
    round over budget costs one more compilation per chunk size tried.
    """
    from fedjax_sim.config import registry

    if registry.get(config.algorithm).family == "centralized" or not config.memory_budget_gb:
        return algorithm
    execution = execution_for(config, task, clients.num_clients)
    if execution.client_axis != "vmap":
        return algorithm
    num = clients_per_round(config, clients.num_clients)

    def chunked(k):
        return dataclasses.replace(execution, client_axis="chunked", chunk_size=k)

    def round_for_chunk(k):
        if k == num:  # all clients at once: the vectorized round itself
            return algorithm.round_fn
        return build_algorithm(
            config, task, clients.num_clients, chunked(k), superclients=superclients
        ).round_fn

    chunk, chunk_bytes = clients_within_memory_budget(
        round_for_chunk, (state, clients, key), num, config.memory_budget_gb * 2**30
    )
    if chunk == num:
        return algorithm
    logging.info(
        "memory_budget_gb=%g: %d clients vectorized at once exceed it; running chunks of %d "
        "clients (%.2f GiB by XLA's memory analysis)",
        config.memory_budget_gb,
        num,
        chunk,
        chunk_bytes / 2**30,
    )
    return build_algorithm(
        config, task, clients.num_clients, chunked(chunk), superclients=superclients
    )
