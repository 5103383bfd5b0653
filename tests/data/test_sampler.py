"""The on-device sampler: Feistel permutations, client sampling, batch plans, gathering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.data.client_data import (
    client_batch_plan,
    client_data_from_indices,
    gather_batch,
    random_permutation_at,
    round_batch_plan,
    sample_clients,
)

# Jitted once per module: eager calls would compile their `while_loop` again on every call.
permutation_at = jax.jit(random_permutation_at)
plan_at = jax.jit(client_batch_plan, static_argnames=("num_steps", "batch_size"))
sample_at = jax.jit(sample_clients, static_argnums=(1, 2))


_MAX_N = 4097


def _permutation(key, n, stream=0):
    """``perm(range(n))``; positions are padded to one shape so that all n share one compile."""
    positions = jnp.minimum(jnp.arange(_MAX_N), n - 1)
    return np.asarray(permutation_at(key, positions, n, stream))[:n]


def _chi_square(counts, expected):
    return float(np.sum((counts - expected) ** 2 / expected))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, _MAX_N])
def test_permutation_of_range(n):
    for seed, stream in [(0, 0), (1, 0), (0, 5)]:
        perm = _permutation(jax.random.key(seed), n, stream)
        assert perm.dtype == np.int32
        np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_permutation_just_above_an_even_power_of_two():
    # For n = 2**22 + 1 the Feistel domain must have 2**24 values; a domain of 2**22 (from
    # float32 log2(n) rounding to 22.0) cannot reach value n - 1, and position n - 1 never walks
    # back into [0, n). Only positions [0, n - 1) are evaluated, so a wrong domain fails instead of
    # hanging: the values of n - 1 positions of a permutation miss at most one of [0, n).
    n = 2**22 + 1
    tops = [_permutation_prefix_max(jax.random.key(seed), n) for seed in (0, 1)]
    assert n - 1 in tops, tops


def _permutation_prefix_max(key, n):
    return int(jnp.max(permutation_at(key, jnp.arange(n - 1), n)))


def test_keys_and_streams_select_different_permutations():
    n = 64
    base = _permutation(jax.random.key(0), n)
    assert not np.array_equal(base, _permutation(jax.random.key(1), n))
    assert not np.array_equal(base, _permutation(jax.random.key(0), n, stream=1))
    np.testing.assert_array_equal(base, _permutation(jax.random.key(0), n))
    # A per-position stream array selects each position's permutation independently.
    streams = jnp.array([0, 1] * (n // 2))
    mixed = np.asarray(permutation_at(jax.random.key(0), jnp.arange(n), n, streams))
    other = _permutation(jax.random.key(0), n, stream=1)
    np.testing.assert_array_equal(mixed[0::2], base[0::2])
    np.testing.assert_array_equal(mixed[1::2], other[1::2])
    perms = {tuple(_permutation(jax.random.key(s), 8)) for s in range(50)}
    assert len(perms) >= 45  # 50 draws from 8! = 40320 permutations barely ever collide


@jax.jit
def _permutations_of_keys(keys, n):
    """``perm_k(range(n))`` for every key, padded to 64 positions: one compile for all n."""
    positions = jnp.minimum(jnp.arange(64), n - 1)
    return jax.vmap(lambda k: random_permutation_at(k, positions, n))(keys)


@pytest.mark.parametrize("n, draws_per_cell", [(3, 2000), (5, 2000), (8, 2000), (64, 200)])
def test_permutations_are_roughly_uniform(n, draws_per_cell):
    # Counts of (position, value) over many keys; uniform permutations give a chi-square with
    # (n-1)^2 degrees of freedom. The bound is 6 standard deviations above its mean, so only a
    # real bias fails (deterministic keys, so the test is not flaky).
    keys = jax.random.split(jax.random.key(1), draws_per_cell * n)
    perms = np.asarray(_permutations_of_keys(keys, n))[:, :n]
    counts = np.stack([np.bincount(perms[:, pos], minlength=n) for pos in range(n)])
    dof = (n - 1) ** 2
    chi = _chi_square(counts, draws_per_cell)
    assert chi < dof + 6 * np.sqrt(2 * dof), (chi, dof, counts / draws_per_cell)
    chi_0 = _chi_square(counts[0], draws_per_cell)
    assert chi_0 < (n - 1) + 6 * np.sqrt(2 * (n - 1)), (chi_0, counts[0])


@pytest.mark.parametrize("num_clients, clients_per_round", [(1, 1), (5, 5), (10, 3), (1000, 17)])
def test_sample_clients_distinct_in_range(num_clients, clients_per_round):
    for seed in range(5):
        ids = np.asarray(sample_at(jax.random.key(seed), num_clients, clients_per_round))
        assert ids.shape == (clients_per_round,)
        assert len(set(ids.tolist())) == clients_per_round
        assert ids.min() >= 0 and ids.max() < num_clients


def test_sample_clients_inclusion_is_uniform():
    num_keys, num_clients, per_round = 3000, 6, 2
    keys = jax.random.split(jax.random.key(2), num_keys)
    ids = np.asarray(jax.jit(jax.vmap(lambda k: sample_clients(k, num_clients, per_round)))(keys))
    counts = np.bincount(ids.ravel(), minlength=num_clients)
    expected = num_keys * per_round / num_clients
    assert _chi_square(counts, expected) < 5 + 6 * np.sqrt(10), counts


# A client with 7 examples at rows 10..16 of the flat arrays, padded with zeros to M = 12.
ROW = jnp.array([10, 11, 12, 13, 14, 15, 16, 0, 0, 0, 0, 0], jnp.int32)


def _plan(key, count, **kwargs):
    indices, mask = plan_at(key, ROW, 0, count, **kwargs)
    return np.asarray(indices), np.asarray(mask)


def test_plan_passes_are_without_replacement():
    for seed in range(4):
        indices, mask = _plan(jax.random.key(seed), 7, num_steps=5, batch_size=3)
        assert indices.shape == mask.shape == (5, 3)
        assert mask.all()
        flat = indices.ravel()
        np.testing.assert_array_equal(np.sort(flat[:7]), np.arange(10, 17))
        np.testing.assert_array_equal(np.sort(flat[7:14]), np.arange(10, 17))
        assert 10 <= flat[14] <= 16


def test_plan_passes_are_reshuffled():
    orders = set()
    for seed in range(6):
        flat = _plan(jax.random.key(seed), 7, num_steps=5, batch_size=3)[0].ravel()
        orders.update(tuple(flat[p * 7 : (p + 1) * 7]) for p in range(2))
    assert len(orders) == 12


@pytest.mark.parametrize("count", [1, 2])
def test_plan_client_smaller_than_batch(count):
    indices, mask = _plan(jax.random.key(3), count, num_steps=5, batch_size=3)
    assert mask.all()
    flat = indices.ravel()
    for start in range(0, 15 - count + 1, count):
        np.testing.assert_array_equal(np.sort(flat[start : start + count]), 10 + np.arange(count))


def test_plan_empty_client_is_fully_masked():
    indices, mask = _plan(jax.random.key(0), 0, num_steps=5, batch_size=3)
    assert indices.shape == (5, 3)
    assert not mask.any()


def test_plan_example_limit_masks_positions_past_it():
    indices, mask = _plan(jax.random.key(0), 7, num_steps=5, batch_size=3, example_limit=10)
    np.testing.assert_array_equal(mask.ravel(), np.arange(15) < 10)
    unlimited = _plan(jax.random.key(0), 7, num_steps=5, batch_size=3)[0]
    np.testing.assert_array_equal(indices, unlimited)


def test_plan_offset_continues_the_stream():
    key, batch = jax.random.key(4), 3
    long_plan = _plan(key, 7, num_steps=8, batch_size=batch)[0]
    for step in (1, 3, 6):
        tail = _plan(key, 7, num_steps=2, batch_size=batch, offset=step * batch)[0]
        np.testing.assert_array_equal(tail, long_plan[step : step + 2])


def test_plan_reads_only_the_clients_own_rows():
    own = set(range(10, 17))
    for seed in range(20):
        for count in (1, 3, 7):
            indices = _plan(jax.random.key(seed), count, num_steps=5, batch_size=3)[0]
            assert set(indices.ravel().tolist()) <= set(range(10, 10 + count)) <= own


def test_round_batch_plan_is_the_per_client_plan():
    examples = {"x": np.arange(20, dtype=np.float32)[:, None], "y": np.arange(20, dtype=np.int32)}
    data = client_data_from_indices(examples, [np.arange(0, 7), np.arange(7, 10), np.array([])])
    key, ids = jax.random.key(5), jnp.array([2, 0, 1])
    plans = jax.jit(round_batch_plan, static_argnames=("num_steps", "batch_size", "epochs"))
    indices, mask = plans(key, data, ids, num_steps=4, batch_size=2, epochs=1)
    assert indices.shape == mask.shape == (3, 4, 2)
    for c, client_id in enumerate([2, 0, 1]):
        count = int(data.counts_K[client_id])
        want_indices, want_mask = plan_at(
            jax.random.fold_in(key, client_id),
            data.order_N,
            data.offsets_K[client_id],
            count,
            num_steps=4,
            batch_size=2,
            example_limit=count,
        )
        np.testing.assert_array_equal(indices[c], want_indices)
        np.testing.assert_array_equal(mask[c], want_mask)
    np.testing.assert_array_equal(mask.reshape(3, -1).sum(1), [0, 7, 3])


def test_gather_batch():
    examples = {"x": np.arange(12, dtype=np.float32).reshape(6, 2), "y": np.arange(6) * 10}
    data = client_data_from_indices(examples, [np.arange(6)])
    indices, mask = jnp.array([[5, 0], [2, 2]]), jnp.array([[True, True], [True, False]])
    batch = gather_batch(data, indices, mask)
    np.testing.assert_array_equal(batch["x"], examples["x"][np.asarray(indices)])
    np.testing.assert_array_equal(batch["y"], [[50, 0], [20, 20]])
    np.testing.assert_array_equal(batch["mask"], mask)
