"""From a config to an `Algorithm`: its registry entry's builder, and the execution.

The algorithm (``config.algorithm`` and its groups) and the execution (``client_axis``,
``chunk_size``, ``client_devices``, ``unroll_local_steps``) are built separately, so fitting a
round to a memory budget changes the execution alone.
"""

from __future__ import annotations

import dataclasses

import ml_collections
from absl import logging

from fedjax_sim.config import registry
from fedjax_sim.config.building_blocks import clients_per_round
from fedjax_sim.core.engine import (
    Execution,
    client_mesh_for,
    clients_within_memory_budget,
    resolve_client_axis,
    resolve_unroll,
    steps_in_program,
)
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.tasks import Task


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


def build_algorithm(
    config: ml_collections.ConfigDict,
    task: Task,
    num_clients: int,
    execution: Execution | None = None,
    **prepared,
) -> Algorithm:
    """The `Algorithm` that ``config.algorithm`` names (its `fedjax_sim.config.registry`
    entry's builder), run with ``execution`` (default: the config's, `execution_for`);
    ``prepared`` are the keyword arguments of the entry's `HostStep` (FedSeq's
    ``superclients``, the ``[G, M]`` groups of `fedjax_sim.algorithms.fedseq_groups`), which an
    entry without one ignores.

    Raises:
      ConfigError: an unknown algorithm, or what the entry's builder refuses (fedseq without
        superclients, or more superclients per round than groups).
    """
    entry = registry.get(config.algorithm)
    if entry.family != "centralized":
        execution = execution or execution_for(config, task, num_clients)
    return entry.build(config, task, num_clients, execution, **prepared)


def fit_algorithm_to_memory(config, task, clients, state, key, algorithm, **prepared) -> Algorithm:
    """``algorithm``, or when its vectorized round would exceed ``config.memory_budget_gb``,
    the same algorithm run in chunks of as many clients as fit
    (`engine.clients_within_memory_budget`); only the execution changes.

    The check compiles the round as training will (reused from JAX's cache when it fits); a
    round over budget costs one more compilation per chunk size tried.
    """
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
        return build_algorithm(config, task, clients.num_clients, chunked(k), **prepared).round_fn

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
    return build_algorithm(config, task, clients.num_clients, chunked(chunk), **prepared)
