"""Gossip SGD and A2CiD2 (Nabli et al. 2023) against a plain per-worker event loop with the
ODE's flow from `jax.scipy.linalg.expm`, the paper's constants on a 4-cycle by hand, the
matchings, and the invariants of the averaging."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.gossip import (
    acid_constants,
    gossip_sgd,
    random_matching,
    ring_matchings,
)
from fedjax_sim.core.speeds import make_job_durations, straggler_workers
from fedjax_sim.core.tasks import cross_entropy
from fedjax_sim.models.model import variables
from tests.linear_workers import CLASSES, LINEAR, PARAMS0, D, linear_workers

K, B, H, R, LR, MOMENTUM = 4, 5, 3, 2, 0.3, 0.5
_, SHARDS, CLIENTS, GRAD = linear_workers(K, B, seed=2)


def test_acid_constants_on_a_4_cycle_by_hand():
    # L = I - W has eigenvalues 0, 1, 1, 2: chi_1 = 1; each edge's resistance is 3/4 (a unit
    # 4-cycle's 3/4, doubled by L = Laplacian / 2, halved by the definition): chi_2 = 3/4.
    eta, beta_tilde = acid_constants("ring", 4, 1)
    np.testing.assert_allclose([eta, beta_tilde], [0.5 / np.sqrt(0.75), 0.5 / np.sqrt(0.75)])
    eta_2, beta_2 = acid_constants("ring", 4, 2)  # L doubles: chi_1 and chi_2 halve
    np.testing.assert_allclose([eta_2, beta_2], [2 * eta, beta_tilde])


def test_matchings():
    np.testing.assert_array_equal(ring_matchings(4), [[1, 0, 3, 2], [3, 2, 1, 0]])
    np.testing.assert_array_equal(ring_matchings(5), [[1, 0, 3, 2, 4], [0, 2, 1, 4, 3]])
    partners = np.asarray(random_matching(jax.random.key(0), 6))
    np.testing.assert_array_equal(partners[partners], np.arange(6))  # an involution
    assert not np.any(partners == np.arange(6))  # everyone matched


def reference(rounds, accelerate, slowdown=None):
    """Each worker one at a time, events in the module docstring's order; ``slowdown[k]``:
    worker k's step takes that many ticks."""
    slowdown = slowdown or [1] * K
    due = [0] * K
    eta, beta_tilde = acid_constants("ring", K, R) if accelerate else (0.0, 0.0)
    flow = np.asarray(jax.scipy.linalg.expm(eta / (R + 1) * jnp.array([[-1.0, 1.0], [1.0, -1.0]])))
    x = [PARAMS0] * K
    tilde = [PARAMS0] * K
    buffers = [jax.tree.map(jnp.zeros_like, PARAMS0)] * K
    partners = ring_matchings(K)

    def mix(k):
        a, b = flow[0]
        x[k], tilde[k] = (
            jax.tree.map(lambda u, v: a * u + b * v, x[k], tilde[k]),
            jax.tree.map(lambda u, v: b * u + a * v, x[k], tilde[k]),
        )

    event = 0
    for tick in range(rounds * H):
        for k in range(K):
            mix(k)
            if due[k] > tick:
                continue
            due[k] += slowdown[k]
            grad = GRAD(x[k], SHARDS[k])
            buffers[k] = jax.tree.map(lambda m, g: MOMENTUM * m + g, buffers[k], grad)
            x[k] = jax.tree.map(lambda p, m: p - LR * m, x[k], buffers[k])
            tilde[k] = jax.tree.map(lambda p, m: p - LR * m, tilde[k], buffers[k])
        for _ in range(R):
            for k in range(K):  # the pair exchanges its models at the event's time
                mix(k)
            before = list(x)
            for k in range(K):
                j = partners[event % 2][k]
                tilde[k] = jax.tree.map(
                    lambda t, u, v: t + beta_tilde * (v - u), tilde[k], before[k], before[j]
                )
                x[k] = jax.tree.map(lambda u, v: 0.5 * (u + v), before[k], before[j])
            event += 1
    return x, tilde


@pytest.mark.parametrize("accelerate, straggler", [(True, False), (False, False), (True, True)])
def test_gossip_matches_a_per_worker_event_loop(accelerate, straggler):
    slowdown = [1] * K
    durations = None
    if straggler:  # one worker (by the seed) takes 2 ticks a step: it steps on even ticks
        durations = make_job_durations(
            "straggler", num_workers=K, seed=1, straggler_fraction=0.25, slowdown=2.0
        )
        slowdown[int(straggler_workers(K, 0.25, 1)[0])] = 2
    algorithm = gossip_sgd(
        cross_entropy(LINEAR), optax.sgd(LR, momentum=MOMENTUM), num_workers=K, local_steps=H,
        batch_size=B, graph="ring", communications=R, accelerate=accelerate,
        durations=durations,
    )  # fmt: skip
    state = algorithm.init(variables(PARAMS0))
    examples = 0.0
    for _ in range(2):
        state, metrics = jax.jit(algorithm.round_fn)(state, CLIENTS, jax.random.key(1))
        examples += float(metrics["train_examples"])
    x, tilde = reference(2, accelerate, slowdown)
    stack = lambda trees: jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)  # noqa: E731
    for got, want in (
        (state.clients["params"], stack(x)),
        (state.params, jax.tree.map(lambda a: a.mean(0), stack(x))),
    ):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    if accelerate:
        for a, b in zip(
            jax.tree.leaves(state.clients["tilde"]), jax.tree.leaves(stack(tilde)), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    assert float(metrics["syncs"]) == H * R
    steps = [sum(1 for t in range(2 * H) if t % s == 0) for s in slowdown]
    assert examples == sum(steps) * B  # only the steps taken count
    np.testing.assert_array_equal(state.clients["steps"], steps)


@pytest.mark.parametrize("graph", ["ring", "random_pairs"])
def test_averaging_keeps_its_invariant_without_gradients(graph):
    # lr 0: plain gossip keeps mean_k x_k; A2CiD2 keeps mean_k (x_k + x~_k), and both
    # shrink the workers' spread
    for accelerate in (False, True):
        algorithm = gossip_sgd(
            cross_entropy(LINEAR), optax.sgd(0.0), num_workers=K, local_steps=2, batch_size=B,
            graph=graph, communications=1, accelerate=accelerate,
        )  # fmt: skip
        state = algorithm.init(variables(PARAMS0))
        spread = jax.random.normal(jax.random.key(4), (K, D, CLASSES))
        clients = dict(state.clients)
        clients["params"] = {"w": clients["params"]["w"] + spread, "b": clients["params"]["b"]}
        clients["tilde"] = clients["params"]
        state = state.replace(clients=clients)

        def invariant(c, accelerate=accelerate):
            return (c["params"]["w"] + accelerate * c["tilde"]["w"]).mean(0)

        before = invariant(state.clients)
        state, metrics = jax.jit(algorithm.round_fn)(state, CLIENTS, jax.random.key(1))
        np.testing.assert_allclose(invariant(state.clients), before, rtol=1e-5, atol=1e-6)
        initial_consensus = float(jnp.sum(jnp.square(spread - spread.mean(0)))) / K
        assert float(metrics["consensus"]) < initial_consensus
