"""FedSeq: superclients of one client run exactly FedAvg's round; a superclient's sequential pass
equals its members' local steps run one after another by hand; padded members change nothing;
the groupers and the label-distribution estimates on hand-made cases."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms import fedseq_groups as superclients
from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.algorithms.fedseq import fedseq_round, shuffle_members
from fedjax_sim.core.round import federated_round
from fedjax_sim.core.selection import uniform
from fedjax_sim.models.model import variables
from tests.linear_workers import OBJECTIVE, PARAMS0, linear_workers

LR = 0.3
PARTS = fedavg_parts(OBJECTIVE, optax.sgd(LR), optax.sgd(1.0))


def _fedseq(groups, per_round, steps=1, batch_size=4, **options):
    return jax.jit(fedseq_round(PARTS, groups=np.asarray(groups), superclients_per_round=per_round,
                                local_steps=steps, batch_size=batch_size, **options))  # fmt: skip


def _rounds(round_fn, clients, rounds):
    state = PARTS.init(variables(PARAMS0))
    for r in range(rounds):
        state, metrics = round_fn(state, clients, jax.random.key(r))
    return state, metrics


def test_one_client_superclients_run_fedavg_exactly():
    workers = linear_workers(6, 4, seed=1)
    fedavg = jax.jit(federated_round(PARTS, sampler=uniform(3), local_steps=3, batch_size=2))
    fedseq = _fedseq(np.arange(6)[:, None], 3, steps=3, batch_size=2)
    want, want_metrics = _rounds(fedavg, workers.clients, 3)
    got, got_metrics = _rounds(fedseq, workers.clients, 3)
    for a, b in zip(jax.tree.leaves(want.params), jax.tree.leaves(got.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in want_metrics:
        np.testing.assert_array_equal(np.asarray(want_metrics[name]), np.asarray(got_metrics[name]))


def test_sequential_pass_equals_members_by_hand():
    workers = linear_workers(3, 4, seed=2)
    got, metrics = _rounds(_fedseq([[2, 0, 1]], 1, steps=2), workers.clients, 1)
    params = PARAMS0
    for member in (2, 0, 1):  # each member's shard is one batch: its steps see all of it
        for _ in range(2):
            grads = workers.grad(params, workers.shards[member])
            params = jax.tree.map(lambda p, g: p - LR * g, params, grads)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(got.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(metrics["train_examples"]) == 3 * 2 * 4  # 3 members x 2 steps x 4 examples
    assert float(metrics["syncs"]) == 3.0  # the ledger counts each member's hand-off


def test_superclients_are_averaged_by_their_examples():
    workers = linear_workers(3, 4, seed=3)
    got, metrics = _rounds(_fedseq([[0, 1], [2, -1]], 2), workers.clients, 1)
    assert float(metrics["syncs"]) == 1.5  # hand-offs a superclient: 2 and 1, not the padding
    first = PARAMS0
    for member in (0, 1):
        first = jax.tree.map(
            lambda p, g: p - LR * g, first, workers.grad(first, workers.shards[member])
        )
    second = jax.tree.map(
        lambda p, g: p - LR * g, PARAMS0, workers.grad(PARAMS0, workers.shards[2])
    )
    # weights 8 and 4 examples: the padded member adds none and moves nothing
    want = jax.tree.map(lambda a, b: (2 * a + b) / 3, first, second)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_shuffled_order_is_a_permutation_with_padding_last():
    members = jnp.array([4, 7, 1, -1, -1])
    orders = {
        tuple(np.asarray(shuffle_members(jax.random.key(s), members)).tolist()) for s in range(20)
    }
    assert len(orders) > 1
    for order in orders:
        assert sorted(order[:3]) == [1, 4, 7] and order[3:] == (-1, -1)


def test_bad_order_is_refused():
    with pytest.raises(ValueError, match="fedseq.order"):
        fedseq_round(PARTS, groups=[[0]], superclients_per_round=1, local_steps=1, batch_size=1,
                     order="reverse")  # fmt: skip


def test_label_distributions_and_kl_by_hand():
    labels = np.array([0, 0, 1, 2, 2, 2])
    got = superclients.label_distributions(labels, [np.array([0, 1, 2]), np.array([3, 4, 5]),
                                                    np.array([], int)], 3)  # fmt: skip
    np.testing.assert_allclose(got, [[2 / 3, 1 / 3, 0], [0, 0, 1], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(superclients.kl_to_uniform([[1.0, 0.0], [0.5, 0.5]]), [np.log(2), 0])
    p = np.array([0.7, 0.2, 0.1])
    np.testing.assert_allclose(superclients.kl_to_uniform(p), np.sum(p * np.log(3 * p)))


# Four label-pure clients: 0 and 1 hold class 0, 2 and 3 class 1.
PURE = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])


@pytest.mark.parametrize("grouper", ["greedy_kl", "kmeans"])
def test_dissimilar_clients_are_grouped(grouper):
    groups = superclients.group_clients(PURE, [5, 5, 5, 5], grouper, max_clients=2,
                                        min_examples=1000, seed=0)  # fmt: skip
    assert groups.shape == (2, 2)
    assert sorted(groups.ravel().tolist()) == [0, 1, 2, 3]
    for group in groups:  # one client of each class: pooled data is balanced
        assert sorted(PURE[group].argmax(1).tolist()) == [0, 1]


def test_greedy_kl_picks_the_completing_client():
    dists = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.0, 0.1, 0.9], [0.1, 0.9, 0.0]])
    groups = superclients.group_clients(dists, [10] * 4, "greedy_kl", max_clients=3,
                                        min_examples=10**6, seed=0)  # fmt: skip
    first = groups[0]
    # whoever starts, the KL-to-uniform of the pooled histogram never takes the near-copy of 0
    # when the clients of other classes are left
    assert not ({0, 1} <= set(first[first >= 0].tolist()))


def test_limits_close_superclients():
    counts = np.array([10, 1, 1, 1, 1, 10])
    groups = superclients.group_clients(np.full((6, 2), 0.5), counts, "random", max_clients=3,
                                        min_examples=10, seed=4)  # fmt: skip
    assert sorted(g for g in groups.ravel().tolist() if g >= 0) == list(range(6))
    for group in groups[:-1]:  # all but the last are closed by one of the two limits
        members = group[group >= 0]
        assert len(members) == 3 or counts[members].sum() >= 10
        assert counts[members[:-1]].sum() < 10 and len(members) <= 3  # closed at the first
    assert not np.array_equal(
        groups, superclients.group_clients(np.full((6, 2), 0.5), counts, "random", max_clients=3,
                                           min_examples=10, seed=5))  # fmt: skip


def test_bad_grouper_is_refused():
    with pytest.raises(ValueError, match="fedseq.grouper"):
        superclients.group_clients(PURE, [1] * 4, "alphabetical", max_clients=2, min_examples=1,
                                   seed=0)  # fmt: skip


def test_more_superclients_per_round_than_groups_is_refused():
    from fedjax_sim.config.checks import ConfigError
    from fedjax_sim.experiment.assembly import build_experiment
    from tests.experiment.test_experiment import smoke_config

    config = smoke_config("fedseq_digits", "", clients_per_round=4)  # 6 clients in 3 groups
    with pytest.raises(ConfigError, match="clients_per_round=4 exceeds the 3 superclients"):
        build_experiment(config)
