"""Aggregation of client deltas as optax transformations.

An aggregator is a `optax.GradientTransformationExtraArgs` whose ``update`` takes the stacked
client deltas (leading client axis C) and ``weights=[C]`` and returns one aggregated update, so
that ``optax.chain(aggregator, optax.scale(-1), server_optimizer)`` is the whole server step:
the aggregated delta, negated, is the pseudo-gradient of the server optimizer. Robust
aggregators (median, trimmed mean) plug in at the same place.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def weighted_mean() -> optax.GradientTransformationExtraArgs:
    """``sum_c w_c delta_c / sum_c w_c`` over the client axis; all-zero weights give zero."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(deltas_C, state, params=None, *, weights, **extra_args):
        del params, extra_args
        total = jnp.sum(weights)
        scale = jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), 0.0)
        mean = jax.tree.map(lambda d: jnp.tensordot(scale.astype(d.dtype), d, axes=1), deltas_C)
        return mean, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def client_weights(counts_C, weighting: str):
    """Aggregation weights: ``"examples"`` (n_k, as FedAvg) or ``"uniform"`` (1 per non-empty)."""
    if weighting == "examples":
        return counts_C.astype(jnp.float32)
    if weighting == "uniform":
        return (counts_C > 0).astype(jnp.float32)
    raise ValueError(f"weighting must be one of ['examples', 'uniform'], got {weighting!r}")
