"""FedAvg against plain sequential reference loops; padding, tracing, formulations, aggregation.

The references recompute a round's clients and batches from its key as the README documents
(``fold_in(key, round)`` split into select, batch and train keys; every client's plan keyed by
``fold_in(batch_key, client_id)``), then run `ref_sgd` per client, average the deltas by hand and
apply the server step by hand.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.fedavg import fed_avg
from fedjax_sim.core import aggregation
from fedjax_sim.core.local import make_local_steps
from fedjax_sim.core.tasks import Task, cross_entropy, make_task
from fedjax_sim.data.client_data import client_batch_plan, client_data_from_indices, sample_clients
from fedjax_sim.models.model import variables

TOL = {"rtol": 1e-5, "atol": 1e-6}
KEY = jax.random.key(42)

# The references use the library's sampler (tested in test_sampler.py), jitted once: eager calls
# would compile its `while_loop` again every time.
plan_at = jax.jit(client_batch_plan, static_argnames=("num_steps", "batch_size"))
sample_at = jax.jit(sample_clients, static_argnums=(1, 2))


def _round_keys(round_num):
    """(select, batch, train) keys of a round, as `fed_avg` derives them from the run's key."""
    return jax.random.split(jax.random.fold_in(KEY, round_num), 3)


def _reference_mean_delta(
    ref_sgd,
    gather_host,
    params,
    clients,
    round_num,
    *,
    clients_per_round,
    local_steps,
    batch_size,
    lr,
    momentum=0.0,
    weighting="examples",
    epochs=None,
):
    """The round's aggregated client delta by a Python loop over its clients.

    Returns ``(mean_delta, client_ids, loss_sum, count)``.
    """
    select_key, batch_key, _ = _round_keys(round_num)
    client_ids = np.asarray(sample_at(select_key, clients.num_clients, clients_per_round))
    weighted_sum = jax.tree.map(jnp.zeros_like, params)
    total_weight, loss_sum, count = 0.0, 0.0, 0
    for client_id in client_ids:
        n = int(clients.counts_K[client_id])
        indices, mask = plan_at(
            jax.random.fold_in(batch_key, client_id),
            clients.order_N,
            clients.offsets_K[client_id],
            n,
            num_steps=local_steps,
            batch_size=batch_size,
            example_limit=None if epochs is None else epochs * n,
        )
        new_params, _, client_loss_sum, client_count = ref_sgd(
            params, gather_host(clients, indices, mask), lr, momentum
        )
        weight = float(n) if weighting == "examples" else float(n > 0)
        weighted_sum = jax.tree.map(
            lambda s, new, old, w=weight: s + w * (new - old), weighted_sum, new_params, params
        )
        total_weight += weight
        loss_sum += client_loss_sum
        count += client_count
    scale = 1.0 / total_weight if total_weight > 0 else 0.0
    return jax.tree.map(lambda s: scale * s, weighted_sum), client_ids, loss_sum, count


def _run_rounds(algo, params, clients, num_rounds, on_round=None):
    """``[(params, metrics)]`` after each of ``num_rounds`` calls of the jitted round."""
    round_fn = jax.jit(algo.round_fn)
    state, history = algo.init(variables(params)), []
    for _ in range(num_rounds):
        state, metrics = round_fn(state, clients, KEY)
        history.append((state.params, jax.device_get(metrics)))
        if on_round:
            on_round(state)
    return history


# One client holding all 24 examples; 8 steps of 4 examples, so the second pass starts inside
# step 6. The task counts how often its model is traced.
ONE_CLIENT = dict(clients_per_round=1, local_steps=8, batch_size=4)


@pytest.fixture(scope="module")
def one_client_run(mlp_task, mlp_params, tiny_examples, trace_counting):
    """``(clients, history, traces_after_each_round)`` of 5 rounds."""
    task, traces = trace_counting(mlp_task)
    clients = client_data_from_indices(tiny_examples, [np.arange(24)])
    algo = fed_avg(task, optax.sgd(0.1), optax.sgd(1.0), **ONE_CLIENT)
    counts = []
    count_traces = lambda _: counts.append(len(traces))  # noqa: E731
    history = _run_rounds(algo, mlp_params, clients, 5, on_round=count_traces)
    return clients, history, counts


def test_one_client_is_plain_sgd(one_client_run, mlp_params, ref_sgd, gather_host):
    clients, history, _ = one_client_run
    want = mlp_params
    for round_num, (params, metrics) in enumerate(history[:2]):
        _, batch_key, _ = _round_keys(round_num)
        indices, mask = plan_at(
            jax.random.fold_in(batch_key, 0), clients.order_N, 0, 24, num_steps=8, batch_size=4
        )
        want, _, loss_sum, count = ref_sgd(want, gather_host(clients, indices, mask), 0.1)
        chex.assert_trees_all_close(params, want, **TOL)
        assert metrics["train_examples"] == count == 32
        np.testing.assert_allclose(metrics["train_loss"], loss_sum / count, **TOL)


def test_round_traces_once(one_client_run):
    counts = one_client_run[2]
    assert counts[0] > 0
    assert counts == [counts[0]] * 5


# All 6 tiny clients (sizes 7, 3, 1, 5, 4, 0) every round; chunks of 4 do not divide 6.
ALL_CLIENTS = dict(clients_per_round=6, local_steps=3, batch_size=2)


def _all_clients_fed_avg(task, **kwargs):
    return fed_avg(task, optax.sgd(0.1, momentum=0.5), optax.sgd(0.7), **ALL_CLIENTS, **kwargs)


@pytest.fixture(scope="module")
def vmap_history(mlp_task, mlp_params, tiny_clients):
    return _run_rounds(_all_clients_fed_avg(mlp_task), mlp_params, tiny_clients, 2)


@pytest.mark.parametrize(
    "client_axis, chunk_size", [("vmap", None), ("map", None), ("chunked", 4), ("sequential", None)]
)
def test_round_equals_sequential_reference(
    client_axis, chunk_size, vmap_history, mlp_task, mlp_params, tiny_clients, ref_sgd, gather_host
):
    if client_axis == "vmap":
        history = vmap_history
    else:
        algo = _all_clients_fed_avg(mlp_task, client_axis=client_axis, chunk_size=chunk_size)
        history = _run_rounds(algo, mlp_params, tiny_clients, 2)

    want = mlp_params
    for round_num, (params, metrics) in enumerate(history):
        mean_delta, _, loss_sum, count = _reference_mean_delta(
            ref_sgd, gather_host, want, tiny_clients, round_num, lr=0.1, momentum=0.5, **ALL_CLIENTS
        )
        want = jax.tree.map(lambda p, d: p + 0.7 * d, want, mean_delta)
        chex.assert_trees_all_close(params, want, **TOL)
        assert metrics["train_examples"] == count
        np.testing.assert_allclose(metrics["train_loss"], loss_sum / count, **TOL)


def test_empty_client_changes_nothing(
    vmap_history, mlp_task, mlp_params, tiny_examples, tiny_client_indices
):
    # Without the empty last client, every other client keeps its id, so its batches and rng.
    clients = client_data_from_indices(tiny_examples, tiny_client_indices[:-1])
    algo = fed_avg(
        mlp_task,
        optax.sgd(0.1, momentum=0.5),
        optax.sgd(0.7),
        **{**ALL_CLIENTS, "clients_per_round": 5},
    )
    params, metrics = _run_rounds(algo, mlp_params, clients, 1)[0]
    padded_params, padded_metrics = vmap_history[0]
    chex.assert_trees_all_close(padded_params, params, **TOL)
    assert padded_metrics["train_examples"] == metrics["train_examples"]
    np.testing.assert_allclose(padded_metrics["train_loss"], metrics["train_loss"], **TOL)


def test_uniform_weighting_and_server_momentum(
    mlp_task, mlp_params, tiny_clients, ref_sgd, gather_host
):
    # 2 of 6 clients a round; the server's momentum SGD acts on the negated mean delta.
    hparams = dict(clients_per_round=2, local_steps=2, batch_size=2)
    algo = fed_avg(
        mlp_task, optax.sgd(0.1), optax.sgd(0.5, momentum=0.9), weighting="uniform", **hparams
    )
    history = _run_rounds(algo, mlp_params, tiny_clients, 3)

    want, trace, sampled = mlp_params, jax.tree.map(jnp.zeros_like, mlp_params), []
    for round_num, (params, _) in enumerate(history):
        mean_delta, client_ids, _, _ = _reference_mean_delta(
            ref_sgd,
            gather_host,
            want,
            tiny_clients,
            round_num,
            lr=0.1,
            weighting="uniform",
            **hparams,
        )
        trace = jax.tree.map(lambda d, m: -d + 0.9 * m, mean_delta, trace)
        want = jax.tree.map(lambda p, m: p - 0.5 * m, want, trace)
        chex.assert_trees_all_close(params, want, **TOL)
        sampled.append(sorted(client_ids.tolist()))
    # Uniform weights differ from example weights only if two clients of different sizes meet.
    sizes = np.asarray(tiny_clients.counts_K)
    assert any(sizes[a] != sizes[b] and sizes[a] and sizes[b] for a, b in sampled), sampled


def test_local_epochs_stop_after_the_clients_examples(
    mlp_task, mlp_params, tiny_examples, ref_sgd, gather_host
):
    # 3 examples, B=2, one epoch: steps 0 (2 examples) and 1 (1 example) run; 2 and 3 are no-ops,
    # which with momentum 0.9 would still move the parameters if they were applied.
    clients = client_data_from_indices(tiny_examples, [np.array([3, 8, 20])])
    algo = fed_avg(
        mlp_task,
        optax.sgd(0.1, momentum=0.9),
        optax.sgd(1.0),
        clients_per_round=1,
        local_steps=4,
        batch_size=2,
        local_epochs=1,
    )
    [(params, metrics)] = _run_rounds(algo, mlp_params, clients, 1)

    _, batch_key, _ = _round_keys(0)
    indices, mask = plan_at(
        jax.random.fold_in(batch_key, 0),
        clients.order_N,
        0,
        3,
        num_steps=4,
        batch_size=2,
        example_limit=3,
    )
    np.testing.assert_array_equal(mask, [[True, True], [True, False], [False, False], [False] * 2])
    batches = gather_host(clients, indices, mask)
    want, _, _, _ = ref_sgd(mlp_params, batches, 0.1, momentum=0.9)
    chex.assert_trees_all_close(params, want, **TOL)
    assert metrics["train_examples"] == 3
    applied_all, _, _, _ = ref_sgd(
        mlp_params, [(x, y, np.ones_like(m)) for x, y, m in batches], 0.1, momentum=0.9
    )
    assert not np.allclose(applied_all["w1"], want["w1"], atol=1e-4)  # the check has teeth


def test_masked_step_leaves_params_and_momentum(
    mlp_task, mlp_params, tiny_clients, ref_sgd, gather_host
):
    tx = optax.sgd(0.1, momentum=0.9)
    run_local = jax.jit(make_local_steps(cross_entropy(mlp_task), tx))
    indices = jnp.array([[0, 1], [2, 3], [4, 5]])
    mask = jnp.array([[True, True], [False, False], [True, False]])
    params, _, opt_state, metrics, steps = run_local(
        mlp_params, {}, tx.init(mlp_params), tiny_clients, indices, mask, jax.random.key(0), None
    )
    assert steps == 2
    want, want_trace, loss_sum, count = ref_sgd(
        mlp_params, gather_host(tiny_clients, indices, mask), 0.1, momentum=0.9
    )
    chex.assert_trees_all_close(params, want, **TOL)
    chex.assert_trees_all_close(jax.tree.leaves(opt_state), jax.tree.leaves(want_trace), **TOL)
    assert metrics["count"] == count == 3
    np.testing.assert_allclose(metrics["loss_sum"], loss_sum, **TOL)


def _cnn_examples():
    rng = np.random.default_rng(1)
    return {
        "x": rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8),
        "y": rng.integers(0, 100, 7).astype(np.int32),
    }


def _lstm_examples():
    rng = np.random.default_rng(2)
    return {
        "x": rng.integers(0, 80, (7, 5), dtype=np.uint8),
        "y": rng.integers(0, 80, 7).astype(np.int32),
    }


@pytest.mark.parametrize(
    "model, make_examples",
    [("cnn", _cnn_examples), ("small_lstm", _lstm_examples)],
    ids=["cnn", "lstm"],
)
def test_formulations_agree(model, make_examples, request):
    # Clients of sizes 3, 3, 1; the round samples 2 of them, the last one (smaller than B = 2)
    # among them. "chunked" runs one chunk of 2 vectorized clients inside the sequential map (the
    # remainder path of chunks that do not divide the round is covered with the tiny task).
    task: Task = request.getfixturevalue(f"{model}_task")
    params0 = request.getfixturevalue(f"{model}_params")
    clients = client_data_from_indices(make_examples(), [np.arange(3), np.arange(3, 6), [6]])
    select_key, _, _ = _round_keys(0)
    assert 2 in sample_at(select_key, 3, 2)
    results = {}
    runs = [(task, axis) for axis in ("vmap", "map", "chunked", "sequential")]
    if model == "cnn":
        # On CPU the task's convolution is the loop-friendly one; XLA's nn.Conv, clients
        # unrolled, is a further reference (fedjax_sim/models/conv.py).
        runs.append((make_task("cnn", 100, conv="xla"), "sequential_nn_conv"))
    for run_task, client_axis in runs:
        algo = fed_avg(
            run_task,
            optax.sgd(0.05),
            optax.sgd(1.0),
            clients_per_round=2,
            local_steps=2,
            batch_size=2,
            client_axis=client_axis.removesuffix("_nn_conv"),
            chunk_size=2,
        )
        results[client_axis] = _run_rounds(algo, params0, clients, 1)[0]
    params, metrics = results["vmap"]
    assert metrics["train_examples"] == 8
    assert not np.allclose(params["Dense_0"]["kernel"], params0["Dense_0"]["kernel"])
    for client_axis in set(results) - {"vmap"}:
        other_params, other_metrics = results[client_axis]
        chex.assert_trees_all_close(other_params, params, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(other_metrics["train_loss"], metrics["train_loss"], rtol=1e-5)


# Aggregation: the example-weighted mean of client deltas.


def test_weighted_mean_hand_computed():
    deltas = {"w": jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [-2.0, 0.0, 8.0]])}
    weights = jnp.array([1.0, 3.0, 0.0])
    mean, _ = aggregation.weighted_mean().update(deltas, optax.EmptyState(), weights=weights)
    np.testing.assert_allclose(mean["w"], [13 / 4, 17 / 4, 21 / 4], rtol=1e-6)
    weights = jnp.array([2.0, 1.0, 1.0])
    mean, _ = aggregation.weighted_mean().update(deltas, optax.EmptyState(), weights=weights)
    np.testing.assert_allclose(mean["w"], [4 / 4, 9 / 4, 20 / 4], rtol=1e-6)


def test_weighted_mean_of_zero_weights_is_zero():
    deltas = {"w": jnp.ones((3, 3)), "b": jnp.ones((3,))}
    mean, _ = aggregation.weighted_mean().update(deltas, optax.EmptyState(), weights=jnp.zeros(3))
    chex.assert_trees_all_equal(mean, {"w": jnp.zeros(3), "b": jnp.zeros(())})


def test_client_weights():
    counts = jnp.array([5, 0, 2])
    np.testing.assert_array_equal(aggregation.client_weights(counts, "examples"), [5.0, 0.0, 2.0])
    np.testing.assert_array_equal(aggregation.client_weights(counts, "uniform"), [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"weighting must be one of \['examples', 'uniform'\]"):
        fed_avg(
            None,
            optax.sgd(1.0),
            optax.sgd(1.0),
            clients_per_round=1,
            local_steps=1,
            batch_size=1,
            weighting="mean",
        )
