"""ResNets: parameter counts by hand, BatchNorm that ignores padded rows, every norm, FedBN."""

import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.fedavg import fed_avg, personal_variables
from fedjax_sim.core.tasks import make_task
from fedjax_sim.data.dataset import FederatedDataset
from fedjax_sim.models import registry
from fedjax_sim.models.model import from_linen
from fedjax_sim.models.resnet import Norm
from fedjax_sim.runtime.evaluation import (
    make_evaluator,
    make_statistics_recomputer,
    personalized_evaluation,
)


def resnet_parameter_count(stages, blocks, classes, norm_params_per_channel=2):
    """Conv kernels (no biases under a norm), two norm parameters per channel, a 1x1
    projection shortcut where the shape changes, the dense classifier."""
    norm = norm_params_per_channel
    total = 3 * 3 * 3 * stages[0] + norm * stages[0]  # stem
    width = stages[0]
    for features in stages:
        for _ in range(blocks):
            total += 9 * width * features + 9 * features * features + 2 * norm * features
            if width != features:
                total += width * features + norm * features
            width = features
    return total + width * classes + classes


def _count(model):
    params = jax.eval_shape(model.init, jax.random.key(0))["params"]
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def test_resnet_parameter_counts():
    assert (
        _count(registry.get("resnet20")(num_classes=100))
        == resnet_parameter_count((16, 32, 64), 3, 100)
        == 278_324
    )
    assert _count(registry.get("resnet18")(num_classes=100)) == resnet_parameter_count(
        (64, 128, 256, 512), 2, 100
    )
    assert 11_000_000 < resnet_parameter_count((64, 128, 256, 512), 2, 100) < 11_300_000


SLOW_NORMS = [pytest.param(norm, marks=pytest.mark.slow) for norm in ("layer", "none")]


@pytest.mark.parametrize("norm", ["batch", "group", *SLOW_NORMS])
def test_every_norm_runs_with_its_state(norm):
    model = registry.get("resnet20")(num_classes=10, norm=norm, image_shape=(8, 8, 3))
    variables = jax.jit(model.init)(jax.random.key(0))
    assert bool(variables["state"]) == (norm == "batch")  # only BatchNorm has statistics
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    logits, new_state = jax.jit(lambda v, x: model.apply(v, x, train=True))(variables, x)
    assert logits.shape == (4, 10)
    if norm == "batch":
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state, variables["state"])
        assert all(jax.tree.leaves(changed))
    if norm == "none":  # convolutions carry biases instead
        conv = variables["params"]["Conv_0"]
        assert "bias" in conv


def test_batchnorm_on_a_padded_batch_equals_the_real_rows_alone():
    model = registry.get("resnet20")(num_classes=10, image_shape=(8, 8, 3))
    variables = jax.jit(model.init)(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 8, 8, 3))
    padded = x.at[4:].set(1e3)  # padding rows that would wreck the statistics
    mask = jnp.array([True, True, True, True, False, False])
    apply = jax.jit(lambda v, x, m: model.apply(v, x, train=True, mask=m))
    got_logits, got_state = apply(variables, padded, mask)
    want_logits, want_state = apply(variables, x[:4], jnp.ones(4, bool))
    np.testing.assert_allclose(got_logits[:4], want_logits, rtol=1e-4, atol=1e-5)
    for got, want in zip(jax.tree.leaves(got_state), jax.tree.leaves(want_state), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    unmasked_logits, _ = apply(variables, padded, jnp.ones(6, bool))
    assert not np.allclose(unmasked_logits[:4], want_logits, rtol=1e-2)  # padding would count


class TinyBatchNormNet(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False, mask=None):
        x = nn.relu(Norm("batch", name="norm")(nn.Dense(5)(x), train=train, mask=mask))
        return nn.Dense(3)(x)


@pytest.fixture(scope="module")
def bn_task():
    model = from_linen(TinyBatchNormNet(), jnp.zeros((1, 6)), "tiny_bn", stateful=True)
    return make_task(model, 3)


def test_fedbn_never_averages_normalization(bn_task, tiny_clients):
    algo = fed_avg(
        bn_task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=3, local_steps=2,
        batch_size=4, num_clients=6, personal="norm",
    )  # fmt: skip
    init = jax.jit(bn_task.model.init)(jax.random.key(0))
    state = algo.init(init)
    step = jax.jit(algo.round_fn)
    for _ in range(3):
        state, _ = step(state, tiny_clients, jax.random.key(1))
    # The server's normalization parameters and statistics are still the initial ones...
    np.testing.assert_array_equal(state.params["norm"]["BatchNorm_0"]["scale"],
                                  init["params"]["norm"]["BatchNorm_0"]["scale"])  # fmt: skip
    for got, want in zip(*map(jax.tree.leaves, (state.model_state, init["state"])), strict=True):
        np.testing.assert_array_equal(got, want)
    # ... while the shared layers trained, and every client that took part has its own.
    assert not np.allclose(state.params["Dense_0"]["kernel"], init["params"]["Dense_0"]["kernel"])
    scales = np.asarray(state.clients["params"]["norm/BatchNorm_0/scale"])
    trained = [k for k in range(6) if not np.allclose(scales[k], 1.0)]
    assert len(trained) >= 3 and len({tuple(np.round(scales[k], 6)) for k in trained}) > 1
    means = np.asarray(state.clients["model_state"]["batch_stats"]["norm"]["BatchNorm_0"]["mean"])
    assert len({tuple(np.round(means[k], 6)) for k in trained}) == len(trained)
    # Evaluation uses each client's own layers.
    own = personal_variables(state, trained[0], "norm")
    np.testing.assert_array_equal(own["params"]["norm"]["BatchNorm_0"]["scale"], scales[trained[0]])
    np.testing.assert_array_equal(own["params"]["Dense_0"]["kernel"],
                                  state.params["Dense_0"]["kernel"])  # fmt: skip


class MisleadingNames(nn.Module):
    """A BatchNorm named ``bn1`` beside a Dense and a LayerNorm whose names say "norm"."""

    @nn.compact
    def __call__(self, x, *, train=False, mask=None):
        x = nn.LayerNorm(name="layer_norm")(nn.Dense(5, name="normalizer_dense")(x))
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn1")(x))
        return nn.Dense(3, name="out")(x)


def test_fedbn_keeps_local_the_batchnorm_layers_whatever_their_names(tiny_clients, caplog):
    task = make_task(from_linen(MisleadingNames(), jnp.zeros((1, 6)), "misleading",
                                stateful=True), 3)  # fmt: skip
    algo = fed_avg(
        task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=6, local_steps=2,
        batch_size=4, num_clients=6, personal="norm",
    )  # fmt: skip
    init = jax.jit(task.model.init)(jax.random.key(0))
    with caplog.at_level(logging.INFO, logger="absl"):
        state = algo.init(init)
    assert sorted(state.clients["params"]) == ["bn1/bias", "bn1/scale"]
    assert "never averaged: bn1/bias, bn1/scale" in caplog.text
    state, _ = jax.jit(algo.round_fn)(state, tiny_clients, jax.random.key(1))
    params = state.params
    np.testing.assert_array_equal(params["bn1"]["scale"], init["params"]["bn1"]["scale"])
    for averaged in ("normalizer_dense", "layer_norm", "out"):
        first = jax.tree.leaves(params[averaged])[0]
        assert not np.allclose(first, jax.tree.leaves(init["params"][averaged])[0]), averaged
    assert "layer_norm/scale" not in state.clients["params"]


def test_fedbn_refuses_a_model_without_batchnorm():
    task = make_task(from_linen(nn.Sequential([nn.Dense(5), nn.LayerNorm(), nn.Dense(3)]),
                                jnp.zeros((1, 6)), "no_bn"), 3)  # fmt: skip
    algo = fed_avg(task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=2, local_steps=1,
                   batch_size=4, num_clients=6, personal="norm")  # fmt: skip
    with pytest.raises(ValueError, match="keeps the BatchNorm layers local, and this model has"):
        algo.init(task.model.init(jax.random.key(0)))


def test_personalized_evaluation_uses_each_clients_model(bn_task, tiny_examples):
    split = [np.arange(0, 12), np.arange(12, 24)]
    dataset = FederatedDataset(
        name="tiny", train=tiny_examples, test=tiny_examples, num_classes=3,
        train_client_indices=tuple(split), test_client_indices=tuple(split),
        client_ids=("a", "b"),
    )  # fmt: skip
    evaluate = make_evaluator(bn_task, batch_size=8)
    a = jax.jit(bn_task.model.init)(jax.random.key(0))
    b = jax.jit(bn_task.model.init)(jax.random.key(5))
    got = personalized_evaluation(evaluate, dataset, lambda k: (a, b)[k])
    _, correct_a, _ = evaluate(a, {n: v[:12] for n, v in tiny_examples.items()})
    _, correct_b, _ = evaluate(b, {n: v[12:] for n, v in tiny_examples.items()})
    assert got["test_accuracy"] == pytest.approx(np.concatenate([correct_a, correct_b]).mean())
    assert got["client_accuracy_mean"] == pytest.approx((correct_a.mean() + correct_b.mean()) / 2)


def test_recomputed_statistics_are_the_batch_statistics(bn_task, tiny_examples):
    variables = jax.jit(bn_task.model.init)(jax.random.key(0))
    # Running statistics far from the data's, so that keeping any of them would show.
    variables["state"] = jax.tree.map(lambda s: s + 7.0, variables["state"])
    x = tiny_examples["x"]
    state = make_statistics_recomputer(bn_task)(variables, x)
    dense = variables["params"]["Dense_0"]
    features = x @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    stats = state["batch_stats"]["norm"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], features.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var"], features.var(0), rtol=1e-4, atol=1e-5)


def test_recompute_mode_leaves_the_global_statistics(bn_task, tiny_clients):
    algo = fed_avg(
        bn_task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=3, local_steps=2,
        batch_size=4, model_state="recompute",
    )  # fmt: skip
    init = jax.jit(bn_task.model.init)(jax.random.key(0))
    state, _ = jax.jit(algo.round_fn)(algo.init(init), tiny_clients, jax.random.key(1))
    for got, want in zip(*map(jax.tree.leaves, (state.model_state, init["state"])), strict=True):
        np.testing.assert_array_equal(got, want)
    averaged = fed_avg(
        bn_task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=3, local_steps=2,
        batch_size=4,
    )  # fmt: skip
    state, _ = jax.jit(averaged.round_fn)(averaged.init(init), tiny_clients, jax.random.key(1))
    mean = state.model_state["batch_stats"]["norm"]["BatchNorm_0"]["mean"]
    assert not np.allclose(mean, init["state"]["batch_stats"]["norm"]["BatchNorm_0"]["mean"])
