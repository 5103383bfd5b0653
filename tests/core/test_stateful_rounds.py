"""Stateful algorithms through `simulate`: a resumed run equals an uninterrupted one bit for bit
(all K clients' state included), k rounds per call equal k calls, and every client
formulation agrees for an algorithm with per-client state."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.algorithms.feddyn import feddyn_parts
from fedjax_sim.algorithms.scaffold import scaffold_parts
from fedjax_sim.core.engine import Execution
from fedjax_sim.core.round import federated_algorithm, per_client_state_bytes
from fedjax_sim.core.selection import proportional, uniform
from fedjax_sim.core.tasks import cross_entropy, make_task
from fedjax_sim.models.model import from_linen, variables
from fedjax_sim.models.resnet import Norm
from fedjax_sim.runtime.simulate import simulate


class _BatchNormNet(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False, mask=None):
        x = nn.relu(Norm("batch", name="norm")(nn.Dense(5)(x), train=train, mask=mask))
        return nn.Dense(3)(x)


@pytest.fixture(scope="module")
def algorithms(mlp_task, mlp_params):
    """name -> (algorithm, initial state): SCAFFOLD, FedDyn, FedBN, each with per-client state."""
    objective = cross_entropy(mlp_task)
    bn_task = make_task(from_linen(_BatchNormNet(), jnp.zeros((1, 6)), "bn", stateful=True), 3)
    options = {"sampler": uniform(3), "local_steps": 2, "batch_size": 4}
    built = {
        "scaffold": (
            scaffold_parts(
                objective, optax.sgd(0.1), optax.sgd(1.0), num_clients=6, client_learning_rate=0.1
            ),
            variables(mlp_params),
        ),
        "feddyn": (
            feddyn_parts(objective, optax.sgd(0.1), num_clients=6, alpha=0.1),
            variables(mlp_params),
        ),
        "fedbn": (
            fedavg_parts(
                cross_entropy(bn_task),
                optax.sgd(0.1),
                optax.sgd(1.0),
                num_clients=6,
                personal="norm",
            ),  # fmt: skip
            jax.jit(bn_task.model.init)(jax.random.key(0)),
        ),
    }
    return {
        name: (federated_algorithm(parts, **options), parts.init(init))
        for name, (parts, init) in built.items()
    }


class _Killed(Exception):
    pass


def _assert_states_equal(a, b):
    chex.assert_trees_all_equal(jax.device_get(a), jax.device_get(b))


@pytest.mark.parametrize("name", ["scaffold", "feddyn", "fedbn"])
def test_resume_is_bit_exact_with_every_clients_state(algorithms, tiny_clients, tmp_path, name):
    algo, state0 = algorithms[name]
    assert per_client_state_bytes(state0) > 0
    run = dict(state=state0, key=jax.random.key(7), checkpoint_every=2, progress=False)
    straight, history = simulate(algo.round_fn, tiny_clients, 5, eval_every=2, **run)
    directory = str(tmp_path / name)

    def killed_at_round_4(records):  # dies after round 4's record, before its checkpoint
        if records[-1]["round"] == 4:
            raise _Killed

    with pytest.raises(_Killed):
        simulate(
            algo.round_fn, tiny_clients, 5, checkpoint_dir=directory, eval_every=2,
            on_record=killed_at_round_4, **run,
        )  # fmt: skip
    resumed, resumed_history = simulate(
        algo.round_fn, tiny_clients, 5, checkpoint_dir=directory, eval_every=2, **run
    )
    assert int(resumed.round) == 5 and resumed_history == history
    _assert_states_equal(resumed, straight)
    # The clients' state moved, so the comparison covers it.
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(*map(jax.tree.leaves, (straight.clients, state0.clients)), strict=True)
    )


def test_rounds_per_call_equals_one_round_per_call(algorithms, tiny_clients):
    algo, state0 = algorithms["scaffold"]
    run = dict(state=state0, key=jax.random.key(7), progress=False, eval_every=4)
    one, one_history = simulate(algo.round_fn, tiny_clients, 10, **run)
    many, many_history = simulate(algo.round_fn, tiny_clients, 10, rounds_per_call=3, **run)
    assert many_history == one_history  # records at 4, 8, 10 despite calls of 3
    _assert_states_equal(many, one)


@pytest.mark.parametrize(
    "client_axis, chunk", [("map", None), ("chunked", 2), ("sequential", None)]
)
def test_formulations_agree_for_scaffold(mlp_task, mlp_params, tiny_clients, client_axis, chunk):
    def train(execution):
        parts = scaffold_parts(
            cross_entropy(mlp_task), optax.sgd(0.1), optax.sgd(1.0), num_clients=6,
            client_learning_rate=0.1,
        )  # fmt: skip
        algo = federated_algorithm(
            parts, sampler=proportional(4), local_steps=3, batch_size=4, execution=execution
        )
        state = algo.init(variables(mlp_params))
        for _ in range(3):
            state, _ = jax.jit(algo.round_fn)(state, tiny_clients, jax.random.key(2))
        return state

    reference = train(Execution("vmap"))
    got = train(Execution(client_axis, chunk))
    chex.assert_trees_all_close(
        (got.params, got.clients, got.extra),
        (reference.params, reference.clients, reference.extra),
        rtol=2e-5,
        atol=2e-6,
    )
