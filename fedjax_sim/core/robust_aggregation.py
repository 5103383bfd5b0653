"""Robust aggregators as optax transformations, in place of `aggregation.weighted_mean`.

Each is a `optax.GradientTransformationExtraArgs` whose ``update(deltas_C, state, params,
weights=[C])`` returns one aggregated delta, so it slots into
``optax.chain(aggregator, optax.scale(-1), server_optimizer)`` (``fedavg_parts(...,
aggregator=...)``). A client with weight 0 (absent, dropped out) takes no part; the others'
weights count only where the rule has a use for them (norm clipping's mean), since the robust
rules of the literature treat clients alike.

  * `coordinate_median`: the median of each coordinate (Yin et al. 2018).
  * `trimmed_mean`: each coordinate's mean after dropping its ``beta`` fraction of largest and
    of smallest values (Yin et al. 2018); a ``beta`` that trims none of the clients a round is
    refused (`check_round_size`) rather than run as the plain mean.
  * `norm_clipping`: every delta scaled to norm at most ``max_norm``, then the weighted mean
    (Sun et al. 2019's defence against scaled updates).
  * `krum`: the delta whose summed squared distance to its ``n - f - 2`` nearest others is
    smallest; multi-Krum averages the ``m`` best by that score (Blanchard et al. 2017). It
    needs ``n > 2f + 2`` and ``m <= n`` (`check_round_size`).
  * `noise_aware`: the course's FedGW idea (disregard clients whose updates look like noise)
    as a stated rule: each client's trust is the positive part of its delta's cosine with the
    coordinate-wise median delta, every delta is rescaled to the median of the clients' norms,
    and the server takes the trust x examples weighted mean. This is FLTrust's rule (Cao et
    al., NDSS 2021) with the clients' medians standing in for the update and norm of
    FLTrust's server-side root dataset, which a federated server does not have (the median
    delta's own norm shrinks as non-IID clients' coordinates cancel, so it is not the scale).
    Updates trained on noise (random or flipped labels, corrupted inputs) point away from the
    consensus and get little or no weight; sign-flipped ones get none; scaled ones lose their
    scale.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.core.aggregation import stateless_aggregator, weighted_mean, weighted_sum

AGGREGATORS = ("mean", "median", "trimmed_mean", "norm_clipping", "krum", "noise_aware")


def _transformation(aggregate) -> optax.GradientTransformationExtraArgs:
    """The aggregator of ``aggregate(deltas_C, present_C, weights_C)``."""
    return stateless_aggregator(
        lambda deltas_C, weights, **_: aggregate(deltas_C, weights > 0, weights)
    )


def _scaled(deltas_C, scale_C):
    """Each client's delta times its ``scale_C`` entry, in the delta's dtype."""
    return jax.tree.map(
        lambda d: d * scale_C.reshape((-1,) + (1,) * (d.ndim - 1)).astype(d.dtype), deltas_C
    )


def coordinate_median() -> optax.GradientTransformationExtraArgs:
    """The coordinate-wise median over the present clients."""

    def aggregate(deltas_C, present_C, weights_C):
        def median(d):
            mask = present_C.reshape((-1,) + (1,) * (d.ndim - 1))
            return jnp.nanmedian(jnp.where(mask, d, jnp.nan), axis=0).astype(d.dtype)

        return jax.tree.map(median, deltas_C)

    return _transformation(aggregate)


def trimmed_mean(beta: float) -> optax.GradientTransformationExtraArgs:
    """Each coordinate's mean over the present clients without its ``floor(beta n)`` largest
    and ``floor(beta n)`` smallest values (``0 <= beta < 0.5``)."""
    if not 0 <= beta < 0.5:
        raise ValueError(f"robust.trim_fraction must be in [0, 0.5), got {beta}")

    def aggregate(deltas_C, present_C, weights_C):
        n = present_C.sum()
        cut = jnp.floor(beta * n).astype(jnp.int32)

        def trim(d):
            mask = present_C.reshape((-1,) + (1,) * (d.ndim - 1))
            # absent clients sort last (inf); ranks cut..n-cut-1 are kept
            ordered = jnp.sort(jnp.where(mask, d, jnp.inf), axis=0)
            rank = jnp.arange(d.shape[0]).reshape((-1,) + (1,) * (d.ndim - 1))
            keep = (rank >= cut) & (rank < n - cut)
            total = jnp.where(keep, ordered, 0.0).sum(0)
            return (total / jnp.maximum(n - 2 * cut, 1)).astype(d.dtype)

        return jax.tree.map(trim, deltas_C)

    return _transformation(aggregate)


def _norms(deltas_C):
    squares = sum(
        jnp.sum(jnp.square(d.astype(jnp.float32)).reshape(d.shape[0], -1), axis=1)
        for d in jax.tree.leaves(deltas_C)
    )
    return jnp.sqrt(squares)


def norm_clipping(max_norm: float) -> optax.GradientTransformationExtraArgs:
    """The weighted mean of the deltas, each first scaled to norm at most ``max_norm``."""
    if max_norm <= 0:
        raise ValueError(f"robust.max_norm must be > 0, got {max_norm}")
    mean = weighted_mean()

    def aggregate(deltas_C, present_C, weights_C):
        scale_C = jnp.minimum(1.0, max_norm / jnp.maximum(_norms(deltas_C), 1e-12))
        clipped = _scaled(deltas_C, scale_C)
        return mean.update(clipped, optax.EmptyState(), weights=weights_C)[0]

    return _transformation(aggregate)


def krum_scores(deltas_C, present_C, num_byzantine: int) -> jax.Array:
    """Each present client's Krum score: the sum of its squared distances to its
    ``n - f - 2`` nearest present others (inf for absent clients)."""
    flat = jnp.concatenate(
        [d.reshape(d.shape[0], -1).astype(jnp.float32) for d in jax.tree.leaves(deltas_C)], 1
    )
    squares = jnp.sum(flat**2, 1)
    distances = squares[:, None] + squares[None, :] - 2.0 * flat @ flat.T
    both = present_C[:, None] & present_C[None, :] & ~jnp.eye(flat.shape[0], dtype=bool)
    distances = jnp.where(both, jnp.maximum(distances, 0.0), jnp.inf)
    n = present_C.sum()
    neighbours = jnp.maximum(n - num_byzantine - 2, 1)
    ordered = jnp.sort(distances, axis=1)
    nearest = jnp.arange(flat.shape[0])[None, :] < neighbours
    scores = jnp.where(nearest, ordered, 0.0).sum(1)
    return jnp.where(present_C, scores, jnp.inf)


def krum(num_byzantine: int, num_selected: int = 1) -> optax.GradientTransformationExtraArgs:
    """Krum (``num_selected=1``) or multi-Krum: the mean of the ``num_selected`` present
    deltas with the lowest `krum_scores`, assuming at most ``num_byzantine`` bad clients."""
    if num_byzantine < 0 or num_selected < 1:
        raise ValueError(
            "robust.byzantine must be >= 0 and robust.krum_selected >= 1, got "
            f"{num_byzantine}, {num_selected}"
        )

    def aggregate(deltas_C, present_C, weights_C):
        scores = krum_scores(deltas_C, present_C, num_byzantine)
        rank = jnp.argsort(jnp.argsort(scores))
        chosen = (rank < num_selected) & present_C
        share = chosen / jnp.maximum(chosen.sum(), 1)
        return weighted_sum(share, deltas_C)

    return _transformation(aggregate)


def noise_aware_weights(deltas_C, present_C, weights_C):
    """``(trust_C, scale_C)`` of `noise_aware`: the weight of each client's rescaled delta
    (``max(0, cos(delta_c, median delta)) * w_c``, 0 for absent clients) and the factor
    ``median_c' |delta_c'| / |delta_c|`` that rescales it."""
    reference = coordinate_median().update(deltas_C, optax.EmptyState(), weights=weights_C)[0]
    flat = jnp.concatenate(
        [d.reshape(d.shape[0], -1).astype(jnp.float32) for d in jax.tree.leaves(deltas_C)], 1
    )
    ref = jnp.concatenate([r.reshape(-1).astype(jnp.float32) for r in jax.tree.leaves(reference)])
    norms = jnp.linalg.norm(flat, axis=1)
    cosine = flat @ ref / jnp.maximum(norms * jnp.linalg.norm(ref), 1e-12)
    trust = jnp.where(present_C, jnp.maximum(cosine, 0.0) * weights_C, 0.0)
    typical = jnp.nanmedian(jnp.where(present_C, norms, jnp.nan))
    return trust, typical / jnp.maximum(norms, 1e-12)


def noise_aware() -> optax.GradientTransformationExtraArgs:
    """FedGW-style noise-aware weighting (the module docstring states the rule): the
    ``trust x examples`` weighted mean of the deltas rescaled to the median norm; zero
    when no client has positive trust."""
    mean = weighted_mean()

    def aggregate(deltas_C, present_C, weights_C):
        trust, scale = noise_aware_weights(deltas_C, present_C, weights_C)
        rescaled = _scaled(deltas_C, scale)
        return mean.update(rescaled, optax.EmptyState(), weights=trust)[0]

    return _transformation(aggregate)


def check_round_size(
    name: str, clients: int, *, trim_fraction: float = 0.1, byzantine: int = 0,
    krum_selected: int = 1,
) -> None:  # fmt: skip
    """Refuses an aggregator that cannot work as its paper states on ``clients`` per round:
    a trimmed mean asked to trim (``trim_fraction > 0``) that trims ``floor(trim_fraction x
    clients) = 0``, Krum with ``clients <= 2 byzantine + 2`` (Blanchard et al. 2017 need
    ``n > 2f + 2``) or with ``krum_selected > clients``.

    A round in which clients drop out runs the rule on the clients that reported (the trimmed
    mean trims ``floor(trim_fraction n)`` of those n; Krum counts at least one neighbour).

    Raises:
      ValueError: one line naming the ``robust.*`` field, the clients a round and what works.
    """
    if name == "trimmed_mean" and trim_fraction > 0 and math.floor(trim_fraction * clients) < 1:
        raise ValueError(
            f"robust.trim_fraction={trim_fraction} trims floor({trim_fraction} x {clients}) = 0 "
            f"of the {clients} clients a round: the plain mean; trimming one from each end "
            f"needs trim_fraction >= 1/{clients} = {1 / clients:.4g} (below 0.5), or "
            f"robust.aggregator='mean'"
        )
    if name != "krum":
        return
    if clients <= 2 * byzantine + 2:
        most = f"at most {(clients - 3) // 2}" if clients >= 3 else "none: Krum needs 3 clients"
        raise ValueError(
            f"robust.byzantine={byzantine} is more than Krum tolerates with {clients} clients "
            f"a round (it needs clients > 2 x byzantine + 2): {most}"
        )
    if krum_selected > clients:
        raise ValueError(
            f"robust.krum_selected={krum_selected} exceeds the {clients} clients a round; "
            f"at most {clients}"
        )


def make_aggregator(
    name: str, *, trim_fraction: float = 0.1, max_norm: float = 1.0, byzantine: int = 0,
    krum_selected: int = 1, clients_per_round: int | None = None,
) -> optax.GradientTransformationExtraArgs:  # fmt: skip
    """The aggregator of ``robust.aggregator`` (one of `AGGREGATORS`; ``"mean"``: FedAvg's
    weighted mean), checked against ``clients_per_round`` when given (`check_round_size`).

    Raises:
      ValueError: a value outside its range, or one that `check_round_size` refuses.
    """
    if clients_per_round is not None:
        check_round_size(
            name, clients_per_round, trim_fraction=trim_fraction, byzantine=byzantine,
            krum_selected=krum_selected,
        )  # fmt: skip
    if name == "mean":
        return weighted_mean()
    if name == "median":
        return coordinate_median()
    if name == "trimmed_mean":
        return trimmed_mean(trim_fraction)
    if name == "norm_clipping":
        return norm_clipping(max_norm)
    if name == "krum":
        return krum(byzantine, krum_selected)
    if name == "noise_aware":
        return noise_aware()
    raise ValueError(f"robust.aggregator must be one of {list(AGGREGATORS)}, got {name!r}")
