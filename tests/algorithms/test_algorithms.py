"""FedProx, SCAFFOLD, FedDyn, FedNova and the FedOpt server step against their papers' update
equations, written out in numpy on a 2-client, 3-parameter least-squares problem.

Each client holds copies of one example (x_k, y_k), so every batch's gradient is the client's
full gradient ``(x_k . w - y_k) x_k`` whatever the sampler draws, and the references need no
sampling at all. Both clients take part in every round (C = K = 2).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.fedavg import fed_avg, fedavg_parts
from fedjax_sim.algorithms.feddyn import feddyn_parts
from fedjax_sim.algorithms.fednova import fednova_parts, momentum_steps_norm
from fedjax_sim.algorithms.fedprox import fedprox_parts
from fedjax_sim.algorithms.scaffold import scaffold_parts
from fedjax_sim.config.checks import config_record, resolved_weighting
from fedjax_sim.config.files import load_config
from fedjax_sim.core.optimizers import make_optimizer
from fedjax_sim.core.round import ClientOutput, federated_algorithm
from fedjax_sim.core.selection import uniform
from fedjax_sim.core.tasks import cross_entropy
from fedjax_sim.data.client_data import client_data_from_indices
from fedjax_sim.models.model import variables

X = np.array([[1.0, -0.5, 0.25], [0.3, 0.8, -1.2]])
Y = np.array([0.7, -0.4])
SIZES = (2, 4)  # examples per client: aggregation weights n_k = 2, 4
W0 = np.array([0.2, -0.1, 0.4])
LR, J, ROUNDS = 0.3, 3, 3
TOL = {"rtol": 2e-5, "atol": 2e-6}


def quadratic(params, model_state, batch, rng, context):
    """Least squares ``mean 1/2 (x . w - y)^2`` over the unmasked rows."""
    del rng, context
    mask = batch["mask"].astype(jnp.float32)
    residual = batch["x"] @ params["w"] - batch["y"]
    total = 0.5 * jnp.sum(mask * residual**2)
    count = mask.sum()
    metrics = {"loss_sum": total, "correct": 0.0 * total, "count": count}
    return total / jnp.maximum(count, 1.0), (metrics, model_state)


def grad(k, w):
    return (X[k] @ w - Y[k]) * X[k]


@pytest.fixture(scope="module")
def clients():
    x = np.repeat(X, SIZES, axis=0).astype(np.float32)
    y = np.repeat(Y, SIZES).astype(np.float32)
    return client_data_from_indices({"x": x, "y": y}, [np.arange(2), np.arange(2, 6)])


def run(parts, clients, rounds=ROUNDS, weighting="examples", **options):
    algo = federated_algorithm(
        parts,
        sampler=uniform(2),
        local_steps=options.pop("local_steps", J),
        batch_size=2,
        weighting=weighting,
        **options,
    )
    state = algo.init(variables({"w": jnp.asarray(W0, jnp.float32)}))
    step = jax.jit(algo.round_fn)
    for _ in range(rounds):
        state, _ = step(state, clients, jax.random.key(0))
    return state


def weighted(values, weights):
    weights = np.asarray(weights, float) / np.sum(weights)
    return sum(w * v for w, v in zip(weights, values, strict=True))


def test_fedprox_equals_sgd_on_the_proximal_objective(clients):
    mu = 0.5
    state = run(fedprox_parts(quadratic, optax.sgd(LR), optax.sgd(1.0), mu=mu), clients)
    w = W0.copy()
    for _ in range(ROUNDS):
        locals_ = []
        for k in range(2):
            v = w.copy()
            for _ in range(J):
                v = v - LR * (grad(k, v) + mu * (v - w))
            locals_.append(v - w)
        w = w + weighted(locals_, SIZES)
    np.testing.assert_allclose(state.params["w"], w, **TOL)
    plain = run(fedavg_parts(quadratic, optax.sgd(LR), optax.sgd(1.0)), clients)
    assert not np.allclose(plain.params["w"], w, **TOL)  # mu matters here


def _two_rounds(parts, params, clients):
    algo = federated_algorithm(parts, sampler=uniform(3), local_steps=2, batch_size=4)
    state = algo.init(variables(params))
    for _ in range(2):
        state, _ = jax.jit(algo.round_fn)(state, clients, jax.random.key(3))
    return state.params


def test_fedprox_with_mu_zero_is_fedavg_bit_for_bit(mlp_task, mlp_params, tiny_clients):
    objective = cross_entropy(mlp_task)
    prox = fedprox_parts(objective, optax.sgd(0.1), optax.sgd(1.0), mu=0.0)
    plain = fedavg_parts(objective, optax.sgd(0.1), optax.sgd(1.0))
    chex.assert_trees_all_equal(
        _two_rounds(prox, mlp_params, tiny_clients), _two_rounds(plain, mlp_params, tiny_clients)
    )


def _scaffold_reference(option, eta_g):
    x, c = W0.copy(), np.zeros(3)
    c_k = [np.zeros(3), np.zeros(3)]
    for _ in range(ROUNDS):
        dys, dcs = [], []
        for k in range(2):
            y = x.copy()
            for _ in range(J):
                y = y - LR * (grad(k, y) - c_k[k] + c)
            new_c = grad(k, x) if option == "I" else c_k[k] - c + (x - y) / (J * LR)
            dys.append(y - x)
            dcs.append(new_c - c_k[k])
            c_k[k] = new_c
        x = x + eta_g * np.mean(dys, axis=0)  # the paper's uniform mean over the sampled
        c = c + np.sum(dcs, axis=0) / 2  # (1/N) sum, N = 2
    return x, c, c_k


def paper_weighting(algorithm):
    """The weighting the shipped config of ``algorithm`` runs (unequal client sizes here, so
    only the papers' uniform mean passes the references below)."""
    return resolved_weighting(load_config(f"configs/{algorithm}_shakespeare.py:smoke"))


@pytest.mark.parametrize("option", ["I", "II"])
def test_scaffold_equals_the_papers_updates(clients, option):
    eta_g = 0.8
    parts = scaffold_parts(
        quadratic,
        optax.sgd(LR),
        optax.sgd(eta_g),
        num_clients=2,
        client_learning_rate=LR,
        option=option,
    )
    state = run(parts, clients, weighting=paper_weighting("scaffold"))
    x, c, c_k = _scaffold_reference(option, eta_g)
    np.testing.assert_allclose(state.params["w"], x, **TOL)
    np.testing.assert_allclose(state.extra["control"]["w"], c, **TOL)
    np.testing.assert_allclose(state.clients["control"]["w"], np.stack(c_k), **TOL)
    assert np.abs(c).max() > 1e-2  # the controls are not trivially zero


def test_scaffold_first_round_is_fedavg(mlp_task, mlp_params, tiny_clients):
    objective = cross_entropy(mlp_task)
    results = []
    for parts in (
        scaffold_parts(
            objective, optax.sgd(0.1), optax.sgd(1.0), num_clients=6, client_learning_rate=0.1
        ),
        fedavg_parts(objective, optax.sgd(0.1), optax.sgd(1.0)),
    ):
        algo = federated_algorithm(parts, sampler=uniform(3), local_steps=2, batch_size=4)
        state, _ = jax.jit(algo.round_fn)(
            algo.init(variables(mlp_params)), tiny_clients, jax.random.key(3)
        )
        results.append(state.params)
    chex.assert_trees_all_equal(*results)


def test_feddyn_equals_the_papers_updates(clients):
    alpha = 0.4
    state = run(
        feddyn_parts(quadratic, optax.sgd(LR), num_clients=2, alpha=alpha),
        clients,
        weighting=paper_weighting("feddyn"),
    )
    theta, h = W0.copy(), np.zeros(3)
    g = [np.zeros(3), np.zeros(3)]
    for _ in range(ROUNDS):
        thetas = []
        for k in range(2):
            v = theta.copy()
            for _ in range(J):
                v = v - LR * (grad(k, v) - g[k] + alpha * (v - theta))
            g[k] = g[k] - alpha * (v - theta)
            thetas.append(v)
        h = h - alpha / 2 * np.sum([t - theta for t in thetas], axis=0)
        theta = np.mean(thetas, axis=0) - h / alpha
    np.testing.assert_allclose(state.params["w"], theta, **TOL)
    np.testing.assert_allclose(state.extra["h"]["w"], h, **TOL)
    np.testing.assert_allclose(state.clients["grad"]["w"], np.stack(g), **TOL)


def test_fednova_normalizes_heterogeneous_local_work(clients):
    # "proportional" local work: ceil(4 * n_k / max n) steps = 2 and 4.
    state = run(
        fednova_parts(quadratic, optax.sgd(LR), optax.sgd(1.0)),
        clients,
        local_steps=4,
        local_work="proportional",
    )
    w = W0.copy()
    steps, p = (2, 4), np.array(SIZES) / np.sum(SIZES)
    for _ in range(ROUNDS):
        deltas = []
        for k in range(2):
            v = w.copy()
            for _ in range(steps[k]):
                v = v - LR * grad(k, v)
            deltas.append(v - w)
        tau_eff = np.dot(p, steps)
        w = w + tau_eff * sum(p[k] * deltas[k] / steps[k] for k in range(2))
    np.testing.assert_allclose(state.params["w"], w, **TOL)
    fedavg = run(
        fedavg_parts(quadratic, optax.sgd(LR), optax.sgd(1.0)),
        clients,
        local_steps=4,
        local_work="proportional",
    )
    assert not np.allclose(fedavg.params["w"], w, **TOL)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_fednova_normalizer_is_the_momentum_sgd_displacement(momentum):
    # With a constant gradient v, tau momentum-SGD steps move by -lr * a(tau) * v.
    v, tau = np.array([1.0, -2.0]), 5
    tx = optax.sgd(LR, momentum=momentum or None)
    w, state = jnp.zeros(2), tx.init(jnp.zeros(2))
    for _ in range(tau):
        updates, state = tx.update(jnp.asarray(v), state, w)
        w = optax.apply_updates(w, updates)
    a = float(momentum_steps_norm(jnp.asarray(tau), momentum))
    np.testing.assert_allclose(w, -LR * a * v, rtol=1e-6)


@pytest.mark.parametrize(
    "name, options, reference",
    [
        ("adam", {"b1": 0.9, "b2": 0.99, "eps": 1e-3}, optax.adam(0.1, 0.9, 0.99, eps=1e-3)),
        ("yogi", {"b1": 0.9, "b2": 0.99, "eps": 1e-3}, optax.yogi(0.1, 0.9, 0.99, eps=1e-3)),
        ("adagrad", {"eps": 1e-3}, optax.adagrad(0.1, eps=1e-3)),
        ("sgd", {"momentum": 0.9}, optax.sgd(0.1, momentum=0.9)),
    ],
)
def test_server_optimizer_is_optax_on_the_negated_mean_delta(name, options, reference):
    parts = fedavg_parts(quadratic, optax.sgd(LR), make_optimizer(name, 0.1, **options))
    state = parts.init(variables({"w": jnp.asarray(W0, jnp.float32)}))
    ref_params, ref_state = jnp.asarray(W0, jnp.float32), reference.init(jnp.zeros(3))
    rng = np.random.default_rng(0)
    weights = jnp.array([2.0, 4.0])
    for _ in range(3):
        deltas = rng.normal(size=(2, 3)).astype(np.float32)
        outputs = ClientOutput({"w": jnp.asarray(deltas)}, {}, {}, {}, {})
        state = parts.server_update(state, outputs, weights)
        mean = (2 * deltas[0] + 4 * deltas[1]) / 6
        updates, ref_state = reference.update(-jnp.asarray(mean), ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, updates)
        np.testing.assert_allclose(state.params["w"], ref_params, rtol=1e-5, atol=1e-6)


def test_kept_client_optimizer_state_persists(mlp_task, mlp_params, tiny_clients):
    tx = optax.sgd(0.1, momentum=0.9)
    kept = fed_avg(
        mlp_task, tx, optax.sgd(1.0), clients_per_round=6, local_steps=2, batch_size=4,
        num_clients=6, client_optimizer_state="keep",
    )  # fmt: skip
    state = kept.init(variables(mlp_params))
    state, _ = jax.jit(kept.round_fn)(state, tiny_clients, jax.random.key(0))
    traces = jax.tree.leaves(state.clients["opt_state"])
    assert traces and all(t.shape[0] == 6 for t in traces)
    # Every non-empty client has a nonzero momentum trace after its round; the empty one none.
    norms = np.stack([np.abs(np.asarray(t)).reshape(6, -1).sum(1) for t in traces]).sum(0)
    assert np.all(norms[:5] > 0) and norms[5] == 0


@pytest.mark.parametrize("algorithm", ["scaffold", "feddyn"])
def test_uniform_is_what_runs_and_is_recorded_and_examples_stays_a_choice(clients, algorithm):
    config = load_config(f"configs/{algorithm}_shakespeare.py:smoke")
    assert config.weighting == "auto" and config_record(config)["weighting"] == "uniform"
    config.weighting = "examples"
    assert resolved_weighting(config) == "examples" == config_record(config)["weighting"]
    config.algorithm = "fedavg"
    config.weighting = "auto"
    assert config_record(config)["weighting"] == "examples"
    # with these unequal sizes the example-weighted SCAFFOLD is not the paper's
    parts = scaffold_parts(quadratic, optax.sgd(LR), optax.sgd(0.8), num_clients=2,
                           client_learning_rate=LR, option="II")  # fmt: skip
    state = run(parts, clients, weighting="examples")
    assert not np.allclose(state.params["w"], _scaffold_reference("II", 0.8)[0], **TOL)
