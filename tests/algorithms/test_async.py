"""Asynchronous SGD against a plain event-driven reference (a heap of arrivals, one job at a
time), the speed models, and one worker (no staleness) against LocalSGD.

Each worker's shard is exactly one batch, so a job of H SGD steps is H full-shard gradient
steps in any batch order: the reference computes it with a plain gradient, independently of
the round's batch plans.
"""

import heapq

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms.async_sgd import async_sgd, staleness_scale, wave_of_arrivals
from fedjax_sim.algorithms.local_sgd import local_sgd
from fedjax_sim.core.speeds import make_job_durations, straggler_workers
from fedjax_sim.core.tasks import cross_entropy
from fedjax_sim.data.client_data import client_data_from_indices
from fedjax_sim.models.model import variables
from tests.linear_workers import LINEAR, PARAMS0, linear_workers

K, B, H, LR = 3, 5, 2, 0.3
DATA, SHARDS, CLIENTS, GRAD = linear_workers(K, B, seed=1)


def reference(events, durations, scale, momentum=0.0, mixing=None):
    """Async SGD one arrival at a time; returns the params and each arrival's (worker, tau).

    ``mixing`` None: the delta rule, x <- x + s(tau) (x_new - x_pulled); else FedAsync's
    (Xie et al. 2019, Algorithm 1), x <- (1 - alpha_t) x + alpha_t x_new with
    alpha_t = mixing * s(tau), tau = server updates since the pull (0 when fresh)."""
    params = PARAMS0
    pulled = [PARAMS0] * K
    pulled_version, jobs = [0] * K, [0] * K
    buffers = [jax.tree.map(jnp.zeros_like, PARAMS0)] * K
    first = np.asarray(durations(jnp.arange(K), jnp.zeros(K, jnp.int32)), np.float64)
    heap = [(first[k], 0.0, k) for k in range(K)]  # (finish, start, worker)
    heapq.heapify(heap)
    log = []
    for version in range(events):  # the server's version before this arrival
        finish, _, k = heapq.heappop(heap)
        local, buf = pulled[k], buffers[k]
        for _ in range(H):
            buf = jax.tree.map(lambda m, g: momentum * m + g, buf, GRAD(local, SHARDS[k]))
            local = jax.tree.map(lambda p, m: p - LR * m, local, buf)
        buffers[k] = buf if momentum else buffers[k]
        tau = version - pulled_version[k]
        s = float(scale(jnp.int32(tau)))
        if mixing is None:
            params = jax.tree.map(lambda x, a, b, s=s: x + s * (a - b), params, local, pulled[k])
        else:
            alpha = mixing * s
            params = jax.tree.map(lambda x, a, t=alpha: (1 - t) * x + t * a, params, local)
        pulled[k], pulled_version[k] = params, version + 1
        jobs[k] += 1
        duration = float(durations(jnp.array([k]), jnp.array([jobs[k]]))[0])
        heapq.heappush(heap, (finish + duration, finish, k))
        log.append((k, tau))
    return params, log


def run_async(rounds, durations, scaling="none", momentum=0.0, keep=False, workers=K, **options):
    algorithm = async_sgd(
        cross_entropy(LINEAR), optax.sgd(LR, momentum=momentum or None), optax.sgd(1.0),
        num_workers=workers, local_steps=H, batch_size=B, durations=durations,
        staleness_scaling=scaling, staleness_exponent=1.0, keep_inner_state=keep, **options,
    )  # fmt: skip
    state = algorithm.init(variables(PARAMS0))
    step = jax.jit(algorithm.round_fn)
    history = []
    for _ in range(rounds):
        state, metrics = step(state, CLIENTS, jax.random.key(5))
        history.append(jax.tree.map(float, metrics))
    return state, history


def assert_trees_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize(
    "speed, rule, momentum",
    [("straggler", "polynomial", 0.0), ("lognormal", "none", 0.9), ("fixed", "none", 0.0)],
)
def test_async_sgd_matches_an_event_driven_reference(speed, rule, momentum):
    durations = make_job_durations(
        speed, num_workers=K, seed=3, sigma=0.8, straggler_fraction=0.34, slowdown=3.0
    )
    state, history = run_async(8, durations, rule, momentum, keep=bool(momentum))
    assert [m["arrivals"] for m in history] == [K] * 8  # waves until K arrivals a round
    arrivals = 8 * K
    params, log = reference(arrivals, durations, staleness_scale(rule, 1.0), momentum)
    assert_trees_close(state.params, params)
    assert int(state.extra["version"]) == arrivals
    assert int(state.clients["jobs"].sum()) == arrivals
    taus = [tau for _, tau in log]
    np.testing.assert_allclose(
        sum(m["staleness"] * m["arrivals"] for m in history), sum(taus), rtol=1e-6
    )
    assert max(m["max_staleness"] for m in history) == max(taus)
    examples = sum(m["train_examples"] for m in history)
    assert examples == arrivals * H * B  # only arrived jobs are counted
    if speed == "fixed":  # every wave is all K workers, each K - 1 updates stale at most
        assert [m["waves"] for m in history] == [1] * 8
        assert taus[:K] == [0, 1, 2] and taus[K : 2 * K] == [2, 2, 2]
    if speed == "straggler":  # the slow worker arrives once per 3 of the others' jobs
        slow = int(straggler_workers(K, 0.34, 3)[0])
        counts = np.bincount([k for k, _ in log], minlength=K)
        assert counts[slow] >= 2 and abs(counts.max() - 3 * counts[slow]) <= 2


@pytest.mark.parametrize("scaling", ["polynomial", "none"])
def test_fedasync_mixing_and_the_delta_rule_match_their_equations(scaling):
    # unequal given speeds: stale arrivals in every round, two rules 0.6 * s apart
    durations = make_job_durations("given", num_workers=K, durations="1,1.7,2.9")
    finals = {}
    for rule, mixing in (("delta", None), ("fedasync", 0.6)):
        options = {"rule": rule} if mixing is None else {"rule": rule, "mixing": mixing}
        state, history = run_async(3, durations, scaling, **options)
        params, log = reference(3 * K, durations, staleness_scale(scaling, 1.0), mixing=mixing)
        assert_trees_close(state.params, params)
        assert max(tau for _, tau in log) >= 2
        finals[rule] = np.asarray(state.params["w"])
    assert np.abs(finals["delta"] - finals["fedasync"]).max() > 0.01
    with pytest.raises(ValueError, match=r"asynchronous.mixing must be in \(0, 1\], got 1.5"):
        run_async(1, durations, rule="fedasync", mixing=1.5)
    with pytest.raises(ValueError, match="asynchronous.rule must be one of"):
        run_async(1, durations, rule="mix")


def test_one_asynchronous_worker_is_local_sgd_with_k_1():
    one = client_data_from_indices(DATA, SHARDS[:1])
    algorithms = [
        async_sgd(
            cross_entropy(LINEAR), optax.sgd(LR), optax.sgd(1.0), num_workers=1,
            local_steps=H, batch_size=2, staleness_scaling="polynomial",
        ),
        local_sgd(
            cross_entropy(LINEAR), optax.sgd(LR), optax.sgd(1.0), num_workers=1,
            local_steps=H, batch_size=2,
        ),
    ]  # fmt: skip
    finals = []
    for algorithm in algorithms:
        state = algorithm.init(variables(PARAMS0))
        for _ in range(5):
            state, metrics = jax.jit(algorithm.round_fn)(state, one, jax.random.key(2))
        finals.append((state.params, float(metrics["train_loss"])))
    for x, y in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1]), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_wave_stops_where_a_worker_would_come_back():
    finish = jnp.array([2.0, 1.0, 5.0, 1.0])
    start = jnp.array([0.0, 0.0, 0.0, -1.0])
    # worker 3 (finish 1, started earlier) before worker 1; both come back at 2.5, so worker 0
    # (finish 2) is in the wave and worker 2 (finish 5) is not.
    order, arrives = wave_of_arrivals(finish, start, finish + jnp.array([9.0, 1.5, 1.0, 1.5]))
    assert order.tolist() == [3, 1, 0, 2]
    assert arrives.tolist() == [True, True, True, False]


def test_speed_models():
    workers, jobs = jnp.arange(8), jnp.arange(8)
    fixed = make_job_durations("fixed", num_workers=8)
    np.testing.assert_array_equal(fixed(workers, jobs), np.ones(8))
    slow = straggler_workers(8, 0.25, seed=1)
    straggler = make_job_durations("straggler", num_workers=8, seed=1, slowdown=5.0)
    expected = np.ones(8)
    expected[slow] = 5.0
    assert len(slow) == 2
    np.testing.assert_array_equal(straggler(workers, jobs), expected)
    lognormal = make_job_durations("lognormal", num_workers=8, seed=0, sigma=0.5)
    many = lognormal(jnp.zeros(20000, jnp.int32), jnp.arange(20000))
    assert abs(float(many.mean()) - 1.0) < 0.02  # mean 1
    assert abs(float(np.log(many).std()) - 0.5) < 0.02
    np.testing.assert_array_equal(lognormal(workers, jobs), lognormal(workers, jobs))
    given = make_job_durations("given", num_workers=4, durations="1, 1,2,4.5")
    np.testing.assert_array_equal(given(jnp.array([3, 0, 2]), jnp.array([0, 7, 1])), [4.5, 1, 2])
    with pytest.raises(ValueError, match="speed.model must be one of"):
        make_job_durations("gamma", num_workers=2)
    for text, message in (
        ("1,2", "speed.durations gives 2 durations for 4 workers"),
        ("1,2,0,1", "speed.durations must be a comma list of positive numbers"),
        ("1,2,x,1", "speed.durations must be a comma list of positive numbers"),
        (None, "speed.durations must be a comma list of positive numbers"),
    ):
        with pytest.raises(ValueError, match=message):
            make_job_durations("given", num_workers=4, durations=text)
