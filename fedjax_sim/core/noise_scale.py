"""The gradient noise scale B_simple (McCandlish et al. 2018) from per-worker gradients, and a
batch size that grows with it.

``B_simple = tr(Sigma) / |G|^2``, with ``G`` the true gradient and ``Sigma`` the per-example
gradient covariance, is the batch beyond which a larger batch buys little (the paper's
critical batch). Its Appendix A estimates both terms without bias from the squared norms of
gradients at two batch sizes, here one worker's batch (``B_small = B``) and the mean of the K
workers' (``B_big = K B``), all at the same parameters:

    |G|^2   ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

``|G_small|^2`` is the mean over the workers of their squared norms. Each estimate is noisy
(even negative) from one round, so, as the paper advises, both are smoothed by exponential
moving averages (bias-corrected) before their ratio is taken.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class NoiseScaleState(NamedTuple):
    """Bias-uncorrected moving averages of ``|G|^2`` and ``tr(Sigma)``, and their updates."""

    squared_gradient: jax.Array
    trace_covariance: jax.Array
    count: jax.Array


def init_noise_scale() -> NoiseScaleState:
    zero = jnp.zeros((), jnp.float32)
    return NoiseScaleState(zero, zero, jnp.zeros((), jnp.int32))


def _squared_norm(tree):
    return sum(jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in jax.tree.leaves(tree))


def noise_estimates(grads_K, batch_size) -> tuple[jax.Array, jax.Array]:
    """``(|G|^2, tr(Sigma))`` estimated from K workers' gradients of ``batch_size`` examples
    each at the same parameters (the module docstring's formulas; K >= 2)."""
    num_workers = jax.tree.leaves(grads_K)[0].shape[0]
    small = jax.vmap(_squared_norm)(grads_K).mean()
    big = _squared_norm(jax.tree.map(lambda g: g.mean(0), grads_K))
    b_small = jnp.asarray(batch_size, jnp.float32)
    b_big = b_small * num_workers
    squared_gradient = (b_big * big - b_small * small) / (b_big - b_small)
    trace_covariance = (small - big) / (1.0 / b_small - 1.0 / b_big)
    return squared_gradient, trace_covariance


def update_noise_scale(state: NoiseScaleState, grads_K, batch_size, decay: float):
    """The moving averages after one round's estimates; returns ``(state, B_simple)`` with
    ``B_simple`` from the bias-corrected averages (inf while ``|G|^2`` is not positive)."""
    squared_gradient, trace_covariance = noise_estimates(grads_K, batch_size)
    state = NoiseScaleState(
        decay * state.squared_gradient + (1 - decay) * squared_gradient,
        decay * state.trace_covariance + (1 - decay) * trace_covariance,
        state.count + 1,
    )
    # the bias corrections of both averages are equal and cancel in the ratio
    b_simple = jnp.where(
        state.squared_gradient > 0, state.trace_covariance / state.squared_gradient, jnp.inf
    )
    return state, b_simple


def grown_batch_size(current, b_simple, num_workers: int, maximum: int) -> jax.Array:
    """Each worker's next batch: the power of two at or above ``B_simple / K`` when that is
    larger than ``current``, at most ``maximum``; it never shrinks (an estimate that is not
    finite and positive keeps ``current``)."""
    target = b_simple / num_workers
    valid = jnp.isfinite(target) & (target > 0)
    target = jnp.clip(jnp.where(valid, target, 1.0), 1.0, maximum)
    power = 2.0 ** jnp.ceil(jnp.log2(target))
    grown = jnp.minimum(jnp.maximum(current, power.astype(jnp.int32)), maximum)
    return jnp.where(valid, grown, current).astype(jnp.int32)
