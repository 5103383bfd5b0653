"""The client axis sharded over a 2-device mesh gives the single-device result.

Runs in a subprocess because the host device count is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``).
"""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from fedjax_sim.algorithms.fedavg import fed_avg
    from fedjax_sim.data.client_data import client_data_from_indices
    from fedjax_sim.models.model import Model
    from fedjax_sim.tasks import Task

    assert jax.device_count() == 2, jax.devices()
    def init(rng):
        return {"w": 0.1 * jax.random.normal(rng, (6, 3)), "b": jnp.zeros(3)}
    task = Task(Model(init, lambda p, x: x @ p["w"] + p["b"], (6,), "linear"),
                lambda x, rng: x, 3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40).astype(np.int32)
    clients = client_data_from_indices({"x": x, "y": y}, np.array_split(np.arange(40), 8))
    mesh = Mesh(np.array(jax.devices()), ("clients",))
    results = []
    for sharding in (None, NamedSharding(mesh, PartitionSpec("clients"))):
        algo = fed_avg(task, optax.sgd(0.3), optax.sgd(1.0), clients_per_round=4, local_steps=3,
                       batch_size=4, client_sharding=sharding)
        state = algo.init(init(jax.random.key(0)))
        step = jax.jit(algo.round_fn)
        for _ in range(3):
            state, _ = step(state, clients, jax.random.key(1))
        results.append(state.params)
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert not np.allclose(results[0]["w"], init(jax.random.key(0))["w"])
    print("OK")
""")


def test_client_axis_sharded_over_two_devices_matches_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")
