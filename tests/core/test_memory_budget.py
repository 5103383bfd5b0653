"""The memory budget: clients vectorized at once are capped so that XLA's peak fits."""

import chex
import jax
import numpy as np
import pytest

from fedjax_sim.config import build as algorithm_configs
from fedjax_sim.config.defaults import base_config
from fedjax_sim.core.engine import Execution, clients_within_memory_budget, round_memory_bytes
from fedjax_sim.core.tasks import make_task
from fedjax_sim.data.client_data import client_data_from_indices


@pytest.fixture(scope="module")
def setup():
    """A FedAvg config of 40 MLP clients per round (of 60), its task, clients and round args."""
    config = base_config("shakespeare", "fedavg")
    config.model.name = "mlp"
    config.clients_per_round, config.client.local_steps, config.client.batch_size = 40, 2, 3
    task = make_task("mlp", 10, features=16)
    rng = np.random.default_rng(0)
    n = 60 * 6
    examples = {
        "x": rng.normal(size=(n, 16)).astype(np.float32),
        "y": rng.integers(0, 10, n).astype(np.int32),
    }
    clients = client_data_from_indices(examples, np.split(np.arange(n), 60))
    algorithm = algorithm_configs.build_algorithm(config, task, clients.num_clients)
    state = algorithm.init(task.model.init(jax.random.key(0)))
    return config, task, clients, algorithm, state


def test_round_over_budget_runs_in_chunks_with_the_same_result(setup):
    config, task, clients, algorithm, state = setup
    key = jax.random.key(1)
    whole = round_memory_bytes(algorithm.round_fn, state, clients, key)
    config.memory_budget_gb = 2 * whole / 2**30
    same = algorithm_configs.fit_algorithm_to_memory(config, task, clients, state, key, algorithm)
    assert same is algorithm
    config.memory_budget_gb = 0.9 * whole / 2**30
    fitted = algorithm_configs.fit_algorithm_to_memory(config, task, clients, state, key, algorithm)
    assert fitted is not algorithm
    assert round_memory_bytes(fitted.round_fn, state, clients, key) <= 0.9 * whole
    # Chunks (here of a size below C, remainder included) change nothing but memory.
    chunked, _ = jax.jit(fitted.round_fn)(state, clients, key)
    vectorized, _ = jax.jit(algorithm.round_fn)(state, clients, key)
    chex.assert_trees_all_close(chunked.params, vectorized.params, rtol=1e-5, atol=1e-6)


def test_budget_below_one_client_is_a_clear_error(setup):
    config, task, clients, _, state = setup

    def round_for_chunk(k):
        execution = Execution(client_axis="chunked", chunk_size=k)
        return algorithm_configs.build_algorithm(
            config, task, clients.num_clients, execution
        ).round_fn

    with pytest.raises(ValueError, match=r"^memory_budget_gb=.* is too small: a round with one"):
        clients_within_memory_budget(
            round_for_chunk, (state, clients, jax.random.key(1)), 40, budget_bytes=1000
        )
