"""How much local work each round of the data-center family does, and with which rate and batch:
the H schedules (constant, post-local, increasing, adaptive), the inner learning-rate schedule,
batch growth from the gradient noise scale, and the workers' divergence the adaptive rule reads.

Used by `fedjax_sim.algorithms.local_sgd` (see its module docstring for the papers), and the
divergence by `fedjax_sim.algorithms.gossip`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

SYNC_MOMENTUM = ("reset", "keep", "average")
H_SCHEDULES = ("constant", "post_local", "increasing", "adaptive")
BATCH_SCHEDULES = ("constant", "noise_scale")
# What post-local SGD averages before its switch: the gradients (torch's) or the models.
BEFORE_SWITCH = ("gradients", "models")


def resolved_sync_momentum(sync_momentum: str | None, schedule: str = "constant") -> str:
    """``sync_momentum``, or for None the schedule's own: ``"keep"`` for ``"post_local"``
    (torch's PostLocalSGDOptimizer steps a local optimizer whose state each worker keeps),
    ``"reset"`` for the others."""
    if sync_momentum is not None:
        return sync_momentum
    return "keep" if schedule == "post_local" else "reset"


def post_local_rounds(switch_step: int, before_switch: str = "gradients") -> tuple[int, int]:
    """``(synchronous_rounds, one_step_rounds)`` of post-local SGD switching at
    ``switch_step``: with ``"gradients"`` (torch's), ``switch_step`` synchronous rounds and one
    more round of 1 local step (torch averages the models right after the first local step);
    with ``"models"``, no synchronous round and ``switch_step`` rounds of 1 step whose models
    are averaged.

    Raises:
      ValueError: ``before_switch`` not in `BEFORE_SWITCH`.
    """
    if before_switch not in BEFORE_SWITCH:
        raise ValueError(
            f"localsgd.before_switch must be one of {list(BEFORE_SWITCH)}, got {before_switch!r}"
        )
    if before_switch == "models":
        return 0, switch_step
    return switch_step, switch_step + 1


class AdaptiveSteps(NamedTuple):
    """The ``"adaptive"`` H rule of the module docstring: start at ``initial`` steps, double
    while the divergence is below ``threshold``, halve above twice it."""

    initial: int = 1
    threshold: float = 0.01


class InnerSchedule(NamedTuple):
    """The inner learning rate of round ``r``: the inner optimizer's own times ``factor(r)``
    (a jit-able function of the traced round); ``normalize_outer``: fairscale's SlowMo outer
    step (module docstring)."""

    factor: Callable
    normalize_outer: bool = False


def with_step_size(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` followed by a scale whose factor lives in the state (`set_step_size`)."""
    return optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))


def set_step_size(chain_state, index: int, value):
    """The state of a chain with its ``index``-th (injected scale) factor set to ``value``."""
    states = list(chain_state)
    hyperparams = {"step_size": jnp.asarray(value, jnp.float32)}
    states[index] = states[index]._replace(hyperparams=hyperparams)
    return tuple(states)


class BatchGrowth(NamedTuple):
    """Noise-scale estimation and batch growth: each worker starts at ``initial`` examples
    per step; ``decay`` smooths the estimates; ``grow`` False only estimates and reports."""

    initial: int
    decay: float = 0.9
    grow: bool = True


def local_steps_schedule(
    schedule: str, local_steps: int, switch_step: int = 0, initial_steps: int = 1,
    double_every: int = 1,
) -> Callable:  # fmt: skip
    """``steps(round) -> H`` of the round (a traced int32), at most ``local_steps``.

    ``"constant"``: H every round; ``"post_local"``: 1 for rounds below ``switch_step`` (so
    ``switch_step`` synchronous steps), then H; ``"increasing"``: ``initial_steps`` doubled
    every ``double_every`` rounds, capped at H. (``"adaptive"`` depends on the run's state:
    `AdaptiveSteps`; here it gives H, the cap.)
    """
    if schedule not in H_SCHEDULES:
        raise ValueError(f"localsgd.schedule must be one of {list(H_SCHEDULES)}, got {schedule!r}")
    if schedule in ("constant", "adaptive"):
        return lambda round_: jnp.int32(local_steps)
    if schedule == "increasing":

        def increasing(round_):
            doublings = jnp.minimum(round_ // max(double_every, 1), 30)
            return jnp.minimum(initial_steps * 2**doublings, local_steps).astype(jnp.int32)

        return increasing
    return lambda round_: jnp.where(round_ < switch_step, 1, local_steps).astype(jnp.int32)


def worker_divergence(delta_K) -> jax.Array:
    """``mean_k |delta_k - mean delta|^2``: the workers' models' mean squared distance from
    their average (all started from the same model)."""
    return sum(
        jnp.sum(jnp.square(d - d.mean(0)).astype(jnp.float32)) / d.shape[0]
        for d in jax.tree.leaves(delta_K)
    )


def adapted_steps(rule: AdaptiveSteps, steps, divergence, maximum: int) -> jax.Array:
    """The next round's H under ``rule`` from this round's ``steps`` and ``divergence``."""
    doubled, halved = jnp.minimum(2 * steps, maximum), jnp.maximum(steps // 2, 1)
    return jnp.where(
        divergence < rule.threshold,
        doubled,
        jnp.where(divergence > 2 * rule.threshold, halved, steps),
    ).astype(jnp.int32)
