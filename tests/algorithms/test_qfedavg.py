"""q-FedAvg against Algorithm 2 of Li et al. 2020 ("Fair Resource Allocation in Federated
Learning"), written out in numpy from the paper on 3 clients of 3, 5 and 8 examples and a
linear softmax classifier (4 features, 3 classes: 15 parameters), all clients in every round.

The reference takes each client's batches from the library's batch plan (tested in
test_sampler.py), keyed as the round keys them, and does the rest by hand in float64: the loss
F_k at the round's model over those batches, plain SGD, and the paper's
``Delta_k = F^q L (w - wbar_k)``, ``h_k = q F^(q-1) ||L (w - wbar_k)||^2 + L F^q``,
``w <- w - sum Delta_k / sum h_k`` with ``F = F_k + 1e-10`` (the official code's guard).
"""

import json
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.algorithms.qfedavg import qfedavg_parts, qffl_mean
from fedjax_sim.config.checks import ConfigError, check_config
from fedjax_sim.config.files import load_config, with_overrides
from fedjax_sim.core.round import federated_algorithm
from fedjax_sim.core.selection import uniform
from fedjax_sim.core.tasks import Task, cross_entropy
from fedjax_sim.data.client_data import client_batch_plan, client_data_from_indices
from fedjax_sim.models.model import stateless, variables

ROOT = pathlib.Path(__file__).resolve().parents[2]
FEATURES, CLASSES = 4, 3
SIZES = (3, 5, 8)
LR, B, ROUNDS = 0.5, 2, 3
KEY = jax.random.key(7)
TOL = {"rtol": 1e-5, "atol": 1e-6}

plan_at = jax.jit(client_batch_plan, static_argnames=("num_steps", "batch_size"))


def _linear_apply(params, x):
    return x @ params["w"] + params["b"]


def _linear_init(rng):
    return {
        "w": 0.3 * jax.random.normal(rng, (FEATURES, CLASSES)),
        "b": jnp.array([0.1, -0.2, 0.05]),
    }


@pytest.fixture(scope="module")
def task():
    model = stateless(_linear_init, _linear_apply, (FEATURES,), "linear")
    return Task(model=model, prepare=lambda x, rng: x, num_classes=CLASSES)


@pytest.fixture(scope="module")
def params0(task):
    return jax.device_get(task.model.init(jax.random.key(1))["params"])


@pytest.fixture(scope="module")
def clients():
    rng = np.random.default_rng(0)
    n = sum(SIZES)
    examples = {
        "x": rng.normal(size=(n, FEATURES)).astype(np.float32),
        "y": rng.integers(0, CLASSES, size=n).astype(np.int32),
    }
    bounds = np.cumsum((0, *SIZES))
    return client_data_from_indices(examples, np.split(np.arange(n), bounds[1:-1]))


def _losses(params, x, y):
    """Per-example softmax cross-entropy and its gradient factor ``p - onehot``."""
    logits = x @ params["w"] + params["b"]
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    onehot = np.eye(CLASSES)[y]
    return -np.log((p * onehot).sum(axis=1)), p - onehot


def _sgd_step(params, x, y):
    _, residual = _losses(params, x, y)
    n = len(y)
    grads = {"w": x.T @ residual / n, "b": residual.sum(axis=0) / n}
    return {k: params[k] - LR * grads[k] for k in params}


def _client_batches(clients, client_id, round_num, steps, epochs):
    """The client's (x, y) of each local step this round, masked examples dropped."""
    batch_key = jax.random.split(jax.random.fold_in(KEY, round_num), 4)[1]
    n = int(clients.counts_K[client_id])
    indices, mask = plan_at(
        jax.random.fold_in(batch_key, client_id), clients.order_N,
        clients.offsets_K[client_id], n, num_steps=steps, batch_size=B,
        example_limit=None if epochs is None else epochs * n,
    )  # fmt: skip
    x, y = np.asarray(clients.examples["x"], np.float64), np.asarray(clients.examples["y"])
    indices, mask = np.asarray(indices), np.asarray(mask)
    return [(x[i[m]], y[i[m]]) for i, m in zip(indices, mask, strict=True)]


def algorithm2(clients, params, q, steps, epochs):
    """The paper's q-FedAvg, ROUNDS rounds, every client taking part."""
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}
    L = 1.0 / LR
    for round_num in range(ROUNDS):
        deltas, hs = [], []
        for k in range(len(SIZES)):
            batches = _client_batches(clients, k, round_num, steps, epochs)
            seen = [_losses(w, x, y)[0] for x, y in batches]
            loss = np.concatenate(seen).mean()  # F_k(w^t) over the batches its steps read
            if epochs == 1:  # one pass: its whole training set, as the official get_loss
                start, n = int(clients.offsets_K[k]), SIZES[k]
                order = np.asarray(clients.order_N)[start : start + n]
                x_k = np.asarray(clients.examples["x"], np.float64)[order]
                whole = _losses(w, x_k, np.asarray(clients.examples["y"])[order])[0].mean()
                np.testing.assert_allclose(loss, whole, rtol=1e-12)
            wbar = w
            for x, y in batches:
                if len(y):
                    wbar = _sgd_step(wbar, x, y)
            delta_w = {name: L * (w[name] - wbar[name]) for name in w}
            f = loss + 1e-10
            deltas.append({name: f**q * d for name, d in delta_w.items()})
            sq_norm = sum(np.sum(d**2) for d in delta_w.values())
            hs.append(q * f ** (q - 1) * sq_norm + L * f**q)
        w = {name: w[name] - sum(d[name] for d in deltas) / sum(hs) for name in w}
    return w


def run(parts, clients, params, steps, epochs=None, weighting="uniform", rounds=ROUNDS):
    algo = federated_algorithm(
        parts, sampler=uniform(len(SIZES)), local_steps=steps, batch_size=B,
        local_epochs=epochs, weighting=weighting,
    )  # fmt: skip
    state = algo.init(variables(jax.tree.map(jnp.asarray, params)))
    step = jax.jit(algo.round_fn)
    for _ in range(rounds):
        state, _ = step(state, clients, KEY)
    return state.params


def qfedavg(task, q, learning_rate=LR):
    return qfedavg_parts(
        cross_entropy(task), optax.sgd(LR), optax.sgd(1.0), q=q, learning_rate=learning_rate
    )


# (q, J, E): one pass over each client's data (J B = 8 = the largest client; the smaller
# ones' later steps masked), and J = 3 steps with no epoch limit (the 3-example client reads
# its data twice, the 5-example one a pass and one example).
@pytest.mark.parametrize("q, steps, epochs", [(2.0, 4, 1), (0.5, 3, None)])
def test_equals_algorithm_2(task, params0, clients, q, steps, epochs):
    ours = run(qfedavg(task, q), clients, params0, steps, epochs)
    want = algorithm2(clients, params0, q, steps, epochs)
    chex.assert_trees_all_close(ours, jax.tree.map(np.float32, want), **TOL)
    fedavg = run(fedavg_parts(cross_entropy(task), optax.sgd(LR), optax.sgd(1.0)), clients,
                 params0, steps, epochs)  # fmt: skip
    assert not np.allclose(fedavg["w"], want["w"], **TOL)  # q's weighting matters here


def test_q_zero_is_uniform_fedavg_with_server_lr_1(mlp_task, mlp_params, tiny_clients):
    # All six tiny clients (sizes 7, 3, 1, 5, 4 and an empty one) every round.
    objective = cross_entropy(mlp_task)
    results = []
    for parts in (
        qfedavg_parts(objective, optax.sgd(0.1), optax.sgd(1.0), q=0.0, learning_rate=0.1),
        fedavg_parts(objective, optax.sgd(0.1), optax.sgd(1.0)),
    ):
        algo = federated_algorithm(parts, sampler=uniform(6), local_steps=3, batch_size=2,
                                   weighting="uniform")  # fmt: skip
        state = algo.init(variables(mlp_params))
        for _ in range(2):
            state, _ = jax.jit(algo.round_fn)(state, tiny_clients, KEY)
        results.append(state.params)
    chex.assert_trees_all_close(*results, **TOL)
    assert not np.allclose(results[0]["w1"], mlp_params["w1"])


def test_q_and_learning_rate_may_be_traced(task, params0, clients):
    # As a vectorized sweep builds the algorithm: inside the trace, the numbers as arrays.
    def round_with(state, q, learning_rate):
        algo = federated_algorithm(qfedavg(task, q, learning_rate), sampler=uniform(3),
                                   local_steps=3, batch_size=B, weighting="uniform")  # fmt: skip
        return algo.round_fn(state, clients, KEY)[0]

    plain = federated_algorithm(qfedavg(task, 2.0), sampler=uniform(3), local_steps=3,
                                batch_size=B, weighting="uniform")  # fmt: skip
    state = plain.init(variables(jax.tree.map(jnp.asarray, params0)))
    traced = jax.jit(round_with)(state, jnp.float32(2.0), jnp.float32(LR))
    chex.assert_trees_all_close(traced.params, jax.jit(plain.round_fn)(state, clients, KEY)[0]
                                .params, **TOL)  # fmt: skip


def test_aggregator_weights_and_an_empty_round():
    rng = np.random.default_rng(1)
    deltas = rng.normal(size=(3, 4))
    loss, weights, q, eta = np.array([0.5, 2.0, 1.2]), np.array([1.0, 3.0, 0.0]), 1.5, 0.2
    step, _ = qffl_mean(q, eta).update(
        {"p": jnp.asarray(deltas, jnp.float32)}, optax.EmptyState(),
        weights=jnp.asarray(weights, jnp.float32), loss=jnp.asarray(loss, jnp.float32),
    )  # fmt: skip
    L, f = 1 / eta, loss + 1e-10
    delta_w = -L * deltas  # L (w - wbar)
    h = q * f ** (q - 1) * np.sum(delta_w**2, axis=1) + L * f**q
    want = -(weights * f**q) @ delta_w / np.sum(weights * h)  # the third client did not report
    np.testing.assert_allclose(step["p"], want, **TOL)
    empty, _ = qffl_mean(q, eta).update(
        {"p": jnp.asarray(deltas, jnp.float32)}, optax.EmptyState(),
        weights=jnp.zeros(3), loss=jnp.asarray(loss, jnp.float32),
    )  # fmt: skip
    np.testing.assert_array_equal(empty["p"], np.zeros(4))


def test_negative_q_is_refused(task):
    with pytest.raises(ValueError, match=r"qffl.q must be >= 0, got -1"):
        qfedavg(task, -1.0)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"client.momentum": 0.9}, "client.momentum"),
        ({"client.optimizer": "adam"}, "client.optimizer"),
    ],
)
def test_a_client_step_other_than_plain_sgd_is_refused(overrides, field):
    # Algorithm 2's L = 1 / client.learning_rate is plain SGD's.
    config = load_config("configs/qfedavg_shakespeare.py:smoke")
    check_config(config)
    with pytest.raises(ConfigError, match=rf"^{field} must be .* for qfedavg .*got"):
        check_config(with_overrides(config, overrides))


def test_cli_runs_the_smoke_config(shakespeare_cache, tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "fedjax_sim", "--quiet", "--config",
         "configs/qfedavg_shakespeare.py:smoke", "--workdir", str(workdir),
         f"--config.data.cache_dir={shakespeare_cache}", "--config.rounds=2",
         "--config.eval_every=2", "--config.checkpoint_every=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((workdir / "config.json").read_text())
    assert record["algorithm"] == "qfedavg" and record["weighting"] == "uniform"
    assert record["qffl"] == {"q": 1.0}
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [2] and np.isfinite(metrics[0]["test_loss"])
