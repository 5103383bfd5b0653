"""The FedOpt server optimizers exactly as Reddi et al. 2021 ("Adaptive Federated Optimization",
Algorithm 2), as optax transformations, and `server_optimizer`, which builds any server
optimizer from the ``server.*`` fields.

Algorithm 2, with ``Delta_t`` the aggregated client delta of round t:

    m_t = b1 m_{t-1} + (1 - b1) Delta_t                          (m_{-1} = 0)
    v_t = v_{t-1} + Delta_t^2                                    FedAdagrad
    v_t = b2 v_{t-1} + (1 - b2) Delta_t^2                        FedAdam
    v_t = v_{t-1} - (1 - b2) Delta_t^2 sign(v_{t-1} - Delta_t^2) FedYogi
    x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau)

with ``v_{-1}`` given (the paper asks ``v_{-1} >= tau^2``; the default here is ``tau^2``) and
NO bias correction. optax's ``adam``, ``yogi`` and ``adagrad`` differ: adam and yogi
bias-correct both moments (yogi also starts m at its accumulator), adam adds eps to the
bias-corrected root, adagrad divides by ``sqrt(v + eps)``. They stay available on the server as
``optax_adam``, ``optax_yogi`` and ``optax_adagrad``.

Like every optax optimizer these take a gradient: the server feeds them the NEGATED aggregated
delta, ``g_t = -Delta_t`` (``Delta_t^2`` and ``sign`` are unchanged by the sign, and the
returned update ``-eta m(g) / (sqrt(v) + tau)`` is ``+eta m(Delta) / (sqrt(v) + tau)``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.core.optimizers import make_optimizer

FEDOPT_METHODS = ("adam", "yogi", "adagrad")
OPTAX_SERVER_OPTIMIZERS = ("optax_adam", "optax_yogi", "optax_adagrad")
SERVER_OPTIMIZERS = ("sgd", *FEDOPT_METHODS, *OPTAX_SERVER_OPTIMIZERS, "lars", "optax_lars", "lamb")
DEFAULT_TAU = 1e-3  # the paper's recommended adaptivity (its experiments tune tau in 1e-1..1e-5)
DEFAULT_B1, DEFAULT_B2 = 0.9, 0.99  # the paper's experiments

# The server.* fields each server optimizer reads (others given a value are refused).
_FIELDS = {
    "sgd": {"momentum", "nesterov"},
    "adam": {"b1", "b2", "eps", "initial_accumulator"},
    "yogi": {"b1", "b2", "eps", "initial_accumulator"},
    "adagrad": {"b1", "eps", "initial_accumulator"},
    "optax_adam": {"b1", "b2", "eps"},
    "optax_yogi": {"b1", "b2", "eps", "initial_accumulator"},
    "optax_adagrad": {"eps", "initial_accumulator"},
    "lars": {"momentum", "nesterov", "eps"},
    "optax_lars": {"momentum", "nesterov", "eps"},
    "lamb": {"b1", "b2", "eps"},
}


class ScaleByFedOptState(NamedTuple):
    """``mu``: the first moment m_{t-1}; ``nu``: the second moment v_{t-1}."""

    mu: optax.Updates
    nu: optax.Updates


def _second_moment(method: str, v, g, b2):
    g2 = jnp.square(g)
    if method == "adagrad":
        return v + g2
    if method == "adam":
        return b2 * v + (1.0 - b2) * g2
    return v - (1.0 - b2) * g2 * jnp.sign(v - g2)


def scale_by_fedopt(
    method: str,
    b1: float = DEFAULT_B1,
    b2: float = DEFAULT_B2,
    tau: float = DEFAULT_TAU,
    initial_accumulator: float | None = None,
) -> optax.GradientTransformation:
    """Algorithm 2's direction ``m_t / (sqrt(v_t) + tau)`` (the module docstring's equations).

    Args:
      method: ``"adam"``, ``"yogi"`` or ``"adagrad"`` (`FEDOPT_METHODS`): v_t's rule.
      b1: the first moment's decay (0: no momentum); every method has it.
      b2: the second moment's decay of adam and yogi (adagrad ignores it).
      tau: the adaptivity, added to ``sqrt(v_t)``.
      initial_accumulator: ``v_{-1}``; None is ``tau ** 2``.

    Returns:
      A transformation whose update of gradient ``g`` is ``m_t / (sqrt(v_t) + tau)`` with the
      moments of ``g``; hyper-parameters may be traced (`optax.inject_hyperparams`).
    """
    if method not in FEDOPT_METHODS:
        raise ValueError(f"method must be one of {list(FEDOPT_METHODS)}, got {method!r}")

    def init_fn(params):
        start = tau**2 if initial_accumulator is None else initial_accumulator
        mu = jax.tree.map(jnp.zeros_like, params)
        nu = jax.tree.map(lambda p: jnp.full_like(p, start), params)
        return ScaleByFedOptState(mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: _second_moment(method, v, g, b2), state.nu, updates)
        direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + tau), mu, nu)
        return direction, ScaleByFedOptState(mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def fedadam(learning_rate, b1=DEFAULT_B1, b2=DEFAULT_B2, tau=DEFAULT_TAU,
            initial_accumulator=None) -> optax.GradientTransformation:  # fmt: skip
    """FedAdam's server step (Algorithm 2), on the negated aggregated delta."""
    return optax.chain(
        scale_by_fedopt("adam", b1, b2, tau, initial_accumulator),
        optax.scale_by_learning_rate(learning_rate),
    )


def fedyogi(learning_rate, b1=DEFAULT_B1, b2=DEFAULT_B2, tau=DEFAULT_TAU,
            initial_accumulator=None) -> optax.GradientTransformation:  # fmt: skip
    """FedYogi's server step (Algorithm 2), on the negated aggregated delta."""
    return optax.chain(
        scale_by_fedopt("yogi", b1, b2, tau, initial_accumulator),
        optax.scale_by_learning_rate(learning_rate),
    )


def fedadagrad(learning_rate, b1=DEFAULT_B1, tau=DEFAULT_TAU,
               initial_accumulator=None) -> optax.GradientTransformation:  # fmt: skip
    """FedAdagrad's server step (Algorithm 2; ``b1 = 0`` drops its momentum)."""
    return optax.chain(
        scale_by_fedopt("adagrad", b1, 0.0, tau, initial_accumulator),
        optax.scale_by_learning_rate(learning_rate),
    )


def _refuse_unused(name: str, fields: dict, field: str) -> None:
    unused = sorted(key for key, value in fields.items()
                    if value not in (None, False, 0) and key not in _FIELDS[name])  # fmt: skip
    if unused:
        names = ", ".join(f"{field}.{key}" for key in unused)
        raise ValueError(
            f"{names} does nothing for {field}.optimizer={name!r} (it reads "
            f"{', '.join(sorted(_FIELDS[name]))}); leave it unset"
        )


def server_optimizer(
    name: str,
    learning_rate,
    *,
    b1: float | None = None,
    b2: float | None = None,
    eps: float | None = None,
    initial_accumulator: float | None = None,
    momentum: float | None = None,
    nesterov: bool = False,
    schedule: str = "constant",
    total_steps: int = 1,
    warmup_steps: int = 0,
    field: str = "server",
) -> optax.GradientTransformation:
    """The server (or outer) optimizer ``server.optimizer=name`` with the ``server.*`` fields.

    It takes the NEGATED aggregated client delta as its gradient and returns the server's
    parameter update: ``optax.chain(aggregator, optax.scale(-1), server_optimizer(...))`` is a
    whole server step.

    Args:
      name: one of `SERVER_OPTIMIZERS`: ``sgd`` (FedAvg at lr 1; ``momentum``: FedAvgM; with
        ``nesterov``: DiLoCo's outer step), ``adam`` / ``yogi`` / ``adagrad`` (FedAdam, FedYogi,
        FedAdagrad: Algorithm 2, `scale_by_fedopt`), ``optax_adam`` / ``optax_yogi`` /
        ``optax_adagrad`` (optax's own, bias-corrected or eps inside the root: not Algorithm 2),
        ``lars`` (You et al. 2017), ``optax_lars``, ``lamb`` (`fedjax_sim.core.optimizers`).
      learning_rate: eta (the peak of ``schedule``); may be traced.
      b1, b2: moment decays; None is `DEFAULT_B1`, `DEFAULT_B2`.
      eps: Algorithm 2's tau for adam/yogi/adagrad (None: `DEFAULT_TAU`); optax's eps for the
        others (None: `DEFAULT_TAU` for the optax_* ones too, their earlier default here).
      initial_accumulator: v_{-1}; None is tau^2 for Algorithm 2, optax's default otherwise.
      momentum, nesterov: heavy-ball (Nesterov) momentum of sgd and lars.
      schedule, total_steps, warmup_steps: `fedjax_sim.core.optimizers.make_schedule` over rounds.
      field: the config block named in errors.

    Raises:
      ValueError: an unknown name, a value out of range, or a field that ``name`` does not
        read set to a value (one line naming the field).

    Example:
      >>> tx = server_optimizer("adam", 0.01, eps=1e-3)   # FedAdam, Reddi et al.'s tau
    """
    if name not in SERVER_OPTIMIZERS:
        raise ValueError(
            f"{field}.optimizer must be one of {list(SERVER_OPTIMIZERS)}, got {name!r}"
        )
    fields = {"b1": b1, "b2": b2, "eps": eps, "initial_accumulator": initial_accumulator,
              "momentum": momentum, "nesterov": nesterov}  # fmt: skip
    _refuse_unused(name, fields, field)
    adaptive = name in FEDOPT_METHODS or name in OPTAX_SERVER_OPTIMIZERS or name == "lamb"
    options = {
        "b1": DEFAULT_B1 if b1 is None and "b1" in _FIELDS[name] else b1,
        "b2": DEFAULT_B2 if b2 is None and "b2" in _FIELDS[name] else b2,
        "eps": DEFAULT_TAU if eps is None and adaptive else eps,
        "initial_accumulator": initial_accumulator,
    }
    schedule_args = {"schedule": schedule, "total_steps": total_steps,
                     "warmup_steps": warmup_steps, "field": field}  # fmt: skip
    if name not in FEDOPT_METHODS:
        if name in OPTAX_SERVER_OPTIMIZERS:  # make_optimizer's adam, yogi, adagrad are optax's
            name = name.removeprefix("optax_")
        return make_optimizer(name, learning_rate, momentum=momentum, nesterov=nesterov,
                              **options, **schedule_args)  # fmt: skip
    _check_fedopt(options, field)
    # make_optimizer checks the learning rate and builds the schedule; sgd's update is -lr g.
    scale = make_optimizer("sgd", learning_rate, **schedule_args)
    tau, start = options["eps"], options["initial_accumulator"]
    return optax.chain(
        scale_by_fedopt(name, options["b1"], options["b2"] or 0.0, tau, start), scale
    )


def _check_fedopt(options: dict, field: str) -> None:
    for moment in ("b1", "b2"):
        value = options[moment]
        if value is not None and not 0 <= value < 1:
            raise ValueError(f"{field}.{moment} must be in [0, 1), got {value}")
    if not options["eps"] > 0:
        raise ValueError(f"{field}.eps (Algorithm 2's tau) must be > 0, got {options['eps']}")
    start = options["initial_accumulator"]
    if start is not None and not start >= 0:
        raise ValueError(f"{field}.initial_accumulator must be >= 0, got {start}")
