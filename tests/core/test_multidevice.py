"""The client axis sharded over a 2-device mesh gives the single-device result, under every
per-device formulation, for a linear model and the LSTM.

Runs in a subprocess because the host device count is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``).
"""

import textwrap

import pytest

from tests.host_devices import run_with_host_devices

# A linear task both scripts train (each script asserts its own device count).
LINEAR_TASK = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, optax
    from fedjax_sim.data.client_data import client_data_from_indices
    from fedjax_sim.models.model import stateless, variables
    from fedjax_sim.core.tasks import Task, cross_entropy, make_task

    def init(rng):
        return {"w": 0.1 * jax.random.normal(rng, (6, 3)), "b": jnp.zeros(3)}
    linear = Task(stateless(init, lambda p, x: x @ p["w"] + p["b"], (6,), "linear"),
                  lambda x, rng: x, 3)
    rng = np.random.default_rng(0)
""")

SCRIPT = LINEAR_TASK + textwrap.dedent("""
    from jax.sharding import Mesh
    from fedjax_sim.algorithms.fedavg import fed_avg

    assert jax.device_count() == 2, jax.devices()
    features = {"x": rng.normal(size=(40, 6)).astype(np.float32),
                "y": rng.integers(0, 3, 40).astype(np.int32)}
    # the LSTM's hand-written recurrence (a scan with its own carry) under shard_map too
    lstm = make_task("lstm", 7, seq_len=5, hidden=4)
    tokens = {"x": rng.integers(0, 7, (40, 5)).astype(np.uint8),
              "y": rng.integers(0, 7, 40).astype(np.int32)}
    mesh = Mesh(np.array(jax.devices()), ("clients",))

    def train(task, data, **kwargs):
        clients = client_data_from_indices(data, np.array_split(np.arange(40), 8))
        algo = fed_avg(task, optax.sgd(0.3), optax.sgd(1.0), clients_per_round=4, local_steps=3,
                       batch_size=4, chunk_size=1, **kwargs)
        state = algo.init(task.model.init(jax.random.key(0)))
        step = jax.jit(algo.round_fn)
        program = step.lower(state, clients, jax.random.key(1)).as_text()
        assert ("sdy.manual_computation" in program) == ("client_mesh" in kwargs)
        for _ in range(3):
            state, _ = step(state, clients, jax.random.key(1))
        return state.params

    for task, data in ((linear, features), (lstm, tokens)):
        expected = train(task, data)
        assert not np.allclose(jax.tree.leaves(expected)[0],
                               jax.tree.leaves(task.model.init(jax.random.key(0))["params"])[0])
        for axis in ("vmap", "map", "chunked", "sequential"):
            got = train(task, data, client_axis=axis, client_mesh=mesh)
            for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=axis)
    # SCAFFOLD: per-client state of all 8 clients, split over the devices along K.
    from fedjax_sim.core.round import federated_algorithm
    from fedjax_sim.algorithms.scaffold import scaffold_parts
    from fedjax_sim.core.selection import uniform
    from fedjax_sim.core.engine import Execution

    def scaffold(execution):
        clients = client_data_from_indices(features, np.array_split(np.arange(40), 8))
        parts = scaffold_parts(cross_entropy(linear), optax.sgd(0.3), optax.sgd(1.0),
                               num_clients=8, client_learning_rate=0.3)
        algo = federated_algorithm(parts, sampler=uniform(4), local_steps=3, batch_size=4,
                                   execution=execution)
        state = algo.init(variables(init(jax.random.key(0))))
        step = jax.jit(algo.round_fn)
        for _ in range(3):
            state, _ = step(state, clients, jax.random.key(1))
        return state

    expected = scaffold(Execution("vmap"))
    for axis in ("vmap", "map"):
        got = scaffold(Execution(axis, mesh=mesh))
        control = got.clients["control"]["w"]
        assert control.sharding.spec == jax.sharding.PartitionSpec("clients"), control.sharding
        for a, b in zip(jax.tree.leaves((expected.params, expected.clients)),
                        jax.tree.leaves((got.params, got.clients)), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=axis)
    try:
        algo = fed_avg(linear, optax.sgd(0.3), optax.sgd(1.0), clients_per_round=3,
                       local_steps=1, batch_size=4, client_mesh=mesh)
        clients = client_data_from_indices(features, np.array_split(np.arange(40), 8))
        jax.jit(algo.round_fn)(algo.init(variables(init(jax.random.key(0)))), clients,
                               jax.random.key(1))
        raise AssertionError("3 clients over 2 devices should be refused")
    except ValueError as e:
        assert "clients_per_round=3 must be a multiple of the 2 devices" in str(e), e
    print("OK")
""")


@pytest.mark.slow
def test_client_axis_sharded_over_two_devices_matches_one():
    run_with_host_devices(SCRIPT, 2)


FEDSEQ_SCRIPT = LINEAR_TASK + textwrap.dedent("""
    from jax.sharding import Mesh
    from fedjax_sim.algorithms.fedavg import fedavg_parts
    from fedjax_sim.algorithms.fedseq import fedseq_round
    from fedjax_sim.core.engine import Execution

    assert jax.device_count() == 2, jax.devices()
    data = {"x": rng.normal(size=(40, 6)).astype(np.float32),
            "y": rng.integers(0, 3, 40).astype(np.int32)}
    clients = client_data_from_indices(data, np.array_split(np.arange(40), 8))
    parts = fedavg_parts(cross_entropy(linear), optax.sgd(0.3), optax.sgd(1.0))
    groups = np.array([[0, 5, 2], [1, 6, -1], [3, 4, 7], [-1, -1, -1]])[:3]

    def train(execution):
        round_fn = jax.jit(fedseq_round(parts, groups=groups, superclients_per_round=2,
                                        local_steps=2, batch_size=4, execution=execution))
        state = parts.init(variables(init(jax.random.key(0))))
        for r in range(3):
            state, _ = round_fn(state, clients, jax.random.key(r))
        return jax.tree.leaves(state.params)

    expected = train(Execution("vmap"))
    mesh = Mesh(np.array(jax.devices()), ("clients",))
    for axis in ("vmap", "map"):
        for a, b in zip(expected, train(Execution(axis, mesh=mesh)), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=axis)
    print("OK")
""")


def test_fedseq_superclients_sharded_over_two_devices_match_one():
    # the members' scan inside shard_map (its zero deltas once took the params' sharding)
    run_with_host_devices(FEDSEQ_SCRIPT, 2)


WORKER_SCRIPT = LINEAR_TASK + textwrap.dedent("""
    from fedjax_sim.algorithms.async_sgd import async_sgd
    from fedjax_sim.algorithms.gossip import gossip_sgd
    from fedjax_sim.algorithms.local_sgd import local_sgd
    from fedjax_sim.core.speeds import make_job_durations
    from fedjax_sim.core.engine import Execution, client_mesh_for

    assert jax.device_count() == 8, jax.devices()
    data = {"x": rng.normal(size=(64, 6)).astype(np.float32),
            "y": rng.integers(0, 3, 64).astype(np.int32)}
    workers = client_data_from_indices(data, np.array_split(np.arange(64), 8))

    def build(name, execution):
        loss, inner = cross_entropy(linear), optax.sgd(0.2, momentum=0.9)
        common = dict(num_workers=8, local_steps=3, batch_size=4, execution=execution)
        if name == "localsgd":
            return local_sgd(loss, inner, optax.sgd(0.8, momentum=0.5), sync_momentum="keep",
                             **common)
        if name == "async":
            speeds = make_job_durations("lognormal", num_workers=8, sigma=0.7)
            return async_sgd(loss, inner, optax.sgd(1.0), durations=speeds,
                             staleness_scaling="polynomial", keep_inner_state=True, **common)
        return gossip_sgd(loss, inner, graph="random_pairs", **common)

    def train(devices, axis, name, data=1):
        mesh = client_mesh_for(devices, 8, data)
        assert (mesh is None) == (devices == 1 and data == 1)
        algo = build(name, Execution(axis, mesh=mesh))
        state = algo.init(variables(init(jax.random.key(0))))
        step = jax.jit(algo.round_fn)
        if data > 1:  # the data axis splits each worker's batch: more all-reduces
            reduces[data] = step.lower(state, workers, jax.random.key(1)).compile().as_text()
        elif devices == 4 and axis == "vmap":
            reduces[1] = step.lower(state, workers, jax.random.key(1)).compile().as_text()
        for _ in range(3):
            state, _ = step(state, workers, jax.random.key(1))
        if mesh is not None:
            buffer = jax.tree.leaves(state.clients)[0]
            assert buffer.sharding.spec == jax.sharding.PartitionSpec("clients"), buffer.sharding
        return jax.tree.leaves((state.params, state.clients))

    reduces = {}
    for name in ("localsgd", "async", "gossip"):
        expected = train(1, "vmap", name)
        # every split for LocalSGD; the others, which share its worker axis, on 8 devices
        for devices in (2, 4, 8) if name == "localsgd" else (8,):
            for axis in ("vmap", "map"):
                got = train(devices, axis, name)
                for a, b in zip(expected, got, strict=True):
                    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6,
                                               err_msg=(name, devices, axis))
        if name != "localsgd":
            continue
        # 4 devices for the workers x 2 for each worker's batch (a "data" mesh axis)
        for a, b in zip(expected, train(4, "vmap", name, data=2), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=(name, "data"))
        assert reduces[2].count("all-reduce(") > reduces[1].count("all-reduce("), name
    print("OK")
""")


@pytest.mark.slow
def test_workers_on_1_2_4_and_8_devices_give_the_same_local_async_and_gossip_sgd():
    run_with_host_devices(WORKER_SCRIPT, 8)
