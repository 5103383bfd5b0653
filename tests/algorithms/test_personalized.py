"""Personalization on hand-made 2-client cases: which parameters are shared, which stay local,
which are evaluated, each against plain gradient steps computed one client at a time.

The clients' shards are exactly one batch each (tests/linear_workers.py), so a local step's
gradient is the full-shard gradient whatever order the sampler reads the shard in.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.algorithms import personalized
from fedjax_sim.core.finetune import client_variables, make_finetuner
from fedjax_sim.core.round import federated_round
from fedjax_sim.core.selection import uniform
from fedjax_sim.core.tasks import Task, cross_entropy
from fedjax_sim.models.model import stateless, variables
from tests.linear_workers import linear_workers

LR, HIDDEN = 0.5, 4


def _init(rng):
    k1, k2 = jax.random.split(rng)
    return {
        "body": {"w": 0.5 * jax.random.normal(k1, (3, HIDDEN)), "b": jnp.zeros(HIDDEN)},
        "head": {"w": 0.5 * jax.random.normal(k2, (HIDDEN, 2)), "b": jnp.zeros(2)},
    }


def _apply(p, x):
    return jnp.tanh(x @ p["body"]["w"] + p["body"]["b"]) @ p["head"]["w"] + p["head"]["b"]


TASK = Task(stateless(_init, _apply, (3,), "two_layer"), lambda x, rng: x, 2)
OBJECTIVE = cross_entropy(TASK)
PARAMS0 = _init(jax.random.key(3))
WORKERS = linear_workers(2, 4, seed=7)
HEAD = personalized.head_predicate(PARAMS0)  # "auto": the last layer, "head"


def _grad(params, shard):
    x = jnp.asarray(WORKERS.data["x"])[shard]
    y = jnp.asarray(WORKERS.data["y"])[shard]

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(_apply(p, x), y).mean()

    return jax.grad(loss)(params)


def _sgd(params, grads, scale=1.0):
    return jax.tree.map(lambda p, g: p - LR * scale * g, params, grads)


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def _run(parts, rounds=1, steps=1):
    round_fn = jax.jit(federated_round(parts, sampler=uniform(2), local_steps=steps,
                                       batch_size=4, weighting="uniform"))  # fmt: skip
    state = parts.init(variables(PARAMS0))
    for r in range(rounds):
        state, _ = round_fn(state, WORKERS.clients, jax.random.key(r))
    return state


def _split(method, **options):
    return personalized.split_parts(method, OBJECTIVE, optax.sgd(LR), optax.sgd(1.0), head=HEAD,
                                    num_clients=2, **options)  # fmt: skip


def _mean(a, b):
    return jax.tree.map(lambda x, y: (x + y) / 2, a, b)


def test_head_predicate_names_the_last_layer_or_the_given_ones():
    assert HEAD(("head", "w")) and not HEAD(("body", "w"))
    assert personalized.head_predicate(PARAMS0, "body")(("body", "b"))
    with pytest.raises(ValueError, match="not among the model's layers"):
        personalized.head_predicate(PARAMS0, "Dense_9")
    with pytest.raises(ValueError, match="body would be empty"):
        personalized.head_predicate(PARAMS0, "body,head")


@pytest.mark.parametrize("method, local", [("fedper", "head"), ("lg_fedavg", "body")])
def test_fedper_and_lg_fedavg_average_one_part_and_keep_the_other(method, local):
    parts = _split(method)
    state = _run(parts)
    trained = [_sgd(PARAMS0, _grad(PARAMS0, s)) for s in WORKERS.shards]
    shared = "body" if local == "head" else "head"
    _close(state.params[shared], _mean(trained[0][shared], trained[1][shared]))
    _close(state.params[local], PARAMS0[local])  # never averaged: the server's stays initial
    for k in range(2):
        own = parts.personal(state, k)["params"]
        _close(own[local], trained[k][local])  # the client's own trained part
        _close(own[shared], state.params[shared])  # with the global shared part
    # round 2 starts from each client's own local part, not the server's
    state = _run(parts, rounds=2)
    for k in range(2):
        start = {shared: _mean(trained[0][shared], trained[1][shared]), local: trained[k][local]}
        again = _sgd(start, _grad(start, WORKERS.shards[k]))
        _close(parts.personal(state, k)["params"][local], again[local])


def test_fedrep_trains_the_head_first_then_the_body():
    parts = _split("fedrep", head_steps=1)
    state = _run(parts, steps=2)
    for k, shard in enumerate(WORKERS.shards):
        g = _grad(PARAMS0, shard)
        step1 = {"body": PARAMS0["body"], "head": _sgd(PARAMS0["head"], g["head"])}
        g = _grad(step1, shard)
        step2 = {"body": _sgd(step1["body"], g["body"]), "head": step1["head"]}
        _close(parts.personal(state, k)["params"]["head"], step2["head"])
        if k == 0:
            bodies = [step2["body"]]
        else:
            _close(state.params["body"], _mean(bodies[0], step2["body"]))


def _linear_init(rng):
    k1, k2 = jax.random.split(rng)
    return {"body": {"w": 0.5 * jax.random.normal(k1, (3, HIDDEN))},
            "head": {"w": 0.5 * jax.random.normal(k2, (HIDDEN, 2))}}  # fmt: skip


LINEAR_TASK = Task(
    stateless(_linear_init, lambda p, x: x @ p["body"]["w"] @ p["head"]["w"], (3,), "linear2"),
    lambda x, rng: x,
    2,
)


def _numpy_gradients(body, head, x, y):
    """The mean softmax cross-entropy's gradients for ``logits = x body head``, by hand."""
    logits = x @ body @ head
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    d_logits = p / len(y)
    return x.T @ (d_logits @ head.T), (x @ body).T @ d_logits


def _fedrep_client(body, head, buffers, x, y, *, tau_h, tau, lr, beta):
    """Collins et al. 2021, Algorithm 1's client update with heavy-ball SGD (m = beta m + g,
    w -= lr m): tau_h steps on the head with the body fixed, then tau - tau_h steps on the body
    with the head fixed; ``buffers = (m_head, m_body)``, each part's own."""
    m_head, m_body = buffers
    for _ in range(tau_h):
        m_head = beta * m_head + _numpy_gradients(body, head, x, y)[1]
        head = head - lr * m_head
    for _ in range(tau - tau_h):
        m_body = beta * m_body + _numpy_gradients(body, head, x, y)[0]
        body = body - lr * m_body
    return body, head, (m_head, m_body)


@pytest.mark.parametrize("optimizer_state", ["reset", "keep"])
def test_fedrep_with_momentum_follows_the_papers_alternating_schedule(optimizer_state):
    lr, beta, tau, tau_h = 0.1, 0.9, 4, 2
    params0 = _linear_init(jax.random.key(5))
    parts = personalized.split_parts(
        "fedrep", cross_entropy(LINEAR_TASK), optax.sgd(lr, momentum=beta), optax.sgd(1.0),
        head=HEAD, head_steps=tau_h, num_clients=2, client_optimizer_state=optimizer_state,
    )  # fmt: skip
    round_fn = jax.jit(federated_round(parts, sampler=uniform(2), local_steps=tau, batch_size=4,
                                       weighting="uniform"))  # fmt: skip
    state = parts.init(variables(params0))
    body = np.asarray(params0["body"]["w"], np.float64)
    heads = [np.asarray(params0["head"]["w"], np.float64)] * 2
    zero = (np.zeros_like(heads[0]), np.zeros_like(body))
    buffers = [zero, zero]
    for r in range(3):
        state, _ = round_fn(state, WORKERS.clients, jax.random.key(r))
        bodies = []
        for k, shard in enumerate(WORKERS.shards):
            x = WORKERS.data["x"][shard].astype(np.float64)
            start = buffers[k] if optimizer_state == "keep" else zero
            b, heads[k], buffers[k] = _fedrep_client(body, heads[k], start, x,
                                                     WORKERS.data["y"][shard], tau_h=tau_h,
                                                     tau=tau, lr=lr, beta=beta)  # fmt: skip
            bodies.append(b)
            own = parts.personal(state, k)["params"]["head"]["w"]
            np.testing.assert_allclose(own, heads[k], rtol=1e-4, atol=1e-6)
        body = np.mean(bodies, axis=0)
        np.testing.assert_allclose(state.params["body"]["w"], body, rtol=1e-4, atol=1e-6)


def test_fedbabu_freezes_the_head_and_fine_tunes_at_evaluation():
    parts = _split("fedbabu")
    assert parts.personal is None  # its personal models are the fine-tuned ones
    state = _run(parts)
    trained = [_sgd(PARAMS0, _grad(PARAMS0, s)) for s in WORKERS.shards]
    _close(state.params["head"], PARAMS0["head"])
    _close(state.params["body"], _mean(trained[0]["body"], trained[1]["body"]))
    start_of = lambda s, k: {"params": s.params, "state": s.model_state}  # noqa: E731
    finetune = make_finetuner(TASK, optax.sgd(LR), start_of, steps=2, batch_size=4)
    tuned = finetune(state, WORKERS.clients, jax.random.key(5))
    for k, shard in enumerate(WORKERS.shards):
        one = _sgd(state.params, _grad(state.params, shard))  # the whole model fine-tuned
        two = _sgd(one, _grad(one, shard))
        _close(client_variables(tuned, k)["params"], two)


def _two_model(method, **options):
    return personalized.two_model_parts(method, OBJECTIVE, optax.sgd(LR), optax.sgd(1.0),
                                        num_clients=2, **options)  # fmt: skip


def test_ditto_personal_models_follow_the_proximal_objective():
    lam = 0.7
    parts = _two_model("ditto", lam=lam)
    state = _run(parts, rounds=2)
    w, v = PARAMS0, [PARAMS0, PARAMS0]
    for _ in range(2):
        new_w, new_v = [], []
        for k, shard in enumerate(WORKERS.shards):
            new_w.append(_sgd(w, _grad(w, shard)))
            prox = jax.tree.map(lambda a, b: lam * (a - b), v[k], w)
            new_v.append(_sgd(v[k], jax.tree.map(jnp.add, _grad(v[k], shard), prox)))
        w, v = _mean(*new_w), new_v
    _close(state.params, w)  # the global model is FedAvg's
    for k in range(2):
        _close(parts.personal(state, k)["params"], v[k])


def test_apfl_mixes_the_personal_and_global_models():
    alpha = 0.3
    parts = _two_model("apfl", alpha=alpha)
    state = _run(parts, rounds=2)
    w, v = PARAMS0, [PARAMS0, PARAMS0]
    mix = lambda a, b: jax.tree.map(lambda x, y: alpha * x + (1 - alpha) * y, a, b)  # noqa: E731
    for _ in range(2):
        new_w, new_v = [], []
        for k, shard in enumerate(WORKERS.shards):
            new_w.append(_sgd(w, _grad(w, shard)))
            new_v.append(_sgd(v[k], _grad(mix(v[k], w), shard), scale=alpha))  # chain rule
        w, v = _mean(*new_w), new_v
    _close(state.params, w)
    for k in range(2):
        _close(parts.personal(state, k)["params"], mix(v[k], w))
