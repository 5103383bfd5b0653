"""Winograd's convolution against direct sums in float64 (an independent reference written from
the definition), in values and gradients, in the contexts of a round, and in the course CNN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.models.cnn import make_cnn, resolve_conv
from fedjax_sim.models.conv import LoopFriendlyConv, conv_valid
from fedjax_sim.models.model import variables
from fedjax_sim.models.winograd import POINTS, winograd_conv_valid, winograd_matrices
from tests.models.test_conv import numpy_conv_and_grads  # direct sums from the definition


@pytest.mark.parametrize(("m", "r"), [(2, 3), (2, 5), (4, 5)])
def test_matrices_compute_a_correlation(m, r):
    # The 1-D identity the 2-D algorithm nests: A^T ((G g) * (B^T d)) = correlate(d, g).
    a_t, g, b_t = winograd_matrices(m, r, POINTS[m][: m + r - 2])
    rng = np.random.default_rng(0)
    for _ in range(5):
        d, taps = rng.normal(size=m + r - 1), rng.normal(size=r)
        np.testing.assert_allclose(
            a_t @ ((g @ taps) * (b_t @ d)), np.correlate(d, taps, "valid"), atol=1e-12
        )


def test_bad_points_and_shapes():
    with pytest.raises(ValueError, match="distinct points"):
        winograd_matrices(2, 3, (0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="m dividing"):
        winograd_conv_valid(jnp.zeros((1, 8, 8, 1)), jnp.zeros((3, 3, 1, 1)), m=4)


@pytest.mark.parametrize(
    ("x_shape", "k_shape", "m"),
    [
        ((2, 14, 14, 8), (5, 5, 8, 6), 4),  # the course CNN's second layer, fewer channels
        ((2, 14, 14, 8), (5, 5, 8, 6), 2),
        ((3, 9, 11, 2), (5, 5, 2, 3), 4),  # outputs 5x7: partial tiles, zero-padded
        ((1, 7, 6, 3), (3, 3, 3, 2), 2),
    ],
)
def test_values_and_gradients_equal_direct_sums(x_shape, k_shape, m):
    rng = np.random.default_rng(1)
    x = rng.normal(size=x_shape).astype(np.float32)
    kernel = (rng.normal(size=k_shape) / np.sqrt(np.prod(k_shape[:3]))).astype(np.float32)
    y, vjp = jax.vjp(lambda a, b: winograd_conv_valid(a, b, m), jnp.asarray(x), kernel)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx, dk = vjp(jnp.asarray(dy))
    want = numpy_conv_and_grads(x.astype(np.float64), kernel.astype(np.float64), dy)
    for ours, exact in zip((y, dx, dk), want, strict=True):
        # Rounding of the transforms: a few float32 ulps of the largest value, no more.
        np.testing.assert_allclose(ours, exact, atol=3e-5 * np.abs(exact).max(), rtol=0)


def test_layer_error_stays_near_direct_rounding():
    # At the course CNN's second layer (64 -> 64 channels, B = 16), F(4x4, 5x5)'s float32 error
    # against float64 stays within 8x the direct convolution's own.
    rng = np.random.default_rng(2)
    x = np.maximum(rng.normal(size=(16, 14, 14, 64)), 0).astype(np.float32)
    kernel = (rng.normal(size=(5, 5, 64, 64)) / 40).astype(np.float32)
    exact = numpy_conv_and_grads(x.astype(np.float64), kernel.astype(np.float64),
                                  np.zeros((16, 10, 10, 64)))[0]  # fmt: skip
    direct_error = np.abs(np.asarray(conv_valid(x, kernel)) - exact).max()
    winograd_error = np.abs(np.asarray(winograd_conv_valid(x, kernel)) - exact).max()
    assert winograd_error < 8 * direct_error, (winograd_error, direct_error)


def test_per_client_kernels_in_a_scan():
    # vmap over clients' kernels and SGD steps under lax.scan, as in a round: the same training
    # trajectory as the direct convolution's, to float tolerance.
    keys = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(keys[0], (2, 3, 4, 9, 9, 2))  # clients, steps, batch, H, W, C
    kernels = jax.random.normal(keys[1], (2, 5, 5, 2, 3)) / 7

    def train(conv, kernel, x):
        def step(k, batch):
            grad = jax.grad(lambda k: jnp.sum(jnp.tanh(conv(batch, k))))(k)
            return k - 0.1 * grad, None

        return jax.lax.scan(step, kernel, x)[0]

    ours = jax.jit(jax.vmap(lambda k, x: train(winograd_conv_valid, k, x)))(kernels, x)
    direct = jax.jit(jax.vmap(lambda k, x: train(conv_valid, k, x)))(kernels, x)
    np.testing.assert_allclose(ours, direct, atol=1e-4)


def test_layer_and_course_cnn(cnn_params):
    assert resolve_conv("auto", "cpu") == "winograd"
    assert resolve_conv("auto", "gpu") == "xla"
    with pytest.raises(ValueError, match="VALID"):
        LoopFriendlyConv(4, (3, 3), padding="SAME", algorithm="winograd").init(
            jax.random.key(0), jnp.zeros((1, 6, 6, 1))
        )
    # The same parameters (the session's CNN, built with the CPU default) in both models.
    models = {conv: make_cnn(100, conv=conv) for conv in ("winograd", "loop_friendly")}
    x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
    logits = {
        conv: np.asarray(jax.jit(model.apply)(variables(cnn_params), x)[0])
        for conv, model in models.items()
    }
    # loop_friendly equals XLA's nn.Conv (test_conv.py); Winograd's differs by rounding only.
    np.testing.assert_allclose(logits["winograd"], logits["loop_friendly"], atol=1e-5)
    assert not np.array_equal(logits["winograd"], logits["loop_friendly"])  # it is in use
