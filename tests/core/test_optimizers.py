"""Client, server and centralized optimizers built by name, checked against hand computation."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.core.optimizers import make_optimizer


def run(tx, params, grads_list):
    """The parameters after applying ``tx`` to each gradient in turn."""
    params = jnp.asarray(params, jnp.float32)
    state = tx.init(params)
    for grads in grads_list:
        updates, state = tx.update(jnp.asarray(grads, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params)


def test_sgd_with_weight_decay_and_momentum_by_hand():
    lr, momentum, decay = 0.1, 0.9, 0.01
    tx = make_optimizer("sgd", lr, momentum=momentum, weight_decay=decay, field="client")
    p0 = np.array([1.0, -2.0, 3.0], np.float32)
    g1, g2 = np.array([0.5, 0.25, -1.0]), np.array([-0.3, 0.8, 0.1])
    state = tx.init(jnp.asarray(p0))
    params = jnp.asarray(p0)
    for grads in (g1, g2):
        updates, state = tx.update(jnp.asarray(grads, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)

    m1 = g1 + decay * p0
    p1 = p0 - lr * m1
    m2 = (g2 + decay * p1) + momentum * m1
    p2 = p1 - lr * m2
    np.testing.assert_allclose(params, p2, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(name="sgdd"),
            "client.optimizer must be one of ['sgd', 'adam', 'adagrad', 'yogi', "
            "'lars', 'lamb', 'optax_lars'], got 'sgdd'",
        ),
        (
            dict(schedule="step"),
            "client.schedule must be one of ['constant', 'cosine', 'warmup_cosine', 'poly', "
            "'warmup_poly'], got 'step'",
        ),
        (dict(learning_rate=0.0), "client.learning_rate must be > 0, got 0.0"),
        (dict(momentum=1.0), "client.momentum must be in [0, 1), got 1.0"),
        (
            dict(name="adam", momentum=0.9),
            "client.momentum applies to sgd, lars, optax_lars only, not 'adam'; set it to 0",
        ),
        (dict(eps=1e-3), "client.eps does not apply to sgd; leave it None"),
        (
            dict(name="adam", eps=0.0),
            "client.eps must be > 0 (or None: the optimizer's default), got 0.0",
        ),
        (dict(nesterov=True), "client.nesterov needs client.momentum > 0"),
        (dict(weight_decay=-1.0), "client.weight_decay must be >= 0, got -1.0"),
        (
            dict(schedule="warmup_cosine", total_steps=10, warmup_steps=10),
            "client.warmup_steps must be in [0, 10) (the schedule's horizon), got 10",
        ),
    ],
    ids=[
        "name",
        "schedule",
        "learning_rate",
        "momentum",
        "momentum-of-adam",
        "eps-of-sgd",
        "zero-eps",
        "nesterov-without-momentum",
        "weight-decay",
        "warmup",
    ],
)
def test_make_optimizer_errors_name_the_field(kwargs, message):
    kwargs = {"name": "sgd", "learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError) as error:
        make_optimizer(field="client", **kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("name", ["lars", "optax_lars"])
@pytest.mark.parametrize("momentum", [0.0, None, 0.5])
def test_lars_uses_the_momentum_it_is_given(momentum, name):
    # LARS (You et al. 2017) without weight decay, where both trust ratios agree: u = -lr *
    # trust * g with the trust ratio 0.001 * ||w|| / ||g||, then heavy-ball momentum on u.
    # momentum=0 is no momentum (it used to become 0.9); None is optax's default, 0.9.
    lr, w0, g1, g2 = 1.0, np.array([3.0, 4.0]), np.array([0.6, 0.8]), np.array([0.0, 2.0])
    u1 = -lr * (0.001 * 5.0 / 1.0) * g1
    w1 = w0 + u1
    u2 = -lr * (0.001 * np.linalg.norm(w1) / 2.0) * g2
    beta = 0.9 if momentum is None else momentum
    want = w1 + u2 + beta * u1
    tx = make_optimizer(name, lr, momentum=momentum, exclude_bias_and_norm=False)  # w is 1-D
    got = run(tx, w0, [g1, g2])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_adam_eps_is_the_one_given():
    # Adam's first step is -lr * g / (|g| + eps) (bias-corrected moments m = g, v = g^2); a
    # server eps of 1e-3 (FedAdam's tau) halves the step of a gradient of 1e-3.
    lr, g = 0.1, np.array([1e-3, -2e-3])
    got = run(make_optimizer("adam", lr, eps=1e-3), np.zeros(2), [g])
    np.testing.assert_allclose(got, -lr * g / (np.abs(g) + 1e-3), rtol=1e-5)
    default = run(make_optimizer("adam", lr), np.zeros(2), [g])
    np.testing.assert_allclose(default, -lr * g / (np.abs(g) + 1e-8), rtol=1e-5)


def test_schedule_horizon_and_warmup_by_hand():
    # warmup_cosine over 10 steps with 2 of warmup: lr_t = t/2 * lr for t < 2, then
    # lr * (1 + cos(pi * min(t - 2, 8) / 8)) / 2; plain SGD on a gradient of 1 sums the rates.
    lr = 0.5
    tx = make_optimizer("sgd", lr, schedule="warmup_cosine", total_steps=10, warmup_steps=2)
    rates = [t / 2 * lr for t in range(2)] + [
        lr * (1 + np.cos(np.pi * min(t - 2, 8) / 8)) / 2 for t in range(2, 12)
    ]
    got = run(tx, np.zeros(1), [np.ones(1)] * 12)
    np.testing.assert_allclose(got, -np.sum(rates), rtol=1e-5)
    assert rates[-2:] == [0.0, 0.0]  # at and past the horizon the rate is 0
