"""The hand-written VJP of the LSTM recurrence equals autodiff of a plain scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.models.lstm import lstm_recurrence


def plain_recurrence(gates_in, w_hh):
    hidden = w_hh.shape[0]

    def step(carry, gates):
        h, c = carry
        i, f, g, o = jnp.split(gates + h @ w_hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((*gates_in.shape[1:-1], hidden))
    return jax.lax.scan(step, (zeros, zeros), gates_in)[1]


@pytest.mark.parametrize("unroll", [1, 3])
def test_recurrence_values_and_gradients_match_autodiff(unroll):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    gates_in = jax.random.normal(k1, (7, 3, 4 * 5))
    w_hh = 0.5 * jax.random.normal(k2, (5, 4 * 5))
    probe = jax.random.normal(k3, (7, 3, 5))

    def loss(fn):
        return lambda g, w: jnp.sum(jnp.sin(fn(g, w)) * probe)

    ours = lambda g, w: lstm_recurrence(g, w, unroll)  # noqa: E731
    np.testing.assert_allclose(ours(gates_in, w_hh), plain_recurrence(gates_in, w_hh), atol=1e-6)
    expected = jax.grad(loss(plain_recurrence), argnums=(0, 1))(gates_in, w_hh)
    got = jax.grad(loss(ours), argnums=(0, 1))(gates_in, w_hh)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)
    # and under vmap over a client axis, as the engine uses it
    batched = jax.vmap(jax.grad(loss(ours), argnums=(0, 1)))(gates_in[None], w_hh[None])
    np.testing.assert_allclose(batched[1][0], expected[1], atol=1e-5, rtol=1e-5)
