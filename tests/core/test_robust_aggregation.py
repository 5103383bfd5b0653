"""Robust aggregators on hand-made deltas: the median, the trimmed mean, norm clipping and
Krum's picks by hand, absent clients ignored, and a FedAvg round with the median against the
median of the clients' deltas computed one by one."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.core.robust_aggregation import (
    coordinate_median,
    krum,
    krum_scores,
    make_aggregator,
    norm_clipping,
    trimmed_mean,
)

# 5 clients, 3 parameters: four near (1, 2, 3) and one attacker far away
DELTAS = {"w": jnp.array([[1.0, 2.0, 3.0], [1.2, 2.1, 2.9], [0.9, 1.8, 3.2], [1.15, 2.25, 3.3],
                          [50.0, -40.0, 90.0]])}  # fmt: skip
ALL = jnp.ones(5)


def aggregate(tx, deltas=DELTAS, weights=ALL):
    return np.asarray(tx.update(deltas, tx.init(None), weights=weights)[0]["w"])


def test_coordinate_median_by_hand_and_without_an_absent_client():
    np.testing.assert_allclose(aggregate(coordinate_median()), [1.15, 2.0, 3.2], rtol=1e-6)
    absent = jnp.array([1.0, 1.0, 1.0, 0.0, 1.0])  # client 3 not reporting: 4 values left
    expected = [(1.0 + 1.2) / 2, (1.8 + 2.0) / 2, (3.0 + 3.2) / 2]  # even count: mid-points
    np.testing.assert_allclose(aggregate(coordinate_median(), weights=absent), expected, 1e-6)


def test_trimmed_mean_drops_the_extremes_of_each_coordinate():
    # beta 0.2 of 5: one largest and one smallest value per coordinate
    expected = [np.mean([1.0, 1.2, 1.15]), np.mean([1.8, 2.0, 2.1]), np.mean([3.0, 3.2, 3.3])]
    np.testing.assert_allclose(aggregate(trimmed_mean(0.2)), expected, rtol=1e-6)
    np.testing.assert_allclose(aggregate(trimmed_mean(0.0)), np.mean(DELTAS["w"], 0), rtol=1e-6)
    with pytest.raises(ValueError, match="trim_fraction"):
        trimmed_mean(0.5)


def test_norm_clipping_scales_long_deltas_then_averages():
    deltas = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4]])}  # norms 5 and 0.5
    got = aggregate(norm_clipping(1.0), deltas, jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(got, (1 * np.array([0.6, 0.8]) + 3 * np.array([0.3, 0.4])) / 4,
                               rtol=1e-6)  # fmt: skip


def test_krum_picks_the_client_closest_to_its_neighbours():
    w = np.asarray(DELTAS["w"])
    f, n = 1, 5
    by_hand = []
    for i in range(n):
        d = sorted(float(np.sum((w[i] - w[j]) ** 2)) for j in range(n) if j != i)
        by_hand.append(sum(d[: n - f - 2]))
    scores = krum_scores(DELTAS, ALL > 0, f)
    np.testing.assert_allclose(scores, by_hand, rtol=1e-4)
    best = int(np.argmin(by_hand))
    np.testing.assert_allclose(aggregate(krum(f)), w[best], rtol=1e-6)
    two = np.argsort(by_hand)[:2]
    np.testing.assert_allclose(aggregate(krum(f, num_selected=2)), w[two].mean(0), rtol=1e-6)
    assert 4 not in two  # the attacker is never chosen
    absent = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])
    assert np.isinf(np.asarray(krum_scores(DELTAS, absent > 0, f))[4])


@pytest.mark.parametrize(
    "name, clients, options, message",
    [
        ("trimmed_mean", 9, {"trim_fraction": 0.1}, r"robust.trim_fraction=0.1 trims "
         r"floor\(0.1 x 9\) = 0 of the 9 clients a round: the plain mean; .* >= 1/9 = 0.1111"),
        ("trimmed_mean", 4, {"trim_fraction": 0.2}, r"trim_fraction >= 1/4 = 0.25"),
        ("krum", 6, {"byzantine": 2}, r"robust.byzantine=2 is more than Krum tolerates with 6 "
         r"clients a round \(it needs clients > 2 x byzantine \+ 2\): at most 1"),
        ("krum", 2, {"byzantine": 0}, r"robust.byzantine=0 .*: none: Krum needs 3 clients"),
        ("krum", 5, {"krum_selected": 6}, r"robust.krum_selected=6 exceeds the 5 clients a "
         r"round; at most 5"),
    ],
)  # fmt: skip
def test_aggregators_that_cannot_work_on_the_clients_a_round_are_refused(
    name, clients, options, message
):
    with pytest.raises(ValueError, match=message):
        make_aggregator(name, clients_per_round=clients, **options)


@pytest.mark.parametrize(
    "name, clients, options",
    [
        ("trimmed_mean", 10, {"trim_fraction": 0.1}),  # trims one from each end
        ("trimmed_mean", 3, {"trim_fraction": 0.0}),  # asked for no trimming: the mean
        ("krum", 7, {"byzantine": 2, "krum_selected": 7}),  # 7 > 2 x 2 + 2
        ("krum", 3, {"byzantine": 0}),
        ("median", 1, {"byzantine": 5, "krum_selected": 9}),  # Krum's fields unused
    ],
)
def test_aggregators_within_their_conditions_are_built(name, clients, options):
    make_aggregator(name, clients_per_round=clients, **options)


def test_fedavg_round_with_the_median_takes_the_median_of_the_client_deltas():
    from fedjax_sim.algorithms.fedavg import fedavg_parts
    from fedjax_sim.core.round import federated_round
    from fedjax_sim.core.selection import uniform
    from fedjax_sim.models.model import variables
    from tests.linear_workers import OBJECTIVE, PARAMS0, linear_workers

    workers = linear_workers(3, 4, seed=5)
    parts = fedavg_parts(OBJECTIVE, optax.sgd(0.5), optax.sgd(1.0), num_clients=3,
                         aggregator=coordinate_median())  # fmt: skip
    round_fn = federated_round(parts, sampler=uniform(3), local_steps=1, batch_size=4)
    state, _ = jax.jit(round_fn)(parts.init(variables(PARAMS0)), workers.clients,
                                 jax.random.key(0))  # fmt: skip
    deltas = [jax.tree.map(lambda g: -0.5 * g, workers.grad(PARAMS0, s)) for s in workers.shards]
    expected = jax.tree.map(lambda p, *d: p + np.median(np.stack(d), 0), PARAMS0, *deltas)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
