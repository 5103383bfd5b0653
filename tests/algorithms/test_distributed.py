"""The distributed track against its papers' equations and plain reference loops: LARS and
LAMB updates, gradient accumulation, LocalSGD (H = 1 is synchronous SGD), SlowMo, DiLoCo's
outer step, the H schedules, the momentum at a sync.

Workers whose shard is exactly one batch see all of it every step, in some order; the mean
loss does not depend on the order, so a plain full-shard loop is an independent reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.algorithms.local_schedules import (
    InnerSchedule,
    local_steps_schedule,
    post_local_rounds,
    resolved_sync_momentum,
)
from fedjax_sim.algorithms.local_sgd import local_sgd
from fedjax_sim.core.optimizers import (
    decay_mask,
    make_optimizer,
    make_schedule,
    scaled_learning_rate,
)
from fedjax_sim.data.client_data import client_data_from_indices
from fedjax_sim.models.model import variables
from tests.linear_workers import LINEAR, OBJECTIVE, PARAMS0, linear_workers

K, B = 2, 6
DATA, SHARDS, CLIENTS, GRAD = linear_workers(K, B, seed=0)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def run(algorithm, rounds, params=PARAMS0):
    state = algorithm.init(variables(params))
    step = jax.jit(algorithm.round_fn)
    metrics = []
    for _ in range(rounds):
        state, m = step(state, CLIENTS, jax.random.key(3))
        metrics.append(m)
    return state, metrics


# ---- large-batch optimizers against the papers ----------------------------------------------


W_TOY = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.2, -0.1])}
GRADS_TOY = [
    {"w": jnp.array([[0.3, 0.1], [-0.2, 0.4]]), "b": jnp.array([0.5, 0.5])},
    {"w": jnp.array([[-0.1, 0.2], [0.3, 0.1]]), "b": jnp.array([-0.2, 0.1])},
    {"w": jnp.array([[0.2, -0.3], [0.1, 0.2]]), "b": jnp.array([0.1, -0.3])},
]


def apply_all(tx, params, grads):
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


def you_et_al_lars(w, grads, gamma, m, beta, eta=0.001):
    """You et al. 2017, Algorithm 1 with eq. 6's local rate, in NumPy: for the kernel
    lambda = eta ||w|| / (||g|| + beta ||w||), v <- m v + gamma lambda (g + beta w), w <- w - v;
    the bias (excluded, as the paper) v <- m v + gamma g."""
    w = {k: np.asarray(x, np.float64) for k, x in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for g in grads:
        gw, gb = np.asarray(g["w"], np.float64), np.asarray(g["b"], np.float64)
        norm_w = np.sqrt(np.sum(w["w"] ** 2))
        local = eta * norm_w / (np.sqrt(np.sum(gw**2)) + beta * norm_w)
        v["w"] = m * v["w"] + gamma * local * (gw + beta * w["w"])
        v["b"] = m * v["b"] + gamma * gb
        w = {k: w[k] - v[k] for k in w}
    return w


@pytest.mark.parametrize("beta", [0.0, 5e-4, 0.1])
def test_lars_matches_you_et_al_2017_algorithm_1(beta):
    gamma, m = 0.5, 0.9
    tx = make_optimizer("lars", gamma, momentum=m, weight_decay=beta)  # biases excluded: default
    params = apply_all(tx, W_TOY, GRADS_TOY)
    expected = you_et_al_lars(W_TOY, GRADS_TOY, gamma, m, beta)
    assert_trees_close(params, expected, rtol=1e-6, atol=1e-7)
    # optax's trust ratio, eta ||w|| / ||g + beta w||, is another rule once beta > 0
    optax_params = apply_all(make_optimizer("optax_lars", gamma, momentum=m, weight_decay=beta),
                             W_TOY, GRADS_TOY)  # fmt: skip
    gap = np.abs(np.asarray(optax_params["w"]) - expected["w"]).max()
    assert gap > 5e-6 if beta else gap < 1e-6  # ours matches to 2e-7


def test_lars_names_optax_lars_and_excludes_biases_and_norms_by_default():
    gamma, m, beta = 0.5, 0.9, 0.1
    reference = optax.lars(gamma, weight_decay=beta, momentum=m, weight_decay_mask=decay_mask,
                           trust_ratio_mask=decay_mask)  # fmt: skip
    got = apply_all(make_optimizer("optax_lars", gamma, momentum=m, weight_decay=beta),
                    W_TOY, GRADS_TOY)  # fmt: skip
    assert_trees_close(got, apply_all(reference, W_TOY, GRADS_TOY), rtol=0, atol=0)
    # exclude_bias_and_norm=False is the old default: the zero bias takes an unscaled step
    zero_bias = {"w": W_TOY["w"], "b": jnp.zeros(2)}
    for name in ("lars", "optax_lars", "lamb"):
        default = apply_all(make_optimizer(name, gamma, weight_decay=beta), zero_bias, GRADS_TOY)
        spared = make_optimizer(name, gamma, weight_decay=beta, exclude_bias_and_norm=True)
        assert_trees_close(default, apply_all(spared, zero_bias, GRADS_TOY), rtol=0, atol=0)
        everything = make_optimizer(name, gamma, weight_decay=beta, exclude_bias_and_norm=False)
        assert not np.allclose(apply_all(everything, zero_bias, GRADS_TOY)["b"], default["b"])
    assert make_optimizer("sgd", 0.1, weight_decay=beta)  # others: no exclusion unless asked
    sgd = apply_all(make_optimizer("sgd", 0.1, weight_decay=beta), zero_bias, GRADS_TOY[:1])
    np.testing.assert_allclose(sgd["b"], -0.1 * np.asarray(GRADS_TOY[0]["b"]), rtol=1e-6)


def test_lars_trust_ratio_is_1_on_a_zero_tensor():
    # eq. 6 would give 0 and never move it; TF's and apex's LARS use 1, as we do
    zero = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
    tx = make_optimizer("lars", 0.5, momentum=0.0, weight_decay=0.1)
    params = apply_all(tx, zero, GRADS_TOY[:1])
    np.testing.assert_allclose(params["w"], -0.5 * np.asarray(GRADS_TOY[0]["w"]), rtol=1e-6)


def test_lamb_matches_you_et_al_2020_algorithm_2():
    # Adam moments with bias correction, r = m^ / (sqrt(v^) + eps), then the layer-wise step
    # eta ||w|| / ||r + lambda w|| (r + lambda w); the bias (excluded) gets eta * r.
    w = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.2, -0.1])}
    grads = [
        {"w": jnp.array([[0.3, 0.1], [-0.2, 0.4]]), "b": jnp.array([0.5, 0.5])},
        {"w": jnp.array([[-0.1, 0.2], [0.3, 0.1]]), "b": jnp.array([-0.2, 0.1])},
    ]
    eta, b1, b2, eps, lam = 0.1, 0.9, 0.999, 1e-6, 0.01
    tx = make_optimizer("lamb", eta, weight_decay=lam, exclude_bias_and_norm=True)
    state, params = tx.init(w), w
    first = {k: np.zeros(x.shape) for k, x in w.items()}
    second = {k: np.zeros(x.shape) for k, x in w.items()}
    expected = {k: np.asarray(x, np.float64) for k, x in w.items()}
    for t, g in enumerate(grads, start=1):
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        for k in expected:
            gk = np.asarray(g[k], np.float64)
            first[k] = b1 * first[k] + (1 - b1) * gk
            second[k] = b2 * second[k] + (1 - b2) * gk**2
            r = (first[k] / (1 - b1**t)) / (np.sqrt(second[k] / (1 - b2**t)) + eps)
            if k == "w":
                r = r + lam * expected[k]
                r = np.linalg.norm(expected[k]) / np.linalg.norm(r) * r
            expected[k] = expected[k] - eta * r
    assert_trees_close(params, expected)
    # without the masks, our builder is optax.lamb itself
    plain = make_optimizer("lamb", eta, weight_decay=lam, exclude_bias_and_norm=False)
    reference = optax.lamb(eta, weight_decay=lam)
    u1, _ = plain.update(grads[0], plain.init(w), w)
    u2, _ = reference.update(grads[0], reference.init(w), w)
    assert_trees_close(u1, u2, rtol=0, atol=0)


def test_decay_mask_spares_biases_and_norm_scales():
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "norm": jnp.ones(3)}
    assert decay_mask(params) == {"dense": {"kernel": True, "bias": False}, "norm": False}


def test_learning_rate_scaling_rules_and_warmup_poly_schedule():
    assert scaled_learning_rate(0.1, 1024, 256, "linear") == pytest.approx(0.4)
    assert scaled_learning_rate(0.1, 1024, 256, "sqrt") == pytest.approx(0.2)
    assert scaled_learning_rate(0.1, 1024, 256, "none") == 0.1
    with pytest.raises(ValueError, match="optimizer.lr_scaling must be one of"):
        scaled_learning_rate(0.1, 1024, 256, "cubic")
    schedule = make_schedule(2.0, "warmup_poly", total_steps=10, warmup_steps=2, power=2.0)
    # 0 -> 2 linearly over 2 steps, then 2 (1 - (t - 2) / 8)^2
    for t, value in ((0, 0.0), (1, 1.0), (2, 2.0), (6, 2.0 * 0.25), (10, 0.0)):
        assert float(schedule(t)) == pytest.approx(value, abs=1e-6)


def test_gradient_accumulation_equals_the_large_batch():
    data = client_data_from_indices(DATA, [np.arange(K * B)])
    tx = make_optimizer("sgd", 0.5, momentum=0.9, schedule="cosine", total_steps=4)
    results = []
    for accumulation in (1, 3):
        algo = centralized(LINEAR, tx, batch_size=6, accumulation_steps=accumulation,
                           augment=False)  # fmt: skip
        state = algo.init(variables(PARAMS0))
        step = jax.jit(algo.round_fn)
        for _ in range(4):
            state, _ = step(state, data, jax.random.key(5))
        results.append(state.params)
    assert_trees_close(results[0], results[1])
    assert not np.allclose(results[0]["w"], PARAMS0["w"])
    with pytest.raises(ValueError, match="micro_batch_size must divide batch_size=6"):
        centralized(LINEAR, tx, batch_size=6, accumulation_steps=4)


# ---- LocalSGD, SlowMo, DiLoCo against plain loops --------------------------------------------


def test_local_sgd_with_h_1_is_synchronous_sgd_with_the_summed_batch():
    gamma, beta, steps = 0.4, 0.9, 5
    everything = np.arange(K * B)
    for sync in ("average", "keep"):  # equal for SGD momentum: the buffers' mean is the sync one
        algo = local_sgd(
            OBJECTIVE,
            optax.sgd(gamma, momentum=beta),
            optax.sgd(1.0),
            num_workers=K,
            local_steps=1,
            batch_size=B,
            sync_momentum=sync,
        )
        state, _ = run(algo, steps)
        params, buffer = PARAMS0, jax.tree.map(jnp.zeros_like, PARAMS0)
        for _ in range(steps):
            g = GRAD(params, everything)
            buffer = jax.tree.map(lambda m, gi: beta * m + gi, buffer, g)
            params = jax.tree.map(lambda p, m: p - gamma * m, params, buffer)
        assert_trees_close(state.params, params)
    # reset: every round starts a fresh momentum buffer: plain SGD
    algo = local_sgd(OBJECTIVE, optax.sgd(gamma, momentum=beta), optax.sgd(1.0),
                     num_workers=K, local_steps=1, batch_size=B, sync_momentum="reset")  # fmt: skip
    state, _ = run(algo, steps)
    params = PARAMS0
    for _ in range(steps):
        params = jax.tree.map(lambda p, g: p - gamma * g, params, GRAD(params, everything))
    assert_trees_close(state.params, params)


def slowmo_reference(alpha, beta, gamma, local_steps, rounds, factors=None, normalize=True):
    """Wang et al. 2020, Algorithm 1, with plain SGD inner steps on each full shard; the inner
    rate of round r is ``gamma * factors[r]`` (fairscale's SlowMo divides and multiplies by it;
    ``normalize=False`` feeds the raw pseudo-gradient to the outer momentum)."""
    x, u = PARAMS0, jax.tree.map(jnp.zeros_like, PARAMS0)
    base = gamma
    for r in range(rounds):
        gamma = base * (1.0 if factors is None else factors[r])
        outer_gamma = gamma if normalize else 1.0
        finals = []
        for shard in SHARDS:
            xk = x
            for _ in range(local_steps):
                xk = jax.tree.map(lambda p, g, lr=gamma: p - lr * g, xk, GRAD(xk, shard))
            finals.append(xk)
        average = jax.tree.map(lambda *xs: sum(xs) / len(xs), *finals)
        u = jax.tree.map(lambda ui, x0, xa, g=outer_gamma: beta * ui + (x0 - xa) / g, u, x, average)
        x = jax.tree.map(lambda x0, ui, g=outer_gamma: x0 - alpha * g * ui, x, u)
    return x


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.8, 0.5)])
def test_slowmo_matches_its_paper_and_beta_0_alpha_1_is_local_sgd(alpha, beta):
    gamma, local_steps, rounds = 0.3, 3, 4
    outer = optax.sgd(alpha, momentum=beta or None)
    algo = local_sgd(OBJECTIVE, optax.sgd(gamma), outer, num_workers=K,
                     local_steps=local_steps, batch_size=B)  # fmt: skip
    state, metrics = run(algo, rounds)
    assert_trees_close(state.params, slowmo_reference(alpha, beta, gamma, local_steps, rounds))
    assert [float(m["local_steps"]) for m in metrics] == [local_steps] * rounds
    assert int(state.extra["position"]) == rounds * local_steps * B


@pytest.mark.parametrize("normalize", [True, False])
def test_slowmo_with_a_scheduled_inner_rate_matches_fairscale_semantics(normalize):
    # cosine inner rate over the rounds: fairscale's SlowMo (normalized by gamma_r) and the raw
    # pseudo-gradient (DiLoCo's) against Algorithm 1 written out with gamma_r
    gamma, local_steps, rounds = 0.3, 3, 4
    schedule = optax.cosine_decay_schedule(1.0, rounds)
    algo = local_sgd(OBJECTIVE, optax.sgd(gamma), optax.sgd(0.8, momentum=0.5), num_workers=K,
                     local_steps=local_steps, batch_size=B,
                     inner_schedule=InnerSchedule(schedule, normalize_outer=normalize))  # fmt: skip
    state, _ = run(algo, rounds)
    factors = [float(schedule(r)) for r in range(rounds)]
    expected = slowmo_reference(0.8, 0.5, gamma, local_steps, rounds, factors, normalize)
    assert_trees_close(state.params, expected)
    other = slowmo_reference(0.8, 0.5, gamma, local_steps, rounds, factors, not normalize)
    assert not np.allclose(jax.tree.leaves(state.params)[0], jax.tree.leaves(other)[0])


def test_diloco_outer_step_is_nesterov_on_the_mean_pseudo_gradient():
    # Douillard et al. 2023, Algorithm 1: Delta = x - mean_k x_k; Nesterov momentum 0.9, lr 0.7
    inner = make_optimizer("adam", 0.05, weight_decay=0.1)
    outer = make_optimizer("sgd", 0.7, momentum=0.9, nesterov=True)
    algo = local_sgd(OBJECTIVE, inner, outer, num_workers=K, local_steps=2, batch_size=B,
                     sync_momentum="keep")  # fmt: skip
    state, _ = run(algo, 3)
    x, buffer = PARAMS0, jax.tree.map(jnp.zeros_like, PARAMS0)
    adam_states = [inner.init(PARAMS0) for _ in SHARDS]
    for _ in range(3):
        finals = []
        for k, shard in enumerate(SHARDS):
            xk = x
            for _ in range(2):
                updates, adam_states[k] = inner.update(GRAD(xk, shard), adam_states[k], xk)
                xk = optax.apply_updates(xk, updates)
            finals.append(xk)
        delta = jax.tree.map(lambda x0, *xs: x0 - sum(xs) / len(xs), x, *finals)
        buffer = jax.tree.map(lambda m, d: 0.9 * m + d, buffer, delta)
        x = jax.tree.map(lambda x0, m, d: x0 - 0.7 * (d + 0.9 * m), x, buffer, delta)
    assert_trees_close(state.params, x, rtol=2e-5, atol=2e-6)
    # each worker's Adam state survived the syncs: its step count is 3 rounds x 2 steps
    counts = [leaf for leaf in jax.tree.leaves(state.clients) if leaf.dtype == jnp.int32]
    assert all(np.all(np.asarray(c) == 6) for c in counts)


def test_post_local_sgd_runs_one_step_until_the_switch_then_h():
    schedule = local_steps_schedule("post_local", 4, switch_step=3)
    algo = local_sgd(OBJECTIVE, optax.sgd(0.3), optax.sgd(1.0), num_workers=K, local_steps=4,
                     batch_size=B, steps_schedule=schedule)  # fmt: skip
    state, metrics = run(algo, 5)
    assert [float(m["local_steps"]) for m in metrics] == [1, 1, 1, 4, 4]
    assert [float(m["train_examples"]) for m in metrics] == [K * B] * 3 + [4 * K * B] * 2
    assert int(state.extra["position"]) == (3 + 2 * 4) * B
    # = 3 synchronous steps, then 2 rounds of 4 local steps (the SlowMo reference, beta 0)
    x = slowmo_reference(1.0, 0.0, 0.3, 1, 3)
    global PARAMS0
    saved, PARAMS0 = PARAMS0, x
    try:
        expected = slowmo_reference(1.0, 0.0, 0.3, 4, 2)
    finally:
        PARAMS0 = saved
    assert_trees_close(state.params, expected)


def test_sync_momentum_average_equalizes_the_workers_buffers_and_keep_does_not():
    rows = {}
    for sync in ("keep", "average"):
        algo = local_sgd(
            OBJECTIVE,
            optax.sgd(0.3, momentum=0.9),
            optax.sgd(1.0),
            num_workers=K,
            local_steps=2,
            batch_size=B,
            sync_momentum=sync,
        )
        state, _ = run(algo, 2)
        rows[sync] = np.asarray(jax.tree.leaves(state.clients)[0])
    assert not np.allclose(rows["keep"][0], rows["keep"][1])
    np.testing.assert_array_equal(rows["average"][0], rows["average"][1])


# ---- post-local SGD as torch's PostLocalSGDOptimizer runs it -------------------------------

CURVATURE = np.array([1.0, 2.0, 0.5, 1.5])
TARGETS = np.array([[1.0, -1.0, 2.0, 0.5], [3.0, 0.0, -2.0, 1.0],  # worker 0's two examples
                    [-1.0, 2.0, 1.0, -0.5], [0.0, 1.0, -1.0, 2.5]])  # worker 1's  # fmt: skip


def quadratic(params, model_state, batch, rng, context):
    """Each example's loss 0.5 sum_i c_i (w_i - x_i)^2; a worker's shard is one batch, so its
    gradient is c (w - the mean of its targets) in any batch order."""
    del rng, context
    losses = 0.5 * jnp.sum(CURVATURE * (params["w"] - batch["x"]) ** 2, -1)
    weights = batch["mask"].astype(losses.dtype)
    count = weights.sum()
    metrics = {"loss_sum": (losses * weights).sum(), "correct": 0.0 * count, "count": count}
    return (losses * weights).sum() / jnp.maximum(count, 1.0), (metrics, model_state)


QUADRATIC_WORKERS = client_data_from_indices(
    {"x": TARGETS.astype(np.float32), "y": np.zeros(4, np.int32)}, [np.arange(2), np.arange(2, 4)]
)
QUADRATIC_X0 = np.array([0.5, -0.5, 1.0, 0.0])


def torch_post_local_sgd(lr, beta, switch, period, steps):
    """torch's PostLocalSGDOptimizer over SGD(momentum=beta) with PostLocalSGDState(
    start_localSGD_iter=switch) and PeriodicModelAverager(period, warmup_steps=switch), in
    NumPy: DDP all-reduces (averages) the gradients for the first ``switch`` steps, so the two
    workers stay one model with one momentum buffer; after, each steps on its own gradient
    with its own buffer, and the models are averaged after step t when (t - switch) % period
    == 0. Returns the workers' models and buffers."""
    means = [TARGETS[:2].mean(0), TARGETS[2:].mean(0)]
    x, m = [QUADRATIC_X0.copy(), QUADRATIC_X0.copy()], [np.zeros(4), np.zeros(4)]
    for t in range(steps):
        grads = [CURVATURE * (x[k] - means[k]) for k in range(2)]
        if t < switch:
            grads = [sum(grads) / 2] * 2
        m = [beta * m[k] + grads[k] for k in range(2)]
        x = [x[k] - lr * m[k] for k in range(2)]
        if t >= switch and (t - switch) % period == 0:
            x = [sum(x) / 2] * 2
    return x, m


def run_post_local(inner, switch, period, rounds, sync_momentum="keep", before="gradients"):
    synchronous, one_step = post_local_rounds(switch, before)
    algo = local_sgd(
        quadratic, inner, optax.sgd(1.0), num_workers=2, local_steps=period, batch_size=2,
        sync_momentum=sync_momentum, synchronous_rounds=synchronous,
        steps_schedule=local_steps_schedule("post_local", period, one_step),
    )  # fmt: skip
    state = algo.init(variables({"w": jnp.asarray(QUADRATIC_X0, jnp.float32)}))
    step = jax.jit(algo.round_fn)
    steps = []
    for _ in range(rounds):
        state, metrics = step(state, QUADRATIC_WORKERS, jax.random.key(0))
        steps.append(int(metrics["local_steps"]))
    return state, steps


def test_post_local_sgd_follows_torchs_post_local_sgd_optimizer():
    lr, beta, switch, period = 0.1, 0.9, 3, 3
    rounds = switch + 1 + 2  # 3 synchronous steps, 1 local step averaged, 2 periods of 3
    state, steps = run_post_local(optax.sgd(lr, momentum=beta), switch, period, rounds)
    assert steps == [1, 1, 1, 1, 3, 3]
    x, m = torch_post_local_sgd(lr, beta, switch, period, sum(steps))
    np.testing.assert_allclose(state.params["w"], x[0], rtol=1e-5, atol=1e-6)
    buffers = np.asarray(jax.tree.leaves(state.clients["opt_state"])[0])  # each worker's own
    np.testing.assert_allclose(buffers, np.stack(m), rtol=1e-5, atol=1e-6)
    assert np.abs(m[0] - m[1]).max() > 0.1  # kept apart after the switch
    # the old single-rule schedules are measurably another algorithm (with these linear
    # gradients the averaged buffers leave the mean model alone but not the buffers)
    for sync, before in (("keep", "models"), ("average", "models"), ("average", "gradients")):
        other, _ = run_post_local(optax.sgd(lr, momentum=beta), switch, period, rounds, sync,
                                  before)  # fmt: skip
        other_buffers = np.asarray(jax.tree.leaves(other.clients["opt_state"])[0])
        gap = max(np.abs(np.asarray(other.params["w"]) - x[0]).max(),
                  np.abs(other_buffers - np.stack(m)).max())  # fmt: skip
        assert gap > 1e-2, (sync, before)


def test_post_local_sgd_averages_gradients_before_the_switch_for_any_inner_optimizer():
    # Adam on the mean gradient, one state: not the mean of per-worker Adam steps
    lr, b1, b2, eps, switch = 0.1, 0.9, 0.999, 1e-8, 3
    state, _ = run_post_local(optax.adam(lr, b1, b2, eps), switch, 2, switch)
    means = [TARGETS[:2].mean(0), TARGETS[2:].mean(0)]
    x, first, second = QUADRATIC_X0.copy(), np.zeros(4), np.zeros(4)
    for t in range(1, switch + 1):
        g = sum(CURVATURE * (x - mean) for mean in means) / 2
        first, second = b1 * first + (1 - b1) * g, b2 * second + (1 - b2) * g**2
        x = x - lr * (first / (1 - b1**t)) / (np.sqrt(second / (1 - b2**t)) + eps)
    np.testing.assert_allclose(state.params["w"], x, rtol=1e-5, atol=1e-6)
    models, _ = run_post_local(optax.adam(lr, b1, b2, eps), switch, 2, switch, "average",
                               "models")  # fmt: skip
    assert np.abs(np.asarray(models.params["w"]) - x).max() > 1e-3


def test_post_local_defaults_are_torchs():
    assert resolved_sync_momentum(None, "post_local") == "keep"
    assert resolved_sync_momentum(None, "constant") == "reset"
    assert resolved_sync_momentum("average", "post_local") == "average"
    assert post_local_rounds(5) == (5, 6) and post_local_rounds(5, "models") == (0, 5)
    with pytest.raises(ValueError, match="localsgd.before_switch must be one of"):
        post_local_rounds(5, "parameters")
