"""Checkers of single config fields and the optimizer blocks, shared by the algorithms' registry
entries and `fedjax_sim.config.checks`.

Every checker raises `ConfigError` with one line naming the field and the value it refused; the
tests match those lines, so their wording is part of the contract.
"""

from __future__ import annotations

import ml_collections

from fedjax_sim.core.fedopt import SERVER_OPTIMIZERS, server_optimizer
from fedjax_sim.core.optimizers import OPTIMIZERS, make_optimizer


class ConfigError(ValueError):
    """A config field has a value outside what it allows; the message names both."""


def require(ok: bool, message: str):
    """Raises `ConfigError` with ``message`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def one_of(field: str, value, allowed):
    """Raises `ConfigError` unless ``value`` is in ``allowed`` (listed in the message)."""
    require(value in allowed, f"{field} must be one of {list(allowed)}, got {value!r}")


def integer(field: str, value, minimum: int = 1):
    """Raises `ConfigError` unless ``value`` is an integer (not a bool) >= ``minimum``."""
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{field} must be an integer >= {minimum}, got {value!r}",
    )


def number(field: str, value, minimum: float = 0.0, *, strict: bool = False):
    """Raises `ConfigError` unless ``value`` is a number (not a bool) >= ``minimum`` (``>`` when
    ``strict``)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_number and (value > minimum if strict else value >= minimum)
    require(ok, f"{field} must be a number {'>' if strict else '>='} {minimum:g}, got {value!r}")


def optimizer_arguments(config: ml_collections.ConfigDict, field: str) -> tuple[str, float, dict]:
    """``(name, learning_rate, options)`` from the config's optimizer block ``field``:
    ``"optimizer"`` (a centralized run) and ``"client"`` for `make_optimizer`, ``"server"`` for
    `fedjax_sim.core.fedopt.server_optimizer` (`build_optimizer` calls the right one), so that what
    `check_optimizer` builds to check is what the registry's builders build to run.

    The centralized learning rate is the block's own, before ``optimizer.lr_scaling``
    (`fedjax_sim.core.optimizers.scaled_learning_rate`, positive exactly when it is).
    """
    block = config[field]
    options = {"momentum": block.momentum, "eps": block.eps, "field": field}
    if field == "optimizer":
        options.update(
            weight_decay=block.weight_decay,
            schedule=block.schedule,
            total_steps=block.schedule_steps or config.rounds,
            warmup_steps=block.warmup_steps,
            power=block.decay_power,
            exclude_bias_and_norm=block.exclude_bias_and_norm,
        )
        return block.name, block.learning_rate, options
    if field == "client":
        options.update(b1=block.b1, b2=block.b2)
    if field == "server":
        options.update(
            b1=block.b1,
            b2=block.b2,
            initial_accumulator=block.initial_accumulator,
            schedule=block.schedule,
            total_steps=config.rounds,
            warmup_steps=block.warmup_steps,
            nesterov=block.nesterov,
        )
    else:
        options.update(weight_decay=block.weight_decay, b1=block.b1, b2=block.b2)
    return block.optimizer, block.learning_rate, options


def build_optimizer(config: ml_collections.ConfigDict, field: str):
    """The optax optimizer of block ``field`` (`optimizer_arguments`), unscaled learning rate."""
    name, learning_rate, options = optimizer_arguments(config, field)
    build = server_optimizer if field == "server" else make_optimizer
    return build(name, learning_rate, **options)


def check_optimizer(config: ml_collections.ConfigDict, field: str):
    """An optimizer block, checked by building it (the builders name the bad field)."""
    name = config[field]["name" if field == "optimizer" else "optimizer"]
    allowed = SERVER_OPTIMIZERS if field == "server" else OPTIMIZERS
    one_of(f"{field}.{'name' if field == 'optimizer' else 'optimizer'}", name, allowed)
    try:
        build_optimizer(config, field)
    except ValueError as error:
        raise ConfigError(str(error)) from error
