"""Decentralized gossip SGD and its A2CiD2 acceleration (Nabli, Belilovsky & Oyallon 2023).

No server: K workers, each with its own model ``x_k``, take gradient steps on their IID shards
and average pairwise with a neighbour. A2CiD2 adds to each worker a second variable ``x~_k``
(initially ``x_k``) and a continuous momentum between events, the linear ODE

    d/dt (x, x~) = eta (x~ - x, x - x~)      (time in gradient steps)

whose flow over ``dt`` mixes the pair by ``a = (1 + e^(-2 eta dt)) / 2``, ``b = 1 - a``:
``x <- a x + b x~``, ``x~ <- b x + a x~``. At a gradient step a worker's optimizer update
``u`` is applied to both (``x += u``, ``x~ += u``); at a communication with neighbour ``j``,
``x~_k += beta~ (x_j - x_k)`` and ``x_k <- (x_k + x_j) / 2``. The constants follow the paper
from the gossip graph's Laplacian ``L = R (I - W)`` (``R`` communications per gradient step,
``W`` the neighbour-averaging matrix): ``chi_1 = 1 / lambda_2(L)``, ``chi_2`` the largest
edge resistance ``(e_i - e_j)^T L^+ (e_i - e_j) / 2``, ``eta = 1 / (2 sqrt(chi_1 chi_2))``,
``beta~ = sqrt(chi_1 / chi_2) / 2`` (the authors' reference code, AdelNabli/ACiD). Without
acceleration this is asynchronous gossip SGD (AD-PSGD's pairwise averaging), the baseline.

The event schedule is the reference code's deterministic one: every tick (one nominal gradient
time), each worker that is due takes one gradient step, then ``R`` communication rounds
follow, each a matching of the graph; events are ``1 / (R + 1)`` apart. Under a speed model
(`fedjax_sim.core.speeds`) a worker is due when its previous step's duration has
elapsed, so a straggler 4x slower steps every 4th tick while the others go on, averaging with
whatever its neighbours hold: the asynchrony A2CiD2 is for. A worker takes at most one step per
tick (durations are in ticks, at least one). Graphs: ``"ring"`` (alternately the even and the
odd edges of the cycle, as the reference's cycle graph) or ``"random_pairs"`` (a fresh random
perfect matching every time: the complete graph). A round is H ticks (``local_steps``), its
gradient steps vectorized over the workers; the reported ``params`` are the workers' mean.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_sim.algorithms.local_schedules import worker_divergence
from fedjax_sim.core.engine import Execution
from fedjax_sim.core.local import (
    Algorithm,
    job_keys,
    make_local_steps,
    sum_metrics,
    training_metrics,
)
from fedjax_sim.core.round import new_server_state, replicate_for_clients, shard_client_states
from fedjax_sim.core.speeds import make_job_durations
from fedjax_sim.core.tasks import Objective
from fedjax_sim.data.client_data import ClientData, round_batch_plan

GOSSIP_GRAPHS = ("ring", "random_pairs")


def ring_matchings(num_workers: int) -> np.ndarray:
    """``[2, K]`` partners on the cycle: the even edges ``(0,1), (2,3), ...`` and the odd ones
    ``(1,2), (3,4), ...`` (with ``(K-1, 0)`` for even K); unmatched workers are their own."""
    partners = np.tile(np.arange(num_workers), (2, 1))
    for parity in (0, 1):
        for i in range(parity, num_workers - 1 + parity, 2):
            j = (i + 1) % num_workers
            if i != j and partners[parity, i] == i and partners[parity, j] == j:
                partners[parity, i], partners[parity, j] = j, i
    return partners


def random_matching(key, num_workers: int) -> jax.Array:
    """``[K]`` partners of a uniformly random perfect matching (one left out for odd K)."""
    order = jax.random.permutation(key, num_workers)
    pairs = num_workers // 2
    first, second = order[0 : 2 * pairs : 2], order[1 : 2 * pairs : 2]
    partners = jnp.arange(num_workers)
    return partners.at[first].set(second).at[second].set(first)


def gossip_laplacian(graph: str, num_workers: int, communications: float) -> np.ndarray:
    """``R (I - W)``, ``W`` averaging over each worker's neighbours (the ring's two, or all
    others for random pairs)."""
    if graph not in GOSSIP_GRAPHS:
        raise ValueError(f"gossip.graph must be one of {list(GOSSIP_GRAPHS)}, got {graph!r}")
    k = num_workers
    weights = np.zeros((k, k))
    for i in range(k):
        neighbours = (
            [(i - 1) % k, (i + 1) % k] if graph == "ring" else [j for j in range(k) if j != i]
        )
        for j in neighbours:
            weights[i, j] += 1.0 / len(neighbours)
    return communications * (np.eye(k) - weights)


def acid_constants(graph: str, num_workers: int, communications: float) -> tuple[float, float]:
    """A2CiD2's ``(eta, beta~)`` for the graph (module docstring)."""
    laplacian = gossip_laplacian(graph, num_workers, communications)
    chi_1 = 1.0 / np.linalg.eigvalsh(laplacian)[1]
    pseudo_inverse = np.linalg.pinv(laplacian)
    chi_2 = 0.0
    for i in range(num_workers):
        for j in range(num_workers):
            if i != j and laplacian[i, j] != 0:
                e = np.zeros(num_workers)
                e[i], e[j] = 1.0, -1.0
                chi_2 = max(chi_2, 0.5 * e @ pseudo_inverse @ e)
    return 0.5 / np.sqrt(chi_1 * chi_2), 0.5 * np.sqrt(chi_1 / chi_2)


def _exchange(x_K, tilde_K, partner_K, beta_tilde):
    """Every worker averages with its partner; A2CiD2's x~ moves by beta~ toward it."""
    tilde_K = jax.tree.map(lambda t, x: t + beta_tilde * (x[partner_K] - x), tilde_K, x_K)
    return jax.tree.map(lambda x: 0.5 * (x + x[partner_K]), x_K), tilde_K


def gossip_sgd(
    objective: Objective,
    inner_tx: optax.GradientTransformation,
    *,
    num_workers: int,
    local_steps: int,
    batch_size: int,
    graph: str = "ring",
    communications: int = 1,
    accelerate: bool = True,
    durations: Callable | None = None,
    execution: Execution | None = None,
) -> Algorithm:
    """Gossip SGD, with A2CiD2's continuous momentum when ``accelerate`` (module docstring).

    Args:
      objective: the loss.
      inner_tx: each worker's optimizer (its state is per-worker and kept).
      num_workers: K >= 2, one `ClientData` client per worker.
      local_steps: gradient steps per worker and round (ticks).
      batch_size: B per gradient step.
      graph: one of `GOSSIP_GRAPHS`.
      communications: R >= 1 pairwise averagings per worker and gradient step.
      accelerate: A2CiD2 (True) or plain gossip (False, the baseline).
      durations: the speed model, ``durations(workers_K, jobs_K) -> [K]`` in ticks (>= 1);
        default: every step takes one tick.
      execution: the worker axis (vmap, map, mesh); speed and memory only.

    Returns:
      `Algorithm` over a `ServerState` whose ``params`` are the workers' mean and whose
      ``clients`` hold each worker's ``params``, ``tilde`` (A2CiD2's x~), ``opt_state``,
      ``steps`` (gradient steps so far) and ``due`` (when its next step is, in ticks from the
      round's start). The round reports the training metrics, ``consensus``
      (``mean_k |x_k - mean x|^2``), ``syncs`` (one per averaging of all pairs: each worker
      sends and receives one model) and ``clock`` / ``clock_examples`` (H ticks).
    """
    if num_workers < 2 or communications < 1:
        raise ValueError(
            f"gossip needs num_workers >= 2 and communications >= 1, got {num_workers}, "
            f"{communications}"
        )
    eta, beta_tilde = acid_constants(graph, num_workers, communications)
    if not accelerate:
        eta, beta_tilde = 0.0, 0.0
    dt = 1.0 / (communications + 1)
    setup = _GossipSetup(
        inner_tx=inner_tx,
        run_local=make_local_steps(objective, inner_tx, unroll=1),
        durations=durations or make_job_durations("fixed", num_workers=num_workers),
        accelerate=accelerate,
        keep=(1.0 + np.exp(-2.0 * eta * dt)) / 2.0,  # the ODE's flow over one event gap
        beta_tilde=beta_tilde,
        graph=graph,
        ring=jnp.asarray(ring_matchings(num_workers)),
        communications=communications,
        workers=jnp.arange(num_workers),
        local_steps=local_steps,
        batch_size=batch_size,
        execution=execution or Execution(),
    )
    return Algorithm(
        init=functools.partial(_init, setup), round_fn=functools.partial(_round, setup)
    )


class _GossipSetup(NamedTuple):
    """`gossip_sgd`'s fixed pieces: one gradient step (``run_local``), the speed model,
    A2CiD2's constants (``keep``: the ODE's mixing over one event gap; ``beta_tilde``), the
    graph (``ring``: its two matchings), and the sizes."""

    inner_tx: optax.GradientTransformation
    run_local: Callable
    durations: Callable
    accelerate: bool
    keep: float
    beta_tilde: float
    graph: str
    ring: jax.Array
    communications: int
    workers: jax.Array
    local_steps: int
    batch_size: int
    execution: Execution

    @property
    def num_workers(self) -> int:
        return self.workers.shape[0]


class _Workers(NamedTuple):
    """The workers within a round: models ``x_K``, A2CiD2's ``tilde_K``, inner optimizer
    states, gradient steps so far (``steps_K``) and in this round (``taken_K``), and when each
    is next due (``due_K``, in ticks from the round's start)."""

    x_K: Any
    tilde_K: Any
    opt_K: Any
    steps_K: jax.Array
    taken_K: jax.Array
    due_K: jax.Array


def _init(setup: _GossipSetup, variables):
    """Every worker starts from the initial model, with ``x~ = x`` and a fresh inner state."""
    if jax.tree.leaves(variables["state"]):
        raise ValueError(
            "gossip: models with a state (BatchNorm) are not supported; "
            "use model.norm=group or layer, or a stateless model"
        )
    params, num_workers = variables["params"], setup.num_workers
    own = {"params": params, "tilde": params, "opt_state": setup.inner_tx.init(params)}
    own = replicate_for_clients(own, num_workers)
    own.update(steps=jnp.zeros(num_workers, jnp.int32), due=jnp.zeros(num_workers))
    return new_server_state(variables, optax.EmptyState(), own)


def _round(setup: _GossipSetup, state, clients: ClientData, key):
    """H ticks, each the due workers' gradient steps then R pairwise averagings."""
    data_key, train_key, match_key = jax.random.split(key, 3)
    own = state.clients
    # each worker's stream goes on from its own count of steps; the i-th step it takes in
    # this round reads the i-th batch of its plan
    indices_KxJxB, mask_KxJxB = round_batch_plan(
        data_key, clients, setup.workers, num_steps=setup.local_steps,
        batch_size=setup.batch_size, offset=own["steps"] * setup.batch_size,
    )  # fmt: skip
    gradient_steps = _make_gradient_steps(
        setup, state, clients, indices_KxJxB, mask_KxJxB, train_key
    )

    def tick(workers, tick_index):
        workers, metrics_K = gradient_steps(workers, tick_index)
        tick_number = state.round * setup.local_steps + tick_index
        x_K, tilde_K = _communicate(setup, workers.x_K, workers.tilde_K, tick_number, match_key)
        return workers._replace(x_K=x_K, tilde_K=tilde_K), metrics_K

    start = _Workers(own["params"], own["tilde"], own["opt_state"], own["steps"],
                     jnp.zeros(setup.num_workers, jnp.int32), own["due"])  # fmt: skip
    end, metrics_JxK = jax.lax.scan(tick, start, jnp.arange(setup.local_steps))
    new_own = {"params": end.x_K, "tilde": end.tilde_K, "opt_state": end.opt_K,
               "steps": end.steps_K, "due": end.due_K - setup.local_steps}  # fmt: skip
    new_state = state.replace(
        params=jax.tree.map(lambda x: x.mean(0), end.x_K),
        round=state.round + 1,
        clients=shard_client_states(new_own, setup.execution.mesh),
    )
    return new_state, _round_metrics(setup, end.x_K, metrics_JxK)


def _make_gradient_steps(
    setup: _GossipSetup, state, clients: ClientData, indices_KxJxB, mask_KxJxB, train_key
) -> Callable:
    """``gradient_steps(workers, tick_index) -> (workers, metrics_K)``: the ODE's flow up to
    the tick, then one gradient step of every due worker (its next batch of the plan), its
    update added to ``x`` and ``x~``; a worker not due adds a zero update."""

    def step(x, opt_state, indices_B, mask_B, rng):
        result = setup.run_local(
            x, state.model_state, opt_state, clients, indices_B[None], mask_B[None], rng, None
        )
        return jax.tree.map(jnp.subtract, result.params, x), result.opt_state, result.metrics

    step_K = setup.execution.map_clients(step)

    def gradient_steps(workers: _Workers, tick_index):
        due = workers.due_K <= tick_index.astype(workers.due_K.dtype)
        nth_K = jnp.minimum(workers.taken_K, setup.local_steps - 1)
        pick = lambda a: jnp.take_along_axis(a, nth_K[:, None, None], axis=1)[:, 0]  # noqa: E731
        mask_KxB = pick(mask_KxJxB) & due[:, None]
        rngs_K = job_keys(train_key, setup.workers, workers.steps_K)
        x_K, tilde_K = _mix(setup, workers.x_K, workers.tilde_K)
        update_K, opt_K, metrics_K = step_K(
            x_K, workers.opt_K, pick(indices_KxJxB), mask_KxB, rngs_K
        )
        next_due_K = workers.due_K + setup.durations(setup.workers, workers.steps_K)
        workers = _Workers(
            x_K=jax.tree.map(jnp.add, x_K, update_K),
            tilde_K=jax.tree.map(jnp.add, tilde_K, update_K),
            opt_K=opt_K,
            steps_K=workers.steps_K + due,
            taken_K=workers.taken_K + due,
            due_K=jnp.where(due, next_due_K, workers.due_K),
        )
        return workers, metrics_K

    return gradient_steps


def _mix(setup: _GossipSetup, x_K, tilde_K):
    """A2CiD2's continuous momentum over one event gap (nothing without acceleration)."""
    if not setup.accelerate:
        return x_K, tilde_K
    keep = setup.keep
    new_x = jax.tree.map(lambda x, t: keep * x + (1 - keep) * t, x_K, tilde_K)
    new_tilde = jax.tree.map(lambda x, t: (1 - keep) * x + keep * t, x_K, tilde_K)
    return new_x, new_tilde


def _communicate(setup: _GossipSetup, x_K, tilde_K, tick_number, match_key):
    """The R communication events after tick ``tick_number`` (counted over the whole run):
    each the ODE's flow, then every worker averaging with its partner in the event's matching
    (the ring's alternate ones, or a fresh random one)."""
    for c in range(setup.communications):
        event = tick_number * setup.communications + c
        if setup.graph == "ring":
            partner_K = setup.ring[event % 2]
        else:
            partner_K = random_matching(jax.random.fold_in(match_key, event), setup.num_workers)
        x_K, tilde_K = _mix(setup, x_K, tilde_K)
        x_K, tilde_K = _exchange(x_K, tilde_K, partner_K, setup.beta_tilde)
    return x_K, tilde_K


def _round_metrics(setup: _GossipSetup, x_K, metrics_JxK) -> dict:
    """The round's training metrics, ``consensus``, ``syncs`` and its clock (H ticks)."""
    metrics = training_metrics(sum_metrics(sum_metrics(metrics_JxK)))
    num_workers, ticks = setup.num_workers, setup.local_steps
    # an odd K leaves one worker out of every matching
    matched = 1.0 if num_workers % 2 == 0 else (num_workers - 1) / num_workers
    metrics.update(
        consensus=worker_divergence(x_K),
        syncs=jnp.float32(ticks * setup.communications * matched),
        clock=jnp.float32(ticks),
        clock_examples=jnp.float32(ticks * setup.batch_size),
    )
    return metrics
