"""Checks a config before anything is built, so bad values fail fast with one clear line."""

from __future__ import annotations

import ml_collections

from fedjax_sim.engine import CLIENT_AXIS_MODES
from fedjax_sim.models.cnn import CONV_IMPLEMENTATIONS


class ConfigError(ValueError):
    """A config field has a value outside what it allows; the message names both."""


_ALGORITHMS = ("fedavg", "centralized")
_DATASETS = {"shakespeare": "lstm", "cifar100": "cnn"}
_PARTITIONS = {"shakespeare": ("natural", "iid"), "cifar100": ("iid", "dirichlet", "shards")}
_CIFAR_SOURCES = ("auto", "python", "binary", "tfds", "synthetic")


def _require(ok: bool, message: str):
    if not ok:
        raise ConfigError(message)


def _one_of(field: str, value, allowed):
    _require(value in allowed, f"{field} must be one of {list(allowed)}, got {value!r}")


def _positive_int(field: str, value, minimum: int = 1):
    _require(
        isinstance(value, int) and value >= minimum,
        f"{field} must be an integer >= {minimum}, got {value!r}",
    )


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises `ConfigError` naming the first field whose value is not allowed."""
    _one_of("algorithm", config.algorithm, _ALGORITHMS)
    _positive_int("rounds", config.rounds)
    _positive_int("eval_every", config.eval_every, 0)
    _positive_int("checkpoint_every", config.checkpoint_every, 0)
    _positive_int("seed", config.seed, 0)
    data = config.data
    _one_of("data.name", data.name, tuple(_DATASETS))
    _one_of("model.name", config.model.name, ("cnn", "lstm"))
    _one_of("model.conv", config.model.conv, CONV_IMPLEMENTATIONS)
    _require(
        config.model.name == _DATASETS[data.name],
        f"model.name must be {_DATASETS[data.name]!r} for data.name={data.name!r}, "
        f"got {config.model.name!r}",
    )
    _one_of("data.partition", data.partition, _PARTITIONS[data.name])
    if data.name == "cifar100":
        _one_of("data.source", data.source, _CIFAR_SOURCES)
        if data.partition == "dirichlet":
            _require(
                data.alpha is not None and data.alpha > 0,
                f"data.alpha must be > 0 for the dirichlet partition, got {data.alpha!r}",
            )
        _positive_int("data.num_clients", data.num_clients)
    else:
        _positive_int("data.num_clients", data.num_clients, 0)
    if config.algorithm == "centralized":
        _positive_int("batch_size", config.batch_size)
        return
    _positive_int("client.local_steps", config.client.local_steps)
    _positive_int("client.batch_size", config.client.batch_size)
    _positive_int("client.local_epochs", config.client.local_epochs, 0)
    _positive_int("clients_per_round", config.clients_per_round, 0)
    if not config.clients_per_round:
        _require(
            0 < config.participation <= 1,
            f"participation must be in (0, 1], got {config.participation!r}",
        )
    _one_of("weighting", config.weighting, ("examples", "uniform"))
    _one_of("client_axis", config.client_axis, CLIENT_AXIS_MODES)
    if config.client_axis == "chunked":
        _positive_int("chunk_size", config.chunk_size)
    _positive_int("client_devices", config.client_devices, 0)
    budget = config.memory_budget_gb
    _require(
        isinstance(budget, (int, float)) and budget >= 0,
        f"memory_budget_gb must be a number >= 0 (0: no cap), got {budget!r}",
    )
