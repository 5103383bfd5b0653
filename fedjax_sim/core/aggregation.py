"""Aggregation of client deltas as optax transformations.

An aggregator is a `optax.GradientTransformationExtraArgs` whose ``update`` takes the stacked
client deltas (leading client axis C) and ``weights=[C]`` and returns one aggregated update, so
that ``optax.chain(aggregator, optax.scale(-1), server_optimizer)`` is the whole server step:
the aggregated delta, negated, is the pseudo-gradient of the server optimizer. Robust
aggregators (median, trimmed mean) plug in at the same place.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def normalized_weights(weights_C) -> jax.Array:
    """``w_c / sum_c w_c``; all zeros when the weights sum to 0 (no client reported)."""
    total = jnp.sum(weights_C)
    return jnp.where(total > 0, weights_C / jnp.where(total > 0, total, 1.0), 0.0)


def weighted_sum(scale_C, deltas_C):
    """``sum_c scale_c delta_c`` over the leading client axis of every leaf, in its dtype."""
    return jax.tree.map(lambda d: jnp.tensordot(scale_C.astype(d.dtype), d, axes=1), deltas_C)


def population_mean(deltas_C, weights_C, num_clients: int):
    """``(1/N) sum_c delta_c`` over the clients that reported (weight > 0), N the population:
    how a mean over all N clients' per-client values moves when those clients' values move by
    ``delta_c`` (SCAFFOLD's control variate, FedDyn's h)."""
    reported = (weights_C > 0).astype(jnp.float32) / num_clients
    return jax.tree.map(lambda d: jnp.tensordot(reported, d, axes=1), deltas_C)


def stateless_aggregator(aggregate: Callable) -> optax.GradientTransformationExtraArgs:
    """The aggregator whose ``update(deltas_C, state, params=None, *, weights, **extra_args)``
    returns ``aggregate(deltas_C, weights, **extra_args)``, with an empty state.

    ``aggregate`` takes the extra arguments it needs by name and ``**_`` for the others (a
    chain hands every transformation all of them).
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(deltas_C, state, params=None, *, weights, **extra_args):
        del params
        return aggregate(deltas_C, weights, **extra_args), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def weighted_mean() -> optax.GradientTransformationExtraArgs:
    """``sum_c w_c delta_c / sum_c w_c`` over the client axis; all-zero weights give zero."""

    def mean(deltas_C, weights, **_):
        return weighted_sum(normalized_weights(weights), deltas_C)

    return stateless_aggregator(mean)


def server_chain(
    server_tx: optax.GradientTransformation,
    aggregator: optax.GradientTransformationExtraArgs | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The whole server step: ``optax.chain(aggregator, optax.scale(-1), server_tx)``.

    Its ``update(deltas_C, state, params, weights=[C], **extra_args)`` returns the parameter
    update; ``server_tx`` sees the negated aggregate as its gradient. Its state is the chain's,
    ``(aggregator state, scale state, server_tx state)``.

    Args:
      server_tx: the server (outer) optimizer.
      aggregator: of the client deltas; None is `weighted_mean`.
    """
    return optax.chain(aggregator or weighted_mean(), optax.scale(-1.0), server_tx)


def client_weights(counts_C, weighting: str):
    """Aggregation weights: ``"examples"`` (n_k, as FedAvg) or ``"uniform"`` (1 per non-empty)."""
    if weighting == "examples":
        return counts_C.astype(jnp.float32)
    if weighting == "uniform":
        return (counts_C > 0).astype(jnp.float32)
    raise ValueError(f"weighting must be one of ['examples', 'uniform'], got {weighting!r}")
