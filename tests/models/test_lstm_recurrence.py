"""The hand-written VJP of an LSTM layer equals autodiff of a plain scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.models.lstm import lstm_layer


def plain_layer(x, w_ih, bias, w_hh):
    hidden = w_hh.shape[0]

    def step(carry, x_t):
        h, c = carry
        i, f, g, o = jnp.split(x_t @ w_ih + bias + h @ w_hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((*x.shape[1:-1], hidden))
    return jax.lax.scan(step, (zeros, zeros), x)[1]


@pytest.mark.parametrize("unroll", [1, 3])
def test_layer_values_and_gradients_match_autodiff(unroll):
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.key(0), 5)
    steps, batch, d_in, hidden = 7, 3, 2, 5
    x = jax.random.normal(k1, (steps, batch, d_in))
    w_ih = jax.random.normal(k2, (d_in, 4 * hidden))
    bias = jax.random.normal(k3, (4 * hidden,))
    w_hh = 0.5 * jax.random.normal(k4, (hidden, 4 * hidden))
    probe = jax.random.normal(k5, (steps, batch, hidden))
    args = (x, w_ih, bias, w_hh)

    def loss(fn):
        return lambda *a: jnp.sum(jnp.sin(fn(*a)) * probe)

    ours = lambda *a: lstm_layer(*a, unroll)  # noqa: E731
    np.testing.assert_allclose(ours(*args), plain_layer(*args), atol=1e-6)
    every_input = tuple(range(4))
    expected = jax.grad(loss(plain_layer), argnums=every_input)(*args)
    got = jax.grad(loss(ours), argnums=every_input)(*args)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)
    # and under vmap over a client axis, as the engine uses it
    batched = jax.vmap(jax.grad(loss(ours), argnums=every_input))(*(a[None] for a in args))
    for e, g in zip(expected, batched, strict=True):
        np.testing.assert_allclose(g[0], e, atol=1e-5, rtol=1e-5)


def test_evaluation_pass_keeps_only_hidden_states():
    """Outside differentiation the layer's loop stacks h alone: the same values, bit for bit, as
    the training pass (which stacks c and the four gates for its VJP), in less working memory
    (here ~2/3 of it; at the main job's evaluation chunk, 329 MB against 591 MB)."""
    k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
    steps, batch, d_in, hidden = 20, 64, 8, 32
    args = (
        jax.random.normal(k1, (steps, batch, d_in)),
        jax.random.normal(k2, (d_in, 4 * hidden)),
        jax.random.normal(k3, (4 * hidden,)),
        0.5 * jax.random.normal(k4, (hidden, 4 * hidden)),
    )
    evaluation = jax.jit(lstm_layer)
    training = jax.jit(lambda *a: jax.vjp(lstm_layer, *a)[0])  # the forward pass under grad
    np.testing.assert_array_equal(evaluation(*args), training(*args))
    np.testing.assert_allclose(evaluation(*args), plain_layer(*args), atol=1e-6)

    def working_bytes(fn):
        return fn.lower(*args).compile().memory_analysis().temp_size_in_bytes

    assert working_bytes(evaluation) < 0.75 * working_bytes(training)
