"""Models: the course CNN's shapes and size, the LSTM against a plain loop, task construction."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.core.tasks import make_task
from fedjax_sim.data import cifar100
from fedjax_sim.models.cnn import CourseCNN, resolve_conv
from fedjax_sim.models.lstm import make_lstm
from fedjax_sim.models.model import variables

# conv1 5x5x3x64, conv2 5x5x64x64, dense 1600->384, 384->192, 192->100, each with biases.
CNN_PARAMS = {
    "Conv_0": {"kernel": (5, 5, 3, 64), "bias": (64,)},
    "Conv_1": {"kernel": (5, 5, 64, 64), "bias": (64,)},
    "Dense_0": {"kernel": (1600, 384), "bias": (384,)},
    "Dense_1": {"kernel": (384, 192), "bias": (192,)},
    "Dense_2": {"kernel": (192, 100), "bias": (100,)},
}
CNN_PARAM_COUNT = (
    (5 * 5 * 3 * 64 + 64)
    + (5 * 5 * 64 * 64 + 64)
    + (1600 * 384 + 384)
    + (384 * 192 + 192)
    + (192 * 100 + 100)
)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)


def test_cnn_parameters(cnn_params):
    assert jax.tree.map(jnp.shape, cnn_params) == CNN_PARAMS
    assert sum(p.size for p in jax.tree.leaves(cnn_params)) == CNN_PARAM_COUNT == 815_332


def test_cnn_forward_and_1600_features(cnn_task, cnn_params, images):
    x = cnn_task.prepare(images, None)
    np.testing.assert_allclose(x, cifar100.normalize_images(images))
    logits, _ = cnn_task.model.apply(variables(cnn_params), x)
    assert logits.shape == (2, 100) and logits.dtype == jnp.float32

    _, state = CourseCNN(100, conv=resolve_conv("auto")).apply(  # the task's convolution
        {"params": cnn_params}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    outputs = {
        name: value["__call__"][0]
        for name, value in state["intermediates"].items()
        if name != "__call__"
    }
    assert outputs["Conv_0"].shape == (2, 28, 28, 64)
    assert outputs["Conv_1"].shape == (2, 10, 10, 64)
    # ReLU, 2x2 max-pool and row-major flattening of conv2's output give the 1600 features that
    # the first dense layer (before its ReLU) sees.
    pooled = np.maximum(np.asarray(outputs["Conv_1"]), 0).reshape(2, 5, 2, 5, 2, 64).max((2, 4))
    features = pooled.reshape(2, 1600)
    dense = cnn_params["Dense_0"]
    np.testing.assert_allclose(
        outputs["Dense_0"], features @ dense["kernel"] + dense["bias"], rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(state["intermediates"]["__call__"][0], logits, rtol=1e-6)


def test_cnn_augmentation_keeps_shape(cnn_task, images):
    x = jax.jit(cnn_task.prepare)(images, jax.random.key(1))
    assert x.shape == (2, 32, 32, 3) and x.dtype == jnp.float32
    no_augment = make_task("cnn", 100, augment=False)
    np.testing.assert_array_equal(
        no_augment.prepare(images, jax.random.key(1)), cifar100.normalize_images(images)
    )


def test_lstm_default_shapes():
    model = make_lstm()
    shapes = jax.tree.map(jnp.shape, jax.eval_shape(model.init, jax.random.key(0))["params"])
    layer_0 = {"w_ih": (8, 1024), "w_hh": (256, 1024), "bias": (1024,)}
    layer_1 = {"w_ih": (256, 1024), "w_hh": (256, 1024), "bias": (1024,)}
    assert shapes == {
        "Embed_0": {"embedding": (80, 8)},
        "LSTMLayer_0": layer_0,
        "LSTMLayer_1": layer_1,
        "Dense_0": {"kernel": (256, 80), "bias": (80,)},
    }
    logits, _ = jax.eval_shape(
        model.apply, jax.eval_shape(model.init, jax.random.key(0)), jnp.zeros((4, 80), jnp.int32)
    )
    assert logits.shape == (4, 80)


def test_lstm_forget_gate_bias_starts_at_one(small_lstm_params):
    params = small_lstm_params
    want = np.zeros(64)
    want[16:32] = 1.0  # gates (i, f, g, o) of 16 units each
    for layer in ("LSTMLayer_0", "LSTMLayer_1"):
        np.testing.assert_array_equal(params[layer]["bias"], want)


def _reference_lstm(params, tokens_BxT, xp=np):
    """A plain loop over layers and time, gates in the order (i, f, g, o); ``xp`` is np or jnp."""
    if xp is np:
        params = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
    sigmoid = lambda z: 1 / (1 + xp.exp(-z))  # noqa: E731
    x = params["Embed_0"]["embedding"][tokens_BxT]
    batch, steps, _ = x.shape
    for layer in range(len(params) - 2):
        p = params[f"LSTMLayer_{layer}"]
        hidden = p["w_hh"].shape[0]
        h, c, outputs = xp.zeros((batch, hidden)), xp.zeros((batch, hidden)), []
        for t in range(steps):
            z = x[:, t] @ p["w_ih"] + h @ p["w_hh"] + p["bias"]
            i, f, g, o = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * xp.tanh(g)
            h = sigmoid(o) * xp.tanh(c)
            outputs.append(h)
        x = xp.stack(outputs, axis=1)
    return x[:, -1] @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]


@pytest.fixture(scope="module")
def tiny_lstm():
    """``(model, params, tokens)``: 7 symbols, 3 units, 2 layers, 4 steps, random parameters.

    Random values everywhere (biases included) so that every gate's slice matters.
    """
    model = make_lstm(vocab_size=7, seq_len=4, hidden=3, num_layers=2)
    shapes = jax.eval_shape(model.init, jax.random.key(0))["params"]
    rng = np.random.default_rng(3)
    params = jax.tree.map(lambda leaf: rng.normal(size=leaf.shape).astype(np.float32), shapes)
    return model, params, np.array([[1, 4, 0, 6], [3, 3, 2, 5]], np.int32)


def test_lstm_forward_equals_plain_loop(tiny_lstm):
    model, params, tokens = tiny_lstm
    np.testing.assert_allclose(
        jax.jit(lambda p, x: model.apply(variables(p), x)[0])(params, tokens),
        _reference_lstm(params, tokens),
        rtol=1e-5,
        atol=1e-6,
    )


def test_lstm_gradient_equals_plain_loop_autodiff(tiny_lstm):
    model, params, tokens = tiny_lstm
    weights = np.random.default_rng(4).normal(size=(2, 7)).astype(np.float32)

    def loss(apply):
        return lambda p: jnp.sum(weights * jnp.tanh(apply(p, tokens)))

    grads = jax.jit(jax.grad(loss(lambda p, x: model.apply(variables(p), x)[0])))(params)
    want = jax.jit(jax.grad(loss(lambda p, x: _reference_lstm(p, x, jnp))))(params)
    chex.assert_trees_all_close(grads, want, rtol=1e-4, atol=1e-5)


def test_make_task_unknown_model():
    with pytest.raises(ValueError) as error:
        make_task("resnet", 10)
    assert str(error.value) == (
        "model.name must be one of ['cnn', 'lstm', 'mlp', 'resnet20', 'resnet18', 'vit'], "
        "got 'resnet'"
    )


def test_mlp_matches_hand_written_forward():
    task = make_task("mlp", 10, features=64)
    params = task.model.init(jax.random.key(0))["params"]
    assert jax.tree.map(jnp.shape, params) == {
        "Dense_0": {"kernel": (64, 128), "bias": (128,)},
        "Dense_1": {"kernel": (128, 10), "bias": (10,)},
    }
    x = np.random.default_rng(0).integers(0, 17, (3, 64)).astype(np.uint8)
    d0, d1 = params["Dense_0"], params["Dense_1"]
    hidden = np.maximum(x.astype(np.float32) @ d0["kernel"] + d0["bias"], 0)
    want = hidden @ d1["kernel"] + d1["bias"]
    got, _ = task.model.apply(variables(params), task.prepare(x, None))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_registry_passes_the_lstm_time_unroll():
    # XLA's cost analysis counts a loop body once, so the bench's FLOPs per sample rest on the
    # time loop being unrolled: with it dropped, the count fell to about half (the dense and
    # hoisted products only).
    def step_flops(unroll):
        task = make_task("lstm", 80, hidden=16, seq_len=8, unroll=unroll)
        variables_ = task.model.init(jax.random.key(0))
        tokens = jnp.zeros((2, 8), jnp.int32)

        def loss(params):
            logits, _ = task.model.apply({**variables_, "params": params}, tokens, train=True)
            return jnp.sum(logits)

        lowered = jax.jit(jax.grad(loss)).lower(variables_["params"])
        cost = lowered.cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    assert step_flops(True) > 1.3 * step_flops(1)  # dropped, the two would be equal
