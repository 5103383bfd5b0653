"""Client selection: frequencies against their probabilities (chi-square), power of choice on a
hand-made case, dropouts, and what the round does with repeated and absent clients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from fedjax_sim.core import selection
from fedjax_sim.core.round import (
    ClientOutput,
    FederatedParts,
    federated_algorithm,
    new_server_state,
    replicate_for_clients,
)
from fedjax_sim.data.client_data import client_data_from_indices

SIZES = (1, 2, 3, 4, 10, 20)
DRAWS = 4000  # rounds drawn


@pytest.fixture(scope="module")
def population():
    n = sum(SIZES)
    examples = {"x": np.arange(n, dtype=np.float32)[:, None], "y": np.zeros(n, np.int32)}
    bounds = np.cumsum((0, *SIZES))
    return client_data_from_indices(
        examples, [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    )


def _draws(sampler, clients, client_losses=None):
    keys = jax.random.split(jax.random.key(0), DRAWS)
    ids, present = jax.jit(jax.vmap(lambda k: sampler(k, None, clients, client_losses)))(keys)
    return np.asarray(ids), np.asarray(present)


def _assert_frequencies(ids, p):
    counts = np.bincount(ids.ravel(), minlength=len(p))
    expected = ids.size * np.asarray(p)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < stats.chi2.ppf(0.999, len(p) - 1), (counts, expected)
    return chi2


def test_proportional_frequencies_match_data_sizes(population):
    ids, present = _draws(selection.proportional(3), population)
    p = np.array(SIZES) / sum(SIZES)
    _assert_frequencies(ids, p)
    assert present.all()
    # The check has teeth: uniform frequencies fail it.
    with pytest.raises(AssertionError):
        _assert_frequencies(ids, np.full(len(SIZES), 1 / len(SIZES)))


def test_proportional_without_replacement_is_distinct_and_exact_for_one(population):
    ids, _ = _draws(selection.proportional(4, replace=False), population)
    assert all(len(set(row)) == 4 for row in ids)
    ids, _ = _draws(selection.proportional(1, replace=False), population)
    _assert_frequencies(ids, np.array(SIZES) / sum(SIZES))


def test_skewed_frequencies_and_the_direction_of_gamma(population):
    ids, _ = _draws(selection.skewed(2, 6, gamma=0.5, seed=3), population)
    _assert_frequencies(ids, selection.skewed_probabilities(6, 0.5, 3))
    # Small gamma concentrates participation; large gamma approaches uniform.
    small = selection.skewed_probabilities(1000, 0.05, 0)
    large = selection.skewed_probabilities(1000, 100.0, 0)
    # The top 1% of 1000 clients: a third of all draws with gamma 0.05, about 1% with 100.
    assert np.sort(small)[-10:].sum() > 0.2 > 0.02 > np.sort(large)[-10:].sum()
    assert np.abs(large - 1e-3).max() < 5e-4


def test_uniform_is_distinct_and_uniform(population):
    ids, _ = _draws(selection.uniform(3), population)
    assert all(len(set(row)) == 3 for row in ids)
    _assert_frequencies(ids, np.full(6, 1 / 6))


def test_power_of_choice_picks_the_highest_losses(population):
    losses_K = jnp.array([0.3, 2.0, 0.1, 5.0, 0.2, 1.0])

    def client_losses(state, clients, ids, key):
        return losses_K[ids]

    # d = K: every client is a candidate, so the pick is the top C by loss, whatever the draw.
    ids, _ = _draws(selection.power_of_choice(2, 6), population, client_losses)
    assert all(set(row) == {3, 1} for row in ids)
    # d = 3 < K: the pick is the top 2 of the 3 candidates, so the two lowest-loss clients
    # (2 and 4) are never picked together.
    ids, _ = _draws(selection.power_of_choice(2, 3), population, client_losses)
    for row in ids:
        assert losses_K[row[0]] >= losses_K[row[1]]
    assert not np.isin(ids, [2, 4]).all(axis=1).any()
    assert np.isin(ids, [4]).any()  # client 4 does win when drawn with 2 and one other


def test_dropout_rate(population):
    ids, present = _draws(selection.with_dropout(selection.uniform(3), 0.3), population)
    rate = 1 - present.mean()
    assert abs(rate - 0.3) < 4 * np.sqrt(0.3 * 0.7 / present.size)


def _recording_parts(num_clients):
    """A probe algorithm: each client's state counts its updates; the server keeps the
    round's first batch index and example count of every slot."""

    def init(variables):
        clients = replicate_for_clients({"updates": jnp.zeros((), jnp.int32)}, num_clients)
        return new_server_state(variables, {}, clients, {"first": jnp.zeros(4, jnp.int32)})

    def client_update(state, clients, inputs):
        count = inputs.mask_JxB.sum().astype(jnp.float32)
        metrics = {"loss_sum": count, "correct": 0.0 * count, "count": count}
        new = {"updates": inputs.client_state["updates"] + 1}
        return ClientOutput({}, {}, new, metrics, {"first": inputs.indices_JxB[0, 0]})

    def server_update(state, outputs_C, weights_C):
        return state.replace(extra={"first": outputs_C.extras["first"]})

    return FederatedParts(client_update, server_update, init)


def test_repeated_and_absent_clients(population):
    ids, present = jnp.array([4, 4, 5, 1]), jnp.array([True, True, True, False])

    def fixed(key, state, clients, client_losses):
        return ids, present

    algo = federated_algorithm(
        _recording_parts(6), sampler=fixed, local_steps=2, batch_size=5, weighting="uniform"
    )
    state = algo.init({"params": {}, "state": {}})
    state, metrics = jax.jit(algo.round_fn)(state, population, jax.random.key(0))
    updates = np.asarray(state.clients["updates"])
    # Client 4, drawn twice, is written once; absent client 1 is not written at all.
    np.testing.assert_array_equal(updates, [0, 0, 0, 0, 1, 1])
    first = np.asarray(state.extra["first"])
    assert first[0] != first[1]  # the two draws of client 4 read different batches
    # Metrics count the three reporting slots only: 2 steps x 5 examples each.
    assert metrics["train_examples"] == 30


def test_client_update_receives_id_count_and_attributes(population):
    flags = np.array([0, 1, 0, 1, 1, 0], np.int32)
    clients = population.replace(attributes={"malicious": jnp.asarray(flags)})

    def init(variables):
        return new_server_state(variables, {}, {}, {"info": jnp.zeros((3, 3), jnp.int32)})

    def client_update(state, data, inputs):
        info = inputs.info
        seen = jnp.stack([info["id"], info["count"], info["malicious"]])
        zero = jnp.zeros(())
        metrics = {"loss_sum": zero, "correct": zero, "count": zero}
        return ClientOutput({}, {}, {}, metrics, {"seen": seen})

    def server_update(state, outputs_C, weights_C):
        return state.replace(extra={"info": outputs_C.extras["seen"]})

    algo = federated_algorithm(
        FederatedParts(client_update, server_update, init),
        sampler=selection.uniform(3),
        local_steps=1,
        batch_size=2,
    )
    state, _ = jax.jit(algo.round_fn)(algo.init({"params": {}, "state": {}}), clients,
                                      jax.random.key(4))  # fmt: skip
    ids, counts, malicious = np.asarray(state.extra["info"]).T
    np.testing.assert_array_equal(counts, np.array(SIZES)[ids])
    np.testing.assert_array_equal(malicious, flags[ids])
