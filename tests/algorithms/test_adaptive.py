"""Adaptive local steps and batch size: the H schedules and the divergence rule, the gradient
noise scale (McCandlish et al. 2018) on hand-made gradients and on a case with a known answer,
batch growth, and both inside a LocalSGD round against plain gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_sim.algorithms.local_schedules import (
    AdaptiveSteps,
    BatchGrowth,
    adapted_steps,
    local_steps_schedule,
    worker_divergence,
)
from fedjax_sim.algorithms.local_sgd import local_sgd
from fedjax_sim.core.noise_scale import (
    grown_batch_size,
    init_noise_scale,
    noise_estimates,
    update_noise_scale,
)
from fedjax_sim.data.client_data import client_batch_plan
from fedjax_sim.models.model import variables
from tests.algorithms.test_distributed import CLIENTS, GRAD, OBJECTIVE, PARAMS0, SHARDS, B, K


def test_increasing_schedule_doubles_every_period_up_to_h():
    steps = local_steps_schedule("increasing", 8, initial_steps=1, double_every=2)
    assert [int(steps(jnp.int32(r))) for r in range(9)] == [1, 1, 2, 2, 4, 4, 8, 8, 8]


def test_divergence_and_the_adaptive_rule_by_hand():
    delta_K = {"a": jnp.array([[1.0, 0.0], [0.0, 1.0]]), "b": jnp.array([[0.0], [0.0]])}
    # mean (0.5, 0.5, 0): each model is |(0.5, -0.5, 0)|^2 = 0.5 from it
    np.testing.assert_allclose(float(worker_divergence(delta_K)), 0.5)
    rule = AdaptiveSteps(initial=2, threshold=0.5)
    assert int(adapted_steps(rule, jnp.int32(4), 0.4, 16)) == 8  # close: double
    assert int(adapted_steps(rule, jnp.int32(4), 0.7, 16)) == 4  # between: keep
    assert int(adapted_steps(rule, jnp.int32(4), 1.5, 16)) == 2  # apart: halve
    assert int(adapted_steps(rule, jnp.int32(16), 0.1, 16)) == 16
    assert int(adapted_steps(rule, jnp.int32(1), 9.0, 16)) == 1


def test_noise_estimates_by_hand():
    # g1 = (2, 1, 0), g2 = (0, 1, 2), B = 2: |G_small|^2 = 5, |G_big|^2 = |(1, 1, 1)|^2 = 3,
    # B_big = 4: |G|^2 = (4*3 - 2*5) / 2 = 1, tr(Sigma) = (5 - 3) / (1/2 - 1/4) = 8.
    grads_K = {"w": jnp.array([[2.0, 1.0], [0.0, 1.0]]), "b": jnp.array([[0.0], [2.0]])}
    squared, trace = noise_estimates(grads_K, 2)
    np.testing.assert_allclose([float(squared), float(trace)], [1.0, 8.0], rtol=1e-6)
    state, b_simple = update_noise_scale(init_noise_scale(), grads_K, 2, decay=0.9)
    np.testing.assert_allclose(float(b_simple), 8.0, rtol=1e-5)  # bias corrections cancel
    np.testing.assert_allclose(float(state.squared_gradient), 0.1, rtol=1e-6)


def test_noise_scale_recovers_a_known_answer():
    # loss 0.5 |theta - z|^2 with z ~ N(mu, sigma^2 I_3): per-example gradient theta - z, so
    # G = theta - mu (|G|^2 = 9) and tr(Sigma) = 3 sigma^2 = 12: B_simple = 4/3.
    theta_minus_mu, sigma, workers, batch, trials = jnp.array([1.0, 2.0, 2.0]), 2.0, 4, 8, 4000
    z = sigma * jax.random.normal(jax.random.key(0), (trials, workers, batch, 3))
    grads = theta_minus_mu - z.mean(2)  # each worker's mean gradient over its batch
    squared, trace = jax.vmap(lambda g: noise_estimates({"g": g}, batch))(grads)
    assert abs(float(squared.mean()) - 9.0) < 0.3
    assert abs(float(trace.mean()) - 12.0) < 0.4

    def step(state, g):
        return update_noise_scale(state, {"g": g}, batch, 0.99)

    _, b_simple = jax.lax.scan(step, init_noise_scale(), grads)
    assert abs(float(b_simple[-1]) - 4.0 / 3.0) < 0.15


def test_batch_grows_to_the_power_of_two_above_b_simple_per_worker_and_never_shrinks():
    assert int(grown_batch_size(4, 40.0, 2, 64)) == 32  # 40 / 2 = 20 -> 32
    assert int(grown_batch_size(16, 6.0, 2, 64)) == 16  # never shrinks
    assert int(grown_batch_size(4, 1e6, 2, 64)) == 64  # capped
    assert int(grown_batch_size(4, float("inf"), 2, 64)) == 4
    assert int(grown_batch_size(4, -3.0, 2, 64)) == 4


def test_a_batch_in_use_reads_the_stream_on_without_skipping():
    key, order = jax.random.key(1), jnp.arange(10)
    small, _ = client_batch_plan(key, order, 0, 10, num_steps=3, batch_size=3, offset=2)
    padded, mask = client_batch_plan(
        key, order, 0, 10, num_steps=3, batch_size=5, offset=2, batch_in_use=3
    )
    np.testing.assert_array_equal(mask, np.tile([True] * 3 + [False] * 2, (3, 1)))
    np.testing.assert_array_equal(padded[:, :3], small)


def _run(algorithm, rounds):
    state = algorithm.init(variables(PARAMS0))
    history = []
    for _ in range(rounds):
        state, metrics = jax.jit(algorithm.round_fn)(state, CLIENTS, jax.random.key(3))
        history.append(jax.tree.map(float, metrics))
    return state, history


def test_adaptive_steps_in_the_round_follow_the_rule_on_the_reported_divergence():
    lr = 0.2
    algorithm = local_sgd(
        OBJECTIVE, optax.sgd(lr), optax.sgd(1.0), num_workers=K, local_steps=4, batch_size=B,
        adaptive_steps=AdaptiveSteps(initial=1, threshold=1e9),
    )  # fmt: skip
    _, history = _run(algorithm, 4)
    assert [m["local_steps"] for m in history] == [1, 2, 4, 4]
    # round 0 (H = 1): delta_k = -lr grad_k(x0) on each worker's whole shard
    delta_K = jax.tree.map(
        lambda *g: -lr * jnp.stack(g), *[GRAD(PARAMS0, shard) for shard in SHARDS]
    )
    np.testing.assert_allclose(history[0]["divergence"], float(worker_divergence(delta_K)), 1e-5)
    never = local_sgd(
        OBJECTIVE, optax.sgd(lr), optax.sgd(1.0), num_workers=K, local_steps=4, batch_size=B,
        adaptive_steps=AdaptiveSteps(initial=4, threshold=0.0),
    )  # fmt: skip
    assert [m["local_steps"] for m in _run(never, 3)[1]] == [4, 2, 1]


def test_noise_scale_in_the_round_is_the_estimate_of_the_workers_gradients():
    algorithm = local_sgd(
        OBJECTIVE, optax.sgd(0.1), optax.sgd(1.0), num_workers=K, local_steps=2, batch_size=B,
        batch_growth=BatchGrowth(initial=B, decay=0.5, grow=False),
    )  # fmt: skip
    state, history = _run(algorithm, 1)
    grads_K = jax.tree.map(lambda *g: jnp.stack(g), *[GRAD(PARAMS0, s) for s in SHARDS])
    squared, trace = noise_estimates(grads_K, B)
    noise = state.extra["noise"]  # moving averages after one round at decay 0.5
    np.testing.assert_allclose(float(noise.squared_gradient), 0.5 * float(squared), rtol=1e-4)
    np.testing.assert_allclose(float(noise.trace_covariance), 0.5 * float(trace), rtol=1e-4)
    expected = float(trace / squared) if squared > 0 else np.inf  # two tiny shards: noisy
    np.testing.assert_allclose(history[0]["noise_scale"], expected, rtol=1e-4)
    assert history[0]["batch_size"] == B
    assert int(state.extra["position"]) == 2 * B
