"""The centralized baseline: its data stream and optimizer state continue across rounds."""

import chex
import jax
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.data.client_data import client_batch_plan, pooled_client_data
from fedjax_sim.data.dataset import FederatedDataset
from fedjax_sim.models.model import variables

TOL = {"rtol": 1e-5, "atol": 1e-6}
KEY = jax.random.key(7)
# 8 steps of 3 over the 20 pooled examples: the stream crosses into its second pass in step 6.
STEPS, BATCH = 8, 3
plan_at = jax.jit(client_batch_plan, static_argnames=("num_steps", "batch_size"))


@pytest.fixture(scope="module")
def pooled(tiny_examples, tiny_client_indices):
    dataset = FederatedDataset(
        name="tiny",
        train=tiny_examples,
        test=tiny_examples,
        train_client_indices=tuple(tiny_client_indices),
        test_client_indices=None,
        client_ids=tuple(str(k) for k in range(len(tiny_client_indices))),
        num_classes=3,
    )
    return pooled_client_data(dataset)


def _train(mlp_task, mlp_params, clients, steps_per_round, num_rounds):
    tx = optax.sgd(0.1, momentum=0.9)
    algo = centralized(mlp_task, tx, batch_size=BATCH, steps_per_round=steps_per_round)
    round_fn = jax.jit(algo.round_fn)
    state = algo.init(variables(mlp_params))
    for _ in range(num_rounds):
        state, metrics = round_fn(state, clients, KEY)
    return state, jax.device_get(metrics)


def test_pooled_client_holds_every_client_example(pooled, tiny_client_indices):
    assert pooled.num_clients == 1
    assert int(pooled.counts_K[0]) == 20
    used = np.sort(np.concatenate(tiny_client_indices))
    np.testing.assert_array_equal(pooled.client_indices(0), used)


def test_rounds_continue_the_stream(mlp_task, mlp_params, pooled, ref_sgd, gather_host):
    one_round, metrics = _train(mlp_task, mlp_params, pooled, STEPS, 1)
    for steps_per_round in (1, 2):  # 2 steps a round: the offset counts steps, not rounds
        many_rounds, _ = _train(
            mlp_task, mlp_params, pooled, steps_per_round, STEPS // steps_per_round
        )
        assert int(many_rounds.round) == STEPS // steps_per_round
        chex.assert_trees_all_close(many_rounds.params, one_round.params, **TOL)
        chex.assert_trees_all_close(many_rounds.opt_state, one_round.opt_state, **TOL)

    # Reference: step s reads stream positions [s*B, (s+1)*B) of the round's fixed data key.
    data_key, _ = jax.random.split(KEY)
    batches, stream = [], []
    for step in range(STEPS):
        indices, mask = plan_at(
            data_key, pooled.order_N, 0, 20, num_steps=1, batch_size=BATCH, offset=step * BATCH
        )
        batches += gather_host(pooled, indices, mask)
        stream.append(np.asarray(indices).ravel())
    first_pass = np.concatenate(stream)[:20]
    np.testing.assert_array_equal(np.sort(first_pass), pooled.client_indices(0))
    want, want_trace, loss_sum, count = ref_sgd(mlp_params, batches, 0.1, momentum=0.9)
    chex.assert_trees_all_close(one_round.params, want, **TOL)
    chex.assert_trees_all_close(
        jax.tree.leaves(one_round.opt_state), jax.tree.leaves(want_trace), **TOL
    )
    assert metrics["train_examples"] == count == STEPS * BATCH
    np.testing.assert_allclose(metrics["train_loss"], loss_sum / count, **TOL)
