"""The fast 2x2 max pool equals flax's ``nn.max_pool`` in values and gradients, ties included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.models.pooling import max_pool_2x2


def flax_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2))


@pytest.mark.parametrize("ties", [False, True])
def test_values_and_gradients_equal_flax_max_pool(ties):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 8, 5)).astype(np.float32)
    if ties:  # few distinct values: many windows hold their maximum more than once
        x = np.round(x).clip(-1, 1)
    g = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    ours, ours_vjp = jax.vjp(max_pool_2x2, jnp.asarray(x))
    theirs, theirs_vjp = jax.vjp(flax_pool, jnp.asarray(x))
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours_vjp(g)[0], theirs_vjp(g)[0])
    # Hand check of one window: the gradient goes to the first maximal position, row-major.
    window = x[0, :2, :2, 0]
    grad = np.asarray(ours_vjp(g)[0])[0, :2, :2, 0]
    first = np.unravel_index(np.argmax(window), (2, 2))
    expected = np.zeros((2, 2), np.float32)
    expected[first] = g[0, 0, 0, 0]
    np.testing.assert_array_equal(grad, expected)


def test_vmapped_pool_equals_per_client_pool():
    x = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, 2))
    g = jax.random.normal(jax.random.key(1), (2, 3, 2, 2, 2))
    grads = jax.vmap(lambda xc, gc: jax.vjp(max_pool_2x2, xc)[1](gc)[0])(x, g)
    for c in range(2):
        np.testing.assert_array_equal(grads[c], jax.vjp(flax_pool, x[c])[1](g[c])[0])


def test_odd_sizes_are_rejected():
    with pytest.raises(ValueError, match="even height and width"):
        max_pool_2x2(jnp.zeros((1, 5, 4, 1)))
