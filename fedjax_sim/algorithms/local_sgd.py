"""The data-center family on K workers: LocalSGD, post-local SGD, SlowMo and DiLoCo.

One round is one synchronization: every worker runs H inner steps from the current global
model on its own IID shard, then the workers' models are averaged and an outer optimizer
(optax) steps on the averaged pseudo-gradient ``x - mean_k x_k``:

  * LocalSGD (Stich 2019): outer ``sgd(1.0)``, i.e. the average is the new model.
  * SlowMo (Wang et al. 2020): outer ``sgd(alpha, momentum=beta)``: the paper's
    ``u <- beta u + (x0 - x_H) / gamma; x <- x0 - alpha gamma u`` with a constant inner
    learning rate gamma (fairscale's SlowMoDistributedDataParallel). beta = 0, alpha = 1 is
    LocalSGD exactly.
  * DiLoCo (Douillard et al. 2023; OpenDiLoCo, torchft): inner AdamW whose state each worker
    keeps across synchronizations, outer Nesterov ``sgd(0.7, momentum=0.9, nesterov=True)``.
  * Post-local SGD (Lin et al. 2020) as torch's PostLocalSGDOptimizer runs it: the first
    ``switch_step`` rounds are synchronous SGD (``synchronous_rounds``): one step on the
    workers' mean gradient, from their one shared inner state (DDP's gradient all-reduce,
    ``PostLocalSGDState.start_localSGD_iter``); then local SGD, each worker's inner state its
    own (``sync_momentum="keep"``), the models averaged after the first local step and every H
    steps after it (``PeriodicModelAverager(period=H, warmup_steps=switch_step)``): rounds
    of 1 step up to and including round ``switch_step``, then H.

Each worker reads its shard as a continued stream of shuffled passes (``position`` examples
read so far), so every example is used once per epoch across the workers, and the number of
inner steps of a round may vary under a static maximum (`lax.cond` skips the rest).

A scheduled inner learning rate (`InnerSchedule`) is constant within a round, the
optimizer's own rate times ``factor(round)``; with ``normalize_outer`` the outer step sees the
pseudo-gradient divided by that rate and its step is multiplied by it, fairscale's SlowMo
(``u <- beta u + (x0 - x_H) / gamma_r; x <- x0 - alpha gamma_r u``) for any schedule; without,
the outer step sees the raw pseudo-gradient (DiLoCo, torchft). With a constant rate both agree.

The inner optimizer state at a synchronization (``sync_momentum``): ``"reset"`` (fresh every
round), ``"keep"`` (each worker's own survives, per-worker state) or ``"average"`` (averaged
over the workers like the parameters; with SGD momentum and H = 1 this is synchronous
data-parallel SGD with the summed batch). A synchronous round (``synchronous_rounds``) is that
for any inner optimizer: the workers' gradients are averaged before the one inner step.

Adaptive local steps, all under the static maximum H:
  * ``"increasing"``: ``H_r = min(H, H_0 2^(r // double_every))``, the increasing
    communication period of Haddadpour et al. 2019 (LUPA-SGD) in doubling form.
  * ``"adaptive"`` (`AdaptiveSteps`): the divergence criterion of dynamic averaging (Kamp et
    al. 2018, who synchronize when the workers' models drift further than a threshold from
    their reference) turned into a period: at each sync the workers' divergence
    ``D = mean_k |x_k - mean_k x_k|^2`` doubles H while ``D < threshold`` and halves it when
    ``D > 2 threshold`` (at least 1). Large gradients early keep H short; as the models
    settle, H grows, as post-local SGD prescribes by hand. Every round reports
    ``divergence``.

Adaptive batch (`BatchGrowth`): the gradient noise scale B_simple is estimated each round from
the K workers' gradients at the global model on their first batch
(`fedjax_sim.core.noise_scale`, one extra gradient per worker and round) and reported as
``noise_scale``; with ``grow`` each worker's batch doubles up to the static ``batch_size``
as ``B_simple / K`` rises (never shrinking), unused slots masked and the stream read on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.algorithms.fedavg import mean_model_state
from fedjax_sim.algorithms.local_schedules import (
    SYNC_MOMENTUM,
    AdaptiveSteps,
    BatchGrowth,
    InnerSchedule,
    adapted_steps,
    local_steps_schedule,
    set_step_size,
    with_step_size,
    worker_divergence,
)
from fedjax_sim.core import aggregation
from fedjax_sim.core.engine import Execution, split_batch
from fedjax_sim.core.local import (
    Algorithm,
    job_keys,
    make_local_steps,
    sum_metrics,
    training_metrics,
)
from fedjax_sim.core.noise_scale import grown_batch_size, init_noise_scale, update_noise_scale
from fedjax_sim.core.round import new_server_state, replicate_for_clients, shard_client_states
from fedjax_sim.core.speeds import make_job_durations
from fedjax_sim.core.tasks import Objective
from fedjax_sim.data.client_data import ClientData, gather_batch, round_batch_plan


def _mean_over_workers(tree_K):
    """The mean over the leading worker axis, broadcast back to it (integer leaves, such as
    step counts, are equal on every worker and kept)."""

    def mean(leaf):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            return leaf
        return jnp.broadcast_to(leaf.mean(0), leaf.shape)

    return jax.tree.map(mean, tree_K)


def local_sgd(
    objective: Objective,
    inner_tx: optax.GradientTransformation,
    outer_tx: optax.GradientTransformation,
    *,
    num_workers: int,
    local_steps: int,
    batch_size: int,
    sync_momentum: str = "reset",
    steps_schedule: Callable | None = None,
    adaptive_steps: AdaptiveSteps | None = None,
    batch_growth: BatchGrowth | None = None,
    inner_schedule: InnerSchedule | None = None,
    synchronous_rounds: int = 0,
    durations: Callable | None = None,
    execution: Execution | None = None,
) -> Algorithm:
    """The family of the module docstring as an `Algorithm` over a `ServerState`.

    Args:
      objective: the inner loss (`fedjax_sim.core.tasks.cross_entropy`).
      inner_tx: each worker's optimizer.
      outer_tx: the outer optimizer on the negated mean delta (``sgd(1.0)``: LocalSGD).
      num_workers: K; the `ClientData` has one client per worker and all take part.
      local_steps: H, the static maximum of inner steps per round.
      batch_size: B per worker and inner step (the static maximum under ``batch_growth``).
      sync_momentum: one of `SYNC_MOMENTUM`.
      steps_schedule: ``round -> H_r`` (`local_steps_schedule`); default H every round.
      adaptive_steps: the data-driven H rule (replaces ``steps_schedule``), or None.
      batch_growth: noise-scale estimation and batch growth, or None.
      inner_schedule: a per-round inner learning rate (`InnerSchedule`), or None.
      synchronous_rounds: the rounds below it are synchronous SGD whatever ``steps_schedule``
        says: each worker's gradient at the global model on its first batch, one inner step
        on their mean from the workers' shared inner state, which stays one state (post-local
        SGD's first phase, `post_local_rounds`); ``sync_momentum`` applies after them.
      durations: the speed model, ``durations(workers_K, jobs_K) -> [K]``
        (`fedjax_sim.core.speeds`); a round waits for its slowest worker. Default: 1.
      execution: the worker axis (vmap, map, mesh); speed and memory only.

    Returns:
      `Algorithm` whose state is a `ServerState` with ``opt_state`` the outer optimizer's,
      ``clients["opt_state"]`` the workers' inner states (``keep``/``average``) and
      ``extra["position"]``, the examples each worker has read (and the adaptive H, batch
      and noise-scale state when used). The round reports ``local_steps`` (H_r),
      ``divergence``, ``batch_size`` and ``noise_scale`` (with ``batch_growth``) beside the
      training metrics, ``clock`` (the round's simulated
      time, its slowest job, in nominal jobs of H_r steps) and ``clock_examples`` (the
      examples a nominal worker processes in that time); each round is one sync.
    """
    if sync_momentum not in SYNC_MOMENTUM:
        raise ValueError(
            f"localsgd.sync_momentum must be one of {list(SYNC_MOMENTUM)}, got {sync_momentum!r}"
        )
    execution = execution or Execution()
    normalize = inner_schedule is not None and inner_schedule.normalize_outer
    if inner_schedule is not None:
        inner_tx = with_step_size(inner_tx)
    setup = _LocalSetup(
        inner_tx=inner_tx,
        outer=aggregation.server_chain(_normalized_outer(outer_tx) if normalize else outer_tx),
        run_local=make_local_steps(objective, inner_tx, unroll=execution.unroll),
        grad_fn=jax.grad(objective, has_aux=True),
        value_and_grad=jax.value_and_grad(objective, has_aux=True),
        sync_momentum=sync_momentum,
        # a synchronous phase carries its one inner state from round to round
        worker_state=sync_momentum != "reset" or synchronous_rounds > 0,
        steps_schedule=steps_schedule or local_steps_schedule("constant", local_steps),
        adaptive_steps=adaptive_steps,
        batch_growth=batch_growth,
        inner_schedule=inner_schedule,
        normalize=normalize,
        synchronous_rounds=synchronous_rounds,
        durations=durations or make_job_durations("fixed", num_workers=num_workers),
        execution=execution,
        num_workers=num_workers,
        local_steps=local_steps,
        batch_size=batch_size,
    )
    return Algorithm(
        init=functools.partial(_init, setup), round_fn=functools.partial(_round, setup)
    )


def _normalized_outer(outer_tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``outer_tx`` between two injected scales, the pseudo-gradient / gamma_r before it and
    the step * gamma_r after it; `_outer_state_for` sets them (this chain's states 0 and 2)."""
    return optax.chain(
        optax.inject_hyperparams(optax.scale)(step_size=1.0),
        outer_tx,
        optax.inject_hyperparams(optax.scale)(step_size=1.0),
    )


class _LocalSetup(NamedTuple):
    """`local_sgd`'s fixed pieces, read by every step of its round (its arguments, with
    ``inner_tx`` followed by the injected step size under an ``inner_schedule``, ``outer`` the
    whole server chain, and the objective's ``run_local``, ``grad_fn`` and
    ``value_and_grad``)."""

    inner_tx: optax.GradientTransformation
    outer: optax.GradientTransformationExtraArgs
    run_local: Callable
    grad_fn: Callable
    value_and_grad: Callable
    sync_momentum: str
    worker_state: bool
    steps_schedule: Callable
    adaptive_steps: AdaptiveSteps | None
    batch_growth: BatchGrowth | None
    inner_schedule: InnerSchedule | None
    normalize: bool
    synchronous_rounds: int
    durations: Callable
    execution: Execution
    num_workers: int
    local_steps: int
    batch_size: int


def _init(setup: _LocalSetup, variables):
    """The round-0 state: the outer optimizer's, the workers' inner states where kept, and
    ``extra`` (``position`` and the adaptive H, batch and noise-scale state when used)."""
    params = variables["params"]
    clients = {"opt_state": setup.inner_tx.init(params)} if setup.worker_state else {}
    state = new_server_state(
        variables, setup.outer.init(params), replicate_for_clients(clients, setup.num_workers)
    )
    extra = {"position": jnp.zeros((), jnp.int32)}
    if setup.adaptive_steps is not None:
        extra["local_steps"] = jnp.int32(min(setup.adaptive_steps.initial, setup.local_steps))
    if setup.batch_growth is not None:
        extra["batch_size"] = jnp.int32(min(setup.batch_growth.initial, setup.batch_size))
        extra["noise"] = init_noise_scale()
    return state.replace(extra=extra)


class _RoundPlan(NamedTuple):
    """What a round's workers run: H_r (``steps``), the per-step batch, the inner learning
    rate's ``factor`` (None without a schedule) and every worker's batches and key."""

    steps: jax.Array
    batch: jax.Array | int
    factor: jax.Array | None
    indices_KxJxB: jax.Array
    mask_KxJxB: jax.Array
    rngs_K: jax.Array


def _round(setup: _LocalSetup, state, clients: ClientData, key):
    """One synchronization: the workers' H_r steps, the outer step on their mean delta."""
    data_key, train_key = jax.random.split(key)
    plan = _round_plan(setup, state, clients, data_key, train_key)
    inputs = (state.clients, plan.indices_KxJxB, plan.mask_KxJxB, plan.rngs_K)
    work_K = setup.execution.map_clients(_make_work(setup, state, clients, plan))
    if setup.synchronous_rounds:
        synchronous = _make_synchronous(setup, state, clients, plan)
        delta_K, model_state_K, own_K, metrics_K, grads_K = jax.lax.cond(
            state.round < setup.synchronous_rounds, synchronous, work_K, *inputs
        )
    else:
        delta_K, model_state_K, own_K, metrics_K, grads_K = work_K(*inputs)
    weights_K = jnp.ones(setup.num_workers, jnp.float32)
    updates, opt_state = setup.outer.update(
        delta_K, _outer_state_for(setup, state.opt_state, plan.factor), state.params,
        weights=weights_K,
    )  # fmt: skip
    if setup.sync_momentum == "average":
        own_K = _mean_over_workers(own_K)
    metrics, extra = _round_metrics(setup, state, plan, metrics_K, delta_K, grads_K)
    new_state = state.replace(
        params=optax.apply_updates(state.params, updates),
        model_state=mean_model_state(model_state_K, weights_K, state.model_state),
        opt_state=opt_state,
        round=state.round + 1,
        clients=shard_client_states(own_K, setup.execution.mesh),
        extra=extra,
    )
    return new_state, metrics


def _round_plan(setup: _LocalSetup, state, clients: ClientData, data_key, train_key):
    """The round's `_RoundPlan`: H_r and the batch from the schedule or the adaptive state,
    each worker's stream read on from ``position`` (its key is the same every round), steps
    past H_r masked."""
    extra = state.extra
    adaptive = setup.adaptive_steps is not None
    steps = extra["local_steps"] if adaptive else setup.steps_schedule(state.round)
    batch = extra["batch_size"] if setup.batch_growth is not None else setup.batch_size
    schedule = setup.inner_schedule
    workers = jnp.arange(setup.num_workers)
    indices_KxJxB, mask_KxJxB = round_batch_plan(
        data_key, clients, workers, num_steps=setup.local_steps, batch_size=setup.batch_size,
        offset=extra["position"], batch_in_use=None if setup.batch_growth is None else batch,
    )  # fmt: skip
    mask_KxJxB = mask_KxJxB & (jnp.arange(setup.local_steps) < steps)[:, None]
    rounds_K = jnp.broadcast_to(state.round, workers.shape)
    return _RoundPlan(
        steps=steps,
        batch=batch,
        factor=None if schedule is None else schedule.factor(state.round),
        indices_KxJxB=indices_KxJxB,
        mask_KxJxB=mask_KxJxB,
        rngs_K=job_keys(train_key, workers, rounds_K),
    )


def _outer_state_for(setup: _LocalSetup, outer_state, factor):
    """The outer chain's state with this round's scales, 1 / gamma_r and gamma_r, set when the
    outer step is normalized (`_normalized_outer`); else as it is."""
    if not setup.normalize:
        return outer_state
    inverse = jnp.where(factor > 0, 1.0 / jnp.where(factor > 0, factor, 1.0), 0.0)
    tx_states = set_step_size(outer_state[2], 0, inverse)
    return (*outer_state[:2], set_step_size(tx_states, 2, factor))


def _make_work(setup: _LocalSetup, state, clients: ClientData, plan: _RoundPlan) -> Callable:
    """``work(own, indices_JxB, mask_JxB, rng) -> (delta, model_state, own, metrics,
    grads)`` of ONE worker: its H_r steps from the global model, and with ``batch_growth``
    its gradient at the global model on its first batch (else ``{}``)."""

    def work(own, indices_JxB, mask_JxB, rng):
        kept = setup.sync_momentum != "reset"
        opt_state = own["opt_state"] if kept else setup.inner_tx.init(state.params)
        if plan.factor is not None:
            opt_state = set_step_size(opt_state, 1, plan.factor)
        result = setup.run_local(
            state.params, state.model_state, opt_state, clients, indices_JxB, mask_JxB,
            rng, None, step_limit=plan.steps,
        )  # fmt: skip
        delta = jax.tree.map(jnp.subtract, result.params, state.params)
        own = {"opt_state": result.opt_state} if setup.worker_state else {}
        grads = {}
        if setup.batch_growth is not None:  # the first step's gradient, at the global model
            first = gather_batch(clients, indices_JxB[0], mask_JxB[0])
            first_rng = jax.random.split(rng, setup.local_steps)[0]
            grads, _ = setup.grad_fn(state.params, state.model_state, first, first_rng, None)
        return delta, result.model_state, own, result.metrics, grads

    return work


def _make_synchronous(setup: _LocalSetup, state, clients: ClientData, plan: _RoundPlan):
    """``synchronous(own_K, indices_KxJxB, mask_KxJxB, rngs_K)``, a synchronous round with
    `_make_work`'s outputs: one step on the workers' mean gradient (each at the global model
    on its first batch) from their one (shared) inner state."""

    def gradient(indices_JxB, mask_JxB, rng):
        batch = split_batch(gather_batch(clients, indices_JxB[0], mask_JxB[0]))
        first_rng = jax.random.split(rng, setup.local_steps)[0]
        (_, (metrics, model_state)), grads = setup.value_and_grad(
            state.params, state.model_state, batch, first_rng, None
        )
        return grads, model_state, metrics

    def synchronous(own_K, indices_KxJxB, mask_KxJxB, rngs_K):
        gradient_K = setup.execution.map_clients(gradient)
        grads_K, model_state_K, metrics_K = gradient_K(indices_KxJxB, mask_KxJxB, rngs_K)
        shared = jax.tree.map(lambda leaf: leaf[0], own_K["opt_state"])
        if plan.factor is not None:
            shared = set_step_size(shared, 1, plan.factor)
        mean_grads = jax.tree.map(lambda g: g.mean(0), grads_K)
        updates, shared = setup.inner_tx.update(mean_grads, shared, state.params)
        delta_K, own_K = replicate_for_clients((updates, {"opt_state": shared}), setup.num_workers)
        return (delta_K, model_state_K, own_K, metrics_K,
                grads_K if setup.batch_growth is not None else {})  # fmt: skip

    return synchronous


def _round_metrics(setup: _LocalSetup, state, plan: _RoundPlan, metrics_K, delta_K, grads_K):
    """``(metrics, extra)`` of the round: the metrics `local_sgd`'s Returns lists, and the
    next ``extra``: the position read on, the adapted H, the noise-scale state and the grown
    batch."""
    steps, batch = plan.steps, plan.batch
    extra = dict(state.extra)
    workers = jnp.arange(setup.num_workers)
    metrics = training_metrics(sum_metrics(metrics_K))
    metrics["local_steps"] = steps.astype(jnp.float32)
    metrics["divergence"] = worker_divergence(delta_K)
    clock = jnp.max(setup.durations(workers, jnp.broadcast_to(state.round, workers.shape)))
    metrics["clock"] = clock
    metrics["clock_examples"] = clock * (steps * batch).astype(jnp.float32)
    extra["position"] = extra["position"] + steps * batch
    if setup.adaptive_steps is not None:
        extra["local_steps"] = adapted_steps(
            setup.adaptive_steps, steps, metrics["divergence"], setup.local_steps
        )
    growth = setup.batch_growth
    if growth is not None:
        extra["noise"], b_simple = update_noise_scale(extra["noise"], grads_K, batch, growth.decay)
        metrics["noise_scale"] = b_simple
        metrics["batch_size"] = jnp.asarray(batch, jnp.float32)
        if growth.grow:
            extra["batch_size"] = grown_batch_size(
                batch, b_simple, setup.num_workers, setup.batch_size
            )
    return metrics, extra
