"""Adds the client axis to a one-client function, inside one compiled program.

An algorithm writes ``client_update`` for ONE client; `map_clients` turns it into a function over
a leading client axis C of every argument. The formulations differ only in speed and memory:

  * ``"vmap"``: all C clients vectorized at once (`jax.vmap`). Fastest on GPU/TPU, and for small
    per-client work anywhere; memory grows with C.
  * ``"map"``: clients one after another inside the compiled call (`jax.lax.map`); memory and
    compile time of one client. The body is a loop, where XLA:CPU runs the backward pass of its
    own convolutions slowly (jax-ml/jax#12868); `fedjax_sim.models.conv` avoids that.
  * ``"chunked"``: `jax.lax.map` over chunks of ``chunk_size`` vectorized clients; bounds memory
    to ``chunk_size`` clients at a time. Where vmap's memory would exceed a budget,
    `clients_within_memory_budget` picks the chunk.
  * ``"sequential"``: the clients one after another, unrolled into the program (no loop), so
    XLA:CPU keeps its fast convolutions; compile time grows with C.

``"auto"`` picks per backend and model (see `resolve_client_axis`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

CLIENT_AXIS_MODES = ("auto", "vmap", "map", "chunked", "sequential")
CLIENT_MESH_AXIS = "clients"  # the mesh axis that `map_clients` splits clients over
DATA_MESH_AXIS = "data"  # an optional second axis: each client's batch split over its devices


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a round runs its clients; changes speed and memory, never results (beyond float
    reassociation between formulations).

    Attributes:
      client_axis: ``"vmap"``, ``"map"``, ``"chunked"`` or ``"sequential"`` (`map_clients`).
      chunk_size: clients vectorized together with ``"chunked"``.
      mesh: optional mesh with a ``"clients"`` axis the round's clients (and the per-client
        state of all K clients) are split over, and optionally a ``"data"`` axis each
        client's batches are split over (`split_batch`).
      unroll: ``unroll`` of the `lax.scan` over local steps.
    """

    client_axis: str = "vmap"
    chunk_size: int | None = None
    mesh: jax.sharding.Mesh | None = None
    unroll: int | bool = 1

    def map_clients(self, fn: Callable) -> Callable:
        """`map_clients` of the one-client ``fn`` with this client axis, chunk size and mesh."""
        return map_clients(fn, self.client_axis, self.chunk_size, self.mesh)


# "sequential" writes each of a device's clients into the program, and with unrolled local
# steps each step too: C x J copies of the training step. Above this many, "auto" runs the
# clients in a loop ("map") instead: ResNet-20 on the digits with 10 clients of 8 unrolled
# steps (80 copies) compiled for over 10 minutes on 2 cores, in a loop in 35 s, and its
# rounds took the same 24-26 s either way.
MAX_PROGRAM_COPIES = 16


def resolve_client_axis(
    mode: str,
    model,
    backend: str | None = None,
    clients: int | None = None,
    steps_in_program: int = 1,
) -> str:
    """The concrete formulation for ``mode``; ``"auto"`` uses what measured fastest.

    On GPU/TPU the vectorized round (``"vmap"``) is expected to win; on CPU it is the model's
    own ``cpu_client_axis`` (`fedjax_sim.models.model.Model`), measured in
    experiments/benchmarks/bench_round.py: e.g. ``"map"`` for the course CNN with the loop-friendly
    convolution and for the LSTM, ``"vmap"`` for many small clients (MLP). A ``"sequential"``
    choice becomes ``"map"`` when ``clients`` (each device's; None: unknown) times
    ``steps_in_program`` (the local steps written out, `resolve_unroll`) exceeds
    `MAX_PROGRAM_COPIES`. An explicit mode is returned as it is.
    """
    if mode not in CLIENT_AXIS_MODES:
        raise ValueError(f"client_axis must be one of {list(CLIENT_AXIS_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    if (backend or jax.default_backend()) != "cpu":
        return "vmap"
    copies = (clients or 0) * max(1, steps_in_program)
    if model.cpu_client_axis == "sequential" and copies > MAX_PROGRAM_COPIES:
        return "map"
    return model.cpu_client_axis


def client_mesh_for(
    client_devices: int, clients_per_round: int, data_devices: int = 1
) -> jax.sharding.Mesh | None:
    """The mesh `map_clients` splits a round's clients over, or None for one device.

    Args:
      client_devices: 0 = every device (or group of ``data_devices``) when their number
        divides the round's clients (else one); N = the first N, N must divide them.
      clients_per_round: C.
      data_devices: devices each client's batch is split over (a ``"data"`` mesh axis when
        above 1); it must divide the device count.
    """
    all_devices = jax.devices()
    if data_devices < 1 or len(all_devices) % data_devices:
        raise ValueError(
            f"data_devices must divide the {len(all_devices)} devices present, got {data_devices}"
        )
    devices = all_devices[::data_devices]  # one per group of data_devices
    if client_devices == 0:
        count = len(devices) if clients_per_round % len(devices) == 0 else 1
    elif client_devices > len(devices) or clients_per_round % client_devices:
        raise ValueError(
            f"client_devices must divide clients_per_round={clients_per_round} and be at most "
            f"the {len(devices)} devices present, got {client_devices}"
        )
    else:
        count = client_devices
    if jax.process_count() > 1 and count * data_devices != len(all_devices):
        raise ValueError(
            f"with {jax.process_count()} processes the round must use all {len(all_devices)} "
            f"devices: clients_per_round={clients_per_round} must be a multiple of "
            f"{len(devices)} and client_devices 0 or {len(devices)}"
        )
    if data_devices > 1:
        grid = np.array(all_devices[: count * data_devices]).reshape(count, data_devices)
        return jax.sharding.Mesh(grid, (CLIENT_MESH_AXIS, DATA_MESH_AXIS))
    if count == 1:
        return None
    return jax.sharding.Mesh(np.array(devices[:count]), (CLIENT_MESH_AXIS,))


def split_batch(batch):
    """``batch`` constrained to be split along its first (example) axis over the ``"data"``
    mesh axis, inside a round whose mesh has one; unchanged otherwise. XLA then runs each
    client's batch on its data devices and sums the gradients across them."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_MESH_AXIS not in mesh.axis_names:
        return batch
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_MESH_AXIS))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), batch)


# Loops longer than this run rolled even where the model asks for full unrolling: a fully
# unrolled 64-step loop of the CNN compiles for minutes, and its loop-friendly convolution
# keeps rolled loops fast on CPU.
MAX_UNROLLED_STEPS = 16


def steps_in_program(unroll: int | bool, num_steps: int) -> int:
    """How many of a scan's ``num_steps`` steps its ``unroll`` writes into the program."""
    return num_steps if unroll is True else max(1, min(int(unroll), num_steps))


def resolve_unroll(model, backend: str | None = None, num_steps: int | None = None) -> int | bool:
    """`lax.scan` unroll of ``num_steps`` local steps (None: any number): the model's
    ``cpu_unroll`` on CPU (fully unrolled for convolutional models, whose backward convolutions
    XLA:CPU runs slowly in loop bodies, jax-ml/jax#12868) up to `MAX_UNROLLED_STEPS` steps,
    else rolled."""
    if (backend or jax.default_backend()) != "cpu":
        return 1
    if num_steps is not None and num_steps > MAX_UNROLLED_STEPS:
        return 1
    return model.cpu_unroll


def map_clients(
    fn: Callable,
    mode: str,
    chunk_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Callable:
    """``fn(*args)`` for one client -> a function over a leading client axis of all ``args``.

    Args:
      fn: the one-client function; every argument and output gains the client axis.
      mode: one of ``"vmap"``, ``"map"``, ``"chunked"``, ``"sequential"`` (resolve ``"auto"``
        first): how each device runs its clients.
      chunk_size: clients vectorized together in ``"chunked"`` mode.
      mesh: optional mesh with a ``"clients"`` axis: the client axis is split over its devices
        with `jax.shard_map`, each device running its C / devices clients by ``mode``, all in
        the same compiled program (C must divide evenly). Values ``fn`` closes over (the global
        parameters, the client data) are replicated.
    """
    per_device = _map_clients_on_one_device(fn, mode, chunk_size)
    if mesh is None:
        return per_device
    spec = jax.sharding.PartitionSpec(CLIENT_MESH_AXIS)

    def sharded(*args):
        num = jax.tree.leaves(args)[0].shape[0]
        if num % mesh.shape[CLIENT_MESH_AXIS]:
            raise ValueError(
                f"clients_per_round={num} must be a multiple of the {mesh.shape[CLIENT_MESH_AXIS]}"
                " devices the client axis is sharded over"
            )
        # check_vma=False: the local steps' carry starts from the replicated global parameters
        # and becomes per-device after one step, which the varying-type check would reject.
        # Only the clients axis is manual: a data axis stays XLA's to partition (split_batch).
        return jax.shard_map(
            per_device, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False,
            axis_names=frozenset({CLIENT_MESH_AXIS}),
        )(*args)  # fmt: skip

    return sharded


def _map_clients_on_one_device(fn: Callable, mode: str, chunk_size: int | None) -> Callable:
    if mode == "vmap":
        return jax.vmap(fn)
    if mode == "map":
        return lambda *args: jax.lax.map(lambda a: fn(*a), args)
    if mode == "sequential":

        def sequential(*args):
            outputs = [
                fn(*jax.tree.map(lambda a, c=c: a[c], args))
                for c in range(jax.tree.leaves(args)[0].shape[0])
            ]
            return jax.tree.map(lambda *o: jnp.stack(o), *outputs)

        return sequential
    if mode == "chunked":
        if not chunk_size or chunk_size < 1:
            raise ValueError(
                f"chunk_size must be a positive int for client_axis='chunked', got {chunk_size!r}"
            )
        return lambda *args: jax.lax.map(lambda a: fn(*a), args, batch_size=chunk_size)
    raise ValueError(f"client_axis must be one of {list(CLIENT_AXIS_MODES[1:])}, got {mode!r}")


def round_memory_bytes(round_fn: Callable, *args) -> int:
    """Peak device bytes of the round ``round_fn(state, *rest)`` by XLA's memory analysis
    (compiled, not run): arguments + outputs - donated aliases + temporaries.

    It is compiled as `fedjax_sim.runtime.simulate.simulate` compiles a round (the state
    donated), so JAX's compilation cache hands that same executable to the training loop:
    checking a round that fits costs no extra compilation.
    """
    stats = jax.jit(round_fn, donate_argnums=0).lower(*args).compile().memory_analysis()
    return (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )


def clients_within_memory_budget(
    round_for_chunk: Callable[[int], Callable], args, clients_per_round: int, budget_bytes: float
) -> tuple[int, int]:
    """How many clients to vectorize at once so that a round fits in ``budget_bytes``.

    Tries k = C, then about half as many each time (a divisor of C where one lies within a
    factor of two, since `lax.map`'s remainder chunk costs memory of its own), and returns the
    first k whose round, compiled but never run, XLA's memory analysis puts within the budget.
    Peak memory is not monotone in k for small k (XLA reuses buffers), so it is measured, not
    extrapolated; this costs at most log2(C) + 1 compilations, and only when over budget.

    Args:
      round_for_chunk: ``k -> round_fn`` with ``k`` clients vectorized per chunk; for k = C it
        may return the plain vectorized round, which is then the one measured.
      args: the round's arguments (arrays or `jax.ShapeDtypeStruct`s).
      clients_per_round: C.
      budget_bytes: the budget.

    Returns:
      ``(k, bytes)``: clients per chunk and XLA's peak bytes for the round at that k.

    Raises:
      ValueError: a round with one client at a time does not fit.
    """
    k = clients_per_round
    while True:
        peak = round_memory_bytes(round_for_chunk(k), *args)
        if peak <= budget_bytes:
            return k, peak
        if k == 1:
            raise ValueError(
                f"memory_budget_gb={budget_bytes / 2**30:g} is too small: a round with one "
                f"client at a time needs {peak / 2**30:.2f} GiB"
            )
        k = _chunk_at_most(clients_per_round, max(k // 2, 1))


def _chunk_at_most(total: int, limit: int) -> int:
    """The largest divisor of ``total`` in [limit / 2, limit], else ``limit``."""
    for k in range(limit, (limit + 1) // 2 - 1, -1):
        if total % k == 0:
            return k
    return limit
