"""One program on several processes (hosts): start-up through `jax.distributed`, host copies of
global arrays, and which process writes.

Every process runs the same command on the same data and builds the same initial state; after
`initialize_from_environment`, ``jax.devices()`` lists every process's devices, so the client
mesh (`fedjax_sim.core.engine.client_mesh_for`) and the compiled round span them all, per-client
state sharded across processes. Metrics and evaluation read each process's own copy of the
replicated values (`host_copy`); only process 0 writes outputs (`is_writer`), while every
process takes part in orbax's checkpoints, each writing its shards.

Environment (read by `initialize_from_environment`):
  * ``FEDJAX_SIM_COORDINATOR=host:port``, ``FEDJAX_SIM_NUM_PROCESSES=N``,
    ``FEDJAX_SIM_PROCESS_ID=i``: an explicit cluster (e.g. processes on one machine).
  * ``FEDJAX_SIM_DISTRIBUTED=auto``: `jax.distributed.initialize()` finds the cluster itself
    (Cloud TPU slices, SLURM, Open MPI, or JAX's own ``JAX_COORDINATOR_ADDRESS`` variables).
  * neither: one process, nothing started.
On CPU the processes reach each other through gloo collectives.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

_ENV = ("FEDJAX_SIM_COORDINATOR", "FEDJAX_SIM_NUM_PROCESSES", "FEDJAX_SIM_PROCESS_ID")


def initialize_from_environment() -> bool:
    """Starts `jax.distributed` as the environment asks (module docstring), before anything
    starts a JAX backend; returns whether it did.

    Raises:
      ValueError: the explicit variables are incomplete or not numbers (one line).
    """
    given = {name: os.environ.get(name) for name in _ENV}
    auto = os.environ.get("FEDJAX_SIM_DISTRIBUTED", "") == "auto"
    if not any(given.values()) and not auto:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if auto:
        jax.distributed.initialize()
        return True
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} missing: a cluster needs all of {', '.join(_ENV)} "
            "(or FEDJAX_SIM_DISTRIBUTED=auto)"
        )
    try:
        count, index = int(given[_ENV[1]]), int(given[_ENV[2]])
    except ValueError as error:
        raise ValueError(f"{_ENV[1]} and {_ENV[2]} must be integers: {error}") from error
    jax.distributed.initialize(given[_ENV[0]], num_processes=count, process_id=index)
    return True


def is_writer() -> bool:
    """Whether this process writes the run's outputs (process 0)."""
    return jax.process_index() == 0


def host_copy(tree):
    """``tree`` with every JAX array as a host numpy array: this process's own copy of a
    replicated array, the gathered whole of one sharded across processes."""

    def copy(x):
        if not isinstance(x, jax.Array):
            return x
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(copy, tree)


def local_copy(tree):
    """``tree`` itself in one process; with several, `host_copy` (every process must call it:
    gathering a sharded array is a collective)."""
    return tree if jax.process_count() == 1 else host_copy(tree)


def sync(name: str) -> None:
    """Waits until every process reaches this point (no-op in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
