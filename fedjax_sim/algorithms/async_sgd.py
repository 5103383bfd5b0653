"""Asynchronous SGD with a parameter server on K workers, simulated exactly in the compiled round.

Each worker pulls the server's model x_k, runs a job (H inner steps on its IID shard, read as
a continued stream as in `fedjax_sim.algorithms.local_sgd`) and pushes its result
``x_k + delta_k``; the server applies it when it arrives, weighted by its staleness ``tau``
(server updates since the worker pulled; a fresh result has tau = 0), through an optax outer
optimizer, and the worker pulls again at once. Two rules (``rule``):

  * ``"delta"``: the delta from the model the worker pulled, scaled,
    ``x <- x + outer(-s(tau) delta_k)`` (outer sgd(1.0): ``x <- x + s(tau) delta_k``).
  * ``"fedasync"``: FedAsync's mixing (Xie et al. 2019, Algorithm 1),
    ``x <- (1 - alpha_t) x + alpha_t (x_k + delta_k)`` with ``alpha_t = alpha s(tau)``: the
    step ``alpha_t (x_k + delta_k - x)`` goes through the outer optimizer the same way, so
    outer sgd(1.0) is the paper's rule. (The paper's workers may add a proximal term rho;
    here they run the client optimizer, rho = 0.)

Staleness function ``s``: ``"none"`` (1, FedAsync's constant) or ``"polynomial"``
(``(1 + tau)^-a``, FedAsync's ``s_a(t - tau) = (t - tau + 1)^-a`` with ``t - tau`` the server
updates since the pull, so that s = 1 for a fresh result; ``a = 1`` is the ``lr / tau`` rule
of Zhang et al. 2016 up to the shift). Reading a fresh result as ``t - tau = 0`` is our
choice: the paper's Algorithm 1 stamps the pulled model with the epoch that made it, under
which a fresh result would have ``t - tau = 1`` and every factor would shift by one. With one
worker tau is always 0 and the delta rule is LocalSGD with K = 1 step for step.

The clock. Job durations come from a speed model (`fedjax_sim.core.speeds`); arrivals
are processed in time order (ties: the job that started first, then the lower worker id), in
*waves*: a wave is the longest run of next arrivals in which no worker arrives twice, i.e.
every arrival up to the first moment a worker that already arrived in the wave would arrive
again. A wave's jobs were all started before it, so their deltas are computed together along
the worker axis (vectorized, sharded like LocalSGD's) from each worker's pulled model, and
only the server's application of the wave's arrivals is sequential (a scan of parameter
additions). A worker that does not arrive in a wave keeps its job: its delta is recomputed,
bit-identically, in the next wave (simulation cost, not simulated cost). A round runs waves
(a `lax.while_loop`) until ``arrivals_per_round`` jobs (default K) have arrived, so it
processes as many examples as a synchronous round; equal speeds give one wave of all K.

Times are kept relative to the last arrival, so float32 keeps its resolution over long runs;
the round reports ``clock`` (simulated time elapsed, in nominal jobs) and ``clock_examples``
(the examples one nominal job processes in that time) for the ledger.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

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

STALENESS_SCALING = ("none", "polynomial")
RULES = ("delta", "fedasync")


def staleness_scale(rule: str, exponent: float = 0.5) -> Callable:
    """``s(tau)``: the factor of a delta that is ``tau`` server updates stale."""
    if rule not in STALENESS_SCALING:
        raise ValueError(
            f"asynchronous.staleness_scaling must be one of {list(STALENESS_SCALING)}, got {rule!r}"
        )
    if rule == "none":
        return lambda tau: jnp.float32(1.0)
    return lambda tau: (1.0 + tau.astype(jnp.float32)) ** (-exponent)


def wave_of_arrivals(finish_K, start_K, next_finish_K):
    """Which pending jobs arrive in the next wave, and in which order.

    Args:
      finish_K, start_K: each worker's pending job's finish and start time.
      next_finish_K: when each worker's next job would finish if it arrived now.

    Returns:
      ``(order_K, arrives_K)``: workers in arrival order (finish, then start, then id) and,
      in that order, whether each arrives in the wave (a prefix).
    """
    workers = jnp.arange(finish_K.shape[0])
    order_K = jnp.lexsort((workers, start_K, finish_K))
    # Worker i arrives in the wave unless an earlier arrival of the wave has come back first
    # (a new job started in the wave loses a tie to a pending one: it started later).
    came_back = jax.lax.cummin(next_finish_K[order_K])
    earliest_return = jnp.concatenate([jnp.full((1,), jnp.inf, came_back.dtype), came_back[:-1]])
    return order_K, finish_K[order_K] <= earliest_return


def async_sgd(
    objective: Objective,
    inner_tx: optax.GradientTransformation,
    outer_tx: optax.GradientTransformation,
    *,
    num_workers: int,
    local_steps: int,
    batch_size: int,
    durations: Callable | None = None,
    staleness_scaling: str = "none",
    staleness_exponent: float = 0.5,
    rule: str = "delta",
    mixing: float = 0.6,
    keep_inner_state: bool = False,
    arrivals_per_round: int | None = None,
    execution: Execution | None = None,
) -> Algorithm:
    """Asynchronous SGD (module docstring) as an `Algorithm`.

    Args:
      objective: the inner loss.
      inner_tx: each worker's optimizer for its H steps.
      outer_tx: the server's optimizer on the negated step (``sgd(1.0)``: add it).
      num_workers: K, one `ClientData` client per worker.
      local_steps: H per job.
      batch_size: B per inner step.
      durations: ``durations(workers_K, jobs_K) -> [K]`` (`speeds.make_job_durations`);
        default: every job takes 1.
      staleness_scaling, staleness_exponent: ``s`` (`staleness_scale`).
      rule: one of `RULES` (module docstring): ``"delta"`` (``s(tau) delta_k``) or
        ``"fedasync"`` (``alpha s(tau) (x_k + delta_k - x)``).
      mixing: FedAsync's alpha in (0, 1], for ``rule="fedasync"``.
      keep_inner_state: each worker's inner optimizer state survives its jobs (else fresh).
      arrivals_per_round: jobs the server applies per round (default K, so that a round
        processes as many examples as a synchronous one); a round runs waves until then,
        its last one cut short.
      execution: the worker axis (vmap, map, mesh); speed and memory only.

    Returns:
      `Algorithm` over a `ServerState`: ``extra["version"]`` counts the server's updates;
      ``clients`` holds each worker's pulled model (``params``), its ``version``, its pending
      job's ``start``/``finish`` times and number ``jobs`` (done so far), and
      ``opt_state`` when kept. The round reports the arrived jobs' training metrics,
      ``arrivals``, ``syncs`` (arrivals / K), ``staleness`` (mean tau), ``max_staleness``,
      ``waves``, ``clock`` and ``clock_examples``.
    """
    if rule not in RULES:
        raise ValueError(f"asynchronous.rule must be one of {list(RULES)}, got {rule!r}")
    if not 0 < mixing <= 1:
        raise ValueError(f"asynchronous.mixing must be in (0, 1], got {mixing}")
    execution = execution or Execution()
    setup = _AsyncSetup(
        inner_tx=inner_tx,
        outer=optax.chain(optax.scale(-1.0), outer_tx),
        run_local=make_local_steps(objective, inner_tx, unroll=execution.unroll),
        durations=durations or make_job_durations("fixed", num_workers=num_workers),
        scale=staleness_scale(staleness_scaling, staleness_exponent),
        rule=rule,
        mixing=mixing,
        keep_inner_state=keep_inner_state,
        workers=jnp.arange(num_workers),
        local_steps=local_steps,
        batch_size=batch_size,
        arrivals_per_round=arrivals_per_round or num_workers,
        execution=execution,
    )
    return Algorithm(
        init=functools.partial(_init, setup), round_fn=functools.partial(_round, setup)
    )


class _AsyncSetup(NamedTuple):
    """`async_sgd`'s fixed pieces, read by every step of its round: the optimizers (``outer``
    takes the negated step), one job's local steps (``run_local``), the speed model, ``s``
    (``scale``) and the rule's settings, the worker ids and sizes."""

    inner_tx: optax.GradientTransformation
    outer: optax.GradientTransformation
    run_local: Callable
    durations: Callable
    scale: Callable
    rule: str
    mixing: float
    keep_inner_state: bool
    workers: jax.Array
    local_steps: int
    batch_size: int
    arrivals_per_round: int
    execution: Execution

    @property
    def num_workers(self) -> int:
        return self.workers.shape[0]

    @property
    def job_examples(self) -> int:
        return self.local_steps * self.batch_size


def _init(setup: _AsyncSetup, variables):
    """Every worker pulls the initial model and starts its first job at time 0."""
    params, num_workers = variables["params"], setup.num_workers
    first = setup.durations(setup.workers, jnp.zeros(num_workers, jnp.int32))
    own = {"params": params}
    if setup.keep_inner_state:
        own["opt_state"] = setup.inner_tx.init(params)
    clients = replicate_for_clients(own, num_workers)
    clients.update(
        version=jnp.zeros(num_workers, jnp.int32),
        start=jnp.zeros(num_workers, jnp.float32),
        finish=first.astype(jnp.float32),
        jobs=jnp.zeros(num_workers, jnp.int32),
    )
    state = new_server_state(variables, setup.outer.init(params), clients)
    return state.replace(extra={"version": jnp.zeros((), jnp.int32)})


def _round(setup: _AsyncSetup, state, clients: ClientData, key):
    """Waves until ``arrivals_per_round`` jobs have arrived: ``(state, metrics)``."""
    data_key, train_key = jax.random.split(key)
    target = setup.arrivals_per_round

    def body(carry):
        state, totals = carry
        state, more = _wave(setup, state, clients, data_key, train_key, target - totals["arrivals"])
        merged = jax.tree.map(jnp.add, totals, more)
        merged["max_staleness"] = jnp.maximum(totals["max_staleness"], more["max_staleness"])
        return state, merged

    shapes = jax.eval_shape(lambda s: _wave(setup, s, clients, data_key, train_key, 1)[1], state)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    state, totals = jax.lax.while_loop(
        lambda carry: carry[1]["arrivals"] < target, body, (state, zeros)
    )
    arrivals = totals["arrivals"].astype(jnp.float32)
    metrics = training_metrics(totals["sums"])
    metrics.update(
        arrivals=arrivals,
        syncs=arrivals / setup.num_workers,
        staleness=totals["staleness"] / arrivals,
        max_staleness=totals["max_staleness"].astype(jnp.float32),
        waves=totals["waves"].astype(jnp.float32),
        clock=totals["clock"],
        clock_examples=totals["clock"] * setup.job_examples,
    )
    return state.replace(round=state.round + 1), metrics


def _wave(setup: _AsyncSetup, state, clients: ClientData, data_key, train_key, limit):
    """The next wave of at most ``limit`` arrivals: ``(state, totals)``."""
    own = state.clients
    delta_K, model_state_K, opt_state_K, metrics_K = _pending_jobs(
        setup, state, clients, data_key, train_key
    )
    next_finish_K = own["finish"] + setup.durations(setup.workers, own["jobs"] + 1)
    order_K, arrives_K = wave_of_arrivals(own["finish"], own["start"], next_finish_K)
    arrives_K = arrives_K & (jnp.cumsum(arrives_K) <= limit)  # a prefix is exact too
    server, (pulled_K, pulled_version_K, tau_K) = _apply_arrivals(
        setup, state, delta_K, model_state_K, order_K, arrives_K
    )
    params, model_state, opt_state, version = server
    # Back from arrival order to worker order.
    rank_K = jnp.argsort(order_K)
    arrived_K = arrives_K[rank_K]
    pulled_K = jax.tree.map(lambda p: p[rank_K], pulled_K)
    now = jnp.max(jnp.where(arrives_K, own["finish"][order_K], 0.0))

    def where_arrived(new_K, old_K):
        expand = lambda a, leaf: a.reshape(a.shape + (1,) * (leaf.ndim - 1))  # noqa: E731
        return jax.tree.map(lambda n, o: jnp.where(expand(arrived_K, n), n, o), new_K, old_K)

    new_own = {
        "params": where_arrived(pulled_K, own["params"]),
        "version": where_arrived(pulled_version_K[rank_K], own["version"]),
        "start": jnp.where(arrived_K, own["finish"], own["start"]) - now,
        "finish": jnp.where(arrived_K, next_finish_K, own["finish"]) - now,
        "jobs": own["jobs"] + arrived_K.astype(jnp.int32),
    }
    if setup.keep_inner_state:
        new_own["opt_state"] = where_arrived(opt_state_K, own["opt_state"])
    new_state = state.replace(
        params=params,
        model_state=model_state,
        opt_state=opt_state,
        clients=shard_client_states(new_own, setup.execution.mesh),
        extra={"version": version},
    )
    return new_state, _wave_totals(metrics_K, arrived_K, jnp.where(arrives_K, tau_K, 0), now)


def _pending_jobs(setup: _AsyncSetup, state, clients: ClientData, data_key, train_key):
    """Every worker's pending job, run from the model it pulled (along the worker axis):
    ``(delta_K, model_state_K, opt_state_K, metrics_K)``."""
    own = state.clients
    indices_KxJxB, mask_KxJxB = round_batch_plan(
        data_key, clients, setup.workers, num_steps=setup.local_steps,
        batch_size=setup.batch_size, offset=own["jobs"] * setup.job_examples,
    )  # fmt: skip
    rngs_K = job_keys(train_key, setup.workers, own["jobs"])

    def job(params, opt_state, indices_JxB, mask_JxB, rng):
        opt_state = opt_state if setup.keep_inner_state else setup.inner_tx.init(params)
        result = setup.run_local(
            params, state.model_state, opt_state, clients, indices_JxB, mask_JxB, rng, None
        )
        delta = jax.tree.map(jnp.subtract, result.params, params)
        return delta, result.model_state, result.opt_state, result.metrics

    inner_K = own["opt_state"] if setup.keep_inner_state else jnp.zeros(setup.num_workers)
    job_K = setup.execution.map_clients(job)
    return job_K(own["params"], inner_K, indices_KxJxB, mask_KxJxB, rngs_K)


def _apply_arrivals(setup: _AsyncSetup, state, delta_K, model_state_K, order_K, arrives_K):
    """The server applying the wave's arrivals one after another (a scan in arrival order
    ``order_K``; ``arrives_K`` false: skipped). Returns ``((params, model_state, opt_state,
    version), (pulled_K, pulled_version_K, tau_K))``, the last three in arrival order: the
    model each arrival pulls, its version, and the arrival's staleness."""
    pulled_before_K, version_before_K = state.clients["params"], state.clients["version"]

    def arrive(carry, inputs):
        params, model_state, opt_state, version = carry
        worker, arrives = inputs
        tau = version - version_before_K[worker]
        if setup.rule == "delta":
            step = jax.tree.map(lambda d: setup.scale(tau).astype(d.dtype) * d[worker], delta_K)
        else:  # x <- x + alpha_t (x_new - x), x_new = the pulled model + its delta
            alpha = setup.mixing * setup.scale(tau)
            step = jax.tree.map(
                lambda x, pulled, d: alpha.astype(x.dtype) * (pulled[worker] + d[worker] - x),
                params, pulled_before_K, delta_K,
            )  # fmt: skip
        updates, new_opt_state = setup.outer.update(step, opt_state, params)
        applied = (
            optax.apply_updates(params, updates),
            jax.tree.map(lambda m: m[worker], model_state_K),
            new_opt_state,
            version + 1,
        )
        carry = jax.tree.map(lambda new, old: jnp.where(arrives, new, old), applied, carry)
        return carry, (carry[0], carry[3], tau)

    carry = (state.params, state.model_state, state.opt_state, state.extra["version"])
    return jax.lax.scan(arrive, carry, (order_K, arrives_K))


def _wave_totals(metrics_K, arrived_K, stale_K, now) -> dict:
    """What a wave adds to its round's totals: the arrived jobs' summed training metrics,
    ``arrivals``, summed and largest ``staleness`` (``stale_K``: 0 where none arrived), the
    ``clock`` it advanced and one wave."""
    arrived_metrics = jax.tree.map(lambda m: jnp.where(arrived_K, m, jnp.zeros_like(m)), metrics_K)
    return {
        "sums": sum_metrics(arrived_metrics),
        "arrivals": arrived_K.sum(dtype=jnp.int32),
        "staleness": stale_K.sum(dtype=jnp.int32),
        "max_staleness": stale_K.max(),
        "clock": now,
        "waves": jnp.ones((), jnp.int32),
    }
