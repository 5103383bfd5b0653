"""The loop-friendly convolution equals XLA's in values and gradients, in and out of loops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.models.conv import LoopFriendlyConv, conv2d, conv_valid

TOL = dict(rtol=1e-5, atol=1e-5)


def xla_conv(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def numpy_conv_and_grads(x, kernel, dy):
    """Direct sums over every output position: an independent reference."""
    kh, kw = kernel.shape[:2]
    _, ho, wo, _ = dy.shape
    y = np.zeros(dy.shape)
    dx, dk = np.zeros(x.shape), np.zeros(kernel.shape)
    for i in range(kh):
        for j in range(kw):
            window = x[:, i : i + ho, j : j + wo, :]  # [B, Ho, Wo, C]
            y += np.einsum("bhwc,co->bhwo", window, kernel[i, j])
            dk[i, j] = np.einsum("bhwc,bhwo->co", window, dy)
            dx[:, i : i + ho, j : j + wo, :] += np.einsum("bhwo,co->bhwc", dy, kernel[i, j])
    return y, dx, dk


@pytest.mark.parametrize("shape", [((2, 9, 7, 3), (3, 2, 3, 4)), ((1, 8, 8, 2), (5, 5, 2, 3))])
def test_values_and_gradients(shape):
    x_shape, k_shape = shape
    rng = np.random.default_rng(0)
    x = rng.normal(size=x_shape).astype(np.float32)
    kernel = rng.normal(size=k_shape).astype(np.float32)
    y, vjp = jax.vjp(conv_valid, jnp.asarray(x), jnp.asarray(kernel))
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx, dk = vjp(jnp.asarray(dy))
    want_y, want_dx, want_dk = numpy_conv_and_grads(x, kernel, dy)
    np.testing.assert_allclose(y, want_y, **TOL)
    np.testing.assert_allclose(dx, want_dx, **TOL)
    np.testing.assert_allclose(dk, want_dk, **TOL)
    xla_y, xla_vjp = jax.vjp(xla_conv, jnp.asarray(x), jnp.asarray(kernel))
    np.testing.assert_allclose(y, xla_y, **TOL)
    for ours, theirs in zip((dx, dk), xla_vjp(jnp.asarray(dy)), strict=True):
        np.testing.assert_allclose(ours, theirs, **TOL)


def test_in_a_loop_and_per_client():
    # Per-client kernels under vmap, and a few SGD steps under lax.scan: the contexts of a round.
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (2, 3, 8, 8, 2))  # 2 clients
    kernels = jax.random.normal(keys[1], (2, 3, 3, 2, 4))

    def train(conv, kernel, x):
        def step(kernel, _):
            grad = jax.grad(lambda k: jnp.sum(jnp.tanh(conv(x, k)) ** 2))(kernel)
            return kernel - 0.01 * grad, None

        return jax.lax.scan(step, kernel, None, length=3)[0]

    ours = jax.jit(jax.vmap(lambda k, x: train(conv_valid, k, x)))(kernels, x)
    for c in range(2):
        np.testing.assert_allclose(ours[c], train(xla_conv, kernels[c], x[c]), **TOL)
    assert not np.allclose(ours, kernels)


def test_module_matches_flax_conv():
    x = jax.random.normal(jax.random.key(1), (2, 7, 6, 3))
    flax_conv = nn.Conv(5, (3, 3), padding="VALID")
    params = flax_conv.init(jax.random.key(2), x)
    ours = LoopFriendlyConv(5, (3, 3))
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(
        jnp.shape, params
    )
    np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), **TOL)


@pytest.mark.parametrize(
    "k, strides, padding, size",
    [(3, (1, 1), "SAME", 8), (3, (2, 2), "SAME", 8), (3, (2, 2), "SAME", 7),
     (1, (2, 2), "VALID", 8), (3, (2, 1), "VALID", 9)],
)  # fmt: skip
def test_strided_and_same_equal_xla(k, strides, padding, size):
    # ResNet's layers: values and both gradients equal lax.conv_general_dilated's.
    rng = np.random.default_rng(k + size)
    x = jnp.asarray(rng.normal(size=(2, size, size, 3)).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=(k, k, 3, 4)).astype(np.float32))

    def xla(x, kernel):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=dims)

    y, vjp = jax.vjp(lambda x, w: conv2d(x, w, strides, padding), x, kernel)
    want_y, want_vjp = jax.vjp(xla, x, kernel)
    assert y.shape == want_y.shape
    dy = jnp.asarray(rng.normal(size=y.shape).astype(np.float32))
    np.testing.assert_allclose(y, want_y, **TOL)
    for ours, theirs in zip(vjp(dy), want_vjp(dy), strict=True):
        np.testing.assert_allclose(ours, theirs, **TOL)


def test_bad_padding_names_the_choices():
    with pytest.raises(ValueError, match=r"padding must be one of \['VALID', 'SAME'\]"):
        conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), padding="FULL")


def test_module_without_bias_matches_flax_conv():
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
    flax_conv = nn.Conv(4, (3, 3), (2, 2), padding="SAME", use_bias=False)
    params = flax_conv.init(jax.random.key(4), x)
    ours = LoopFriendlyConv(4, (3, 3), (2, 2), padding="SAME", use_bias=False)
    np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), **TOL)
