"""Checks a config before anything is built, so bad values fail fast with one clear line.

`check_config` checks every field of `fedjax_sim.config.defaults.base_config` (tests set each
numeric field out of range and expect its name in the error); whether a config may continue the
run already in a workdir is `fedjax_sim.config.resume.check_resumable`.
"""

from __future__ import annotations

import json

import ml_collections

from fedjax_sim.algorithms.fedavg import CLIENT_OPTIMIZER_STATE, MODEL_STATE_MODES
from fedjax_sim.core.attacks import ATTACKS, UPDATE_ATTACKS
from fedjax_sim.core.engine import CLIENT_AXIS_MODES
from fedjax_sim.core.fedopt import SERVER_OPTIMIZERS, server_optimizer
from fedjax_sim.core.optimizers import (
    OPTIMIZERS,
    SCHEDULES,
    make_optimizer,
    make_schedule,
)
from fedjax_sim.core.robust_aggregation import AGGREGATORS, check_round_size
from fedjax_sim.core.round import LOCAL_WORK
from fedjax_sim.core.selection import SELECTIONS
from fedjax_sim.core.speeds import SPEED_MODELS, parse_durations
from fedjax_sim.data import cifar100, digits
from fedjax_sim.data.digits import PARTITIONS as DIGITS_PARTITIONS
from fedjax_sim.models.cnn import CONV_IMPLEMENTATIONS
from fedjax_sim.models.resnet import NORMS
from fedjax_sim.runtime.ledger import TOPOLOGIES


class ConfigError(ValueError):
    """A config field has a value outside what it allows; the message names both."""


def __getattr__(name: str):
    """``FEDERATED_ALGORITHMS``, ``DISTRIBUTED_ALGORITHMS`` (K workers training one model) and
    ``ROBUST_ALGORITHMS`` (those taking robust.aggregator), read from
    `fedjax_sim.config.registry` (which imports this module, hence read when asked)."""
    from fedjax_sim.config import registry

    if name == "FEDERATED_ALGORITHMS":
        return registry.names("federated")
    if name == "DISTRIBUTED_ALGORITHMS":
        return registry.names("distributed")
    if name == "ROBUST_ALGORITHMS":
        return tuple(n for n, e in registry.ALGORITHMS.items() if e.robust_aggregation)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_DATASETS = {
    "shakespeare": ("lstm",),
    "cifar100": ("cnn", "resnet20", "resnet18", "vit"),
    "digits": ("cnn", "resnet20", "vit"),
}
_IMAGE_SIDES = {"cifar100": cifar100.IMAGE_SIDE, "digits": digits.IMAGE_SIDE}
_PARTITIONS = {
    "shakespeare": ("natural", "iid"),
    "cifar100": ("iid", "dirichlet", "shards"),
    "digits": DIGITS_PARTITIONS,
}
_CIFAR_SOURCES = ("auto", "python", "binary", "tfds", "synthetic")


def require(ok: bool, message: str):
    """Raises `ConfigError` with ``message`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def one_of(field: str, value, allowed):
    require(value in allowed, f"{field} must be one of {list(allowed)}, got {value!r}")


def integer(field: str, value, minimum: int = 1):
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{field} must be an integer >= {minimum}, got {value!r}",
    )


def number(field: str, value, minimum: float = 0.0, *, strict: bool = False):
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_number and (value > minimum if strict else value >= minimum)
    require(ok, f"{field} must be a number {'>' if strict else '>='} {minimum:g}, got {value!r}")


def optimizer_arguments(config: ml_collections.ConfigDict, field: str) -> tuple[str, float, dict]:
    """``(name, learning_rate, options)`` from the config's optimizer block ``field``:
    ``"optimizer"`` (a centralized run) and ``"client"`` for `make_optimizer`, ``"server"`` for
    `fedjax_sim.core.fedopt.server_optimizer` (`build_optimizer` calls the right one), so that what
    `check_config` builds to check is what `fedjax_sim.config.build` builds to run.

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


def resolved_weighting(config: ml_collections.ConfigDict) -> str:
    """``config.weighting`` with ``"auto"`` resolved to the algorithm's paper's weighting."""
    if config.weighting != "auto":
        return config.weighting
    from fedjax_sim.config import registry

    return registry.get(config.algorithm).weighting


def config_record(config: ml_collections.ConfigDict) -> dict:
    """The config as its run's ``config.json`` records it: JSON values, ``weighting="auto"``
    resolved (so the file says which weighting ran, and resuming compares what ran)."""
    record = json.loads(config.to_json_best_effort())
    if "weighting" in record:
        record["weighting"] = resolved_weighting(config)
    return record


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


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises `ConfigError` naming the first field whose value is not allowed."""
    from fedjax_sim.config import registry

    entry = registry.get(config.algorithm)
    centralized_config = "optimizer" in config and "client" not in config
    require(
        centralized_config == (entry.family == "centralized"),
        f"algorithm={config.algorithm!r} needs a "
        + ("federated or distributed config (client.*, server.*), e.g. configs/fedavg_*.py"
           if centralized_config else "centralized config (optimizer.*, batch_size), e.g. "
           "configs/centralized_*.py")
        + "; this config file is for "
        + ("algorithm='centralized'" if centralized_config else "the other algorithms"),
    )  # fmt: skip
    integer("rounds", config.rounds)
    integer("eval_every", config.eval_every, 0)
    integer("checkpoint_every", config.checkpoint_every, 0)
    integer("seed", config.seed, 0)
    integer("num_seeds", config.num_seeds)
    integer("eval_batch_size", config.eval_batch_size)
    integer("eval_max_examples", config.eval_max_examples, 0)
    require(
        isinstance(config.xla_flags, str), f"xla_flags must be a string, got {config.xla_flags!r}"
    )
    data = config.data
    one_of("data.name", data.name, tuple(_DATASETS))
    one_of("data.partition", data.partition, _PARTITIONS[data.name])
    integer("data.num_clients", data.num_clients, 0 if data.name == "shakespeare" else 1)
    number("data.alpha", data.alpha, strict=True)
    integer("data.classes_per_client", data.classes_per_client)
    one_of("data.source", data.source, _CIFAR_SOURCES)
    integer("data.synthetic_train", data.synthetic_train)
    integer("data.synthetic_test", data.synthetic_test)
    integer("data.min_samples", data.min_samples, 0)
    integer("data.seed", data.seed, 0)
    integer("data.test_per_client", data.test_per_client, 0)
    require(
        not data.test_per_client or data.name != "shakespeare",
        "data.test_per_client is for cifar100 and digits; shakespeare has LEAF's per-client "
        "test split: use 0",
    )
    number("data.test_fraction", data.test_fraction, strict=True)
    require(
        data.test_fraction < 1, f"data.test_fraction must be in (0, 1), got {data.test_fraction}"
    )
    require(
        bool(data.leaf_train_dir) == bool(data.leaf_test_dir),
        "data.leaf_train_dir and data.leaf_test_dir go together: give both or neither",
    )
    integer("rounds_per_call", config.rounds_per_call)
    require(isinstance(config.sweep, str), f"sweep must be a string, got {config.sweep!r}")
    require(
        isinstance(config.sweep_vectorized, bool),
        f"sweep_vectorized must be True or False, got {config.sweep_vectorized!r}",
    )
    require(
        not config.sweep_vectorized or config.sweep,
        "sweep_vectorized needs a sweep, e.g. --config.sweep='client.learning_rate=0.3,1'",
    )
    ledger = config.ledger
    one_of("ledger.topology", ledger.topology, ("auto", *TOPOLOGIES))
    for name in ("worker_tflops", "bandwidth_gbps"):
        number(f"ledger.{name}", ledger[name], strict=True)
    number("ledger.latency_ms", ledger.latency_ms)
    model = config.model
    one_of(f"model.name (for data.name={data.name!r})", model.name, _DATASETS[data.name])
    integer("model.hidden", model.hidden)
    one_of("model.conv", model.conv, CONV_IMPLEMENTATIONS)
    one_of("model.norm", model.norm, NORMS)
    integer("model.groups", model.groups)
    for name in ("patch", "depth", "width", "heads", "mlp_ratio"):
        integer(f"model.{name}", model[name])
    side = _IMAGE_SIDES.get(data.name)
    require(
        model.name != "vit" or side % model.patch == 0,
        f"model.patch must divide the {side}x{side} images of data.name={data.name!r}, "
        f"got {model.patch}",
    )
    require(
        model.name != "vit" or model.width % model.heads == 0,
        f"model.width must be a multiple of model.heads={model.heads}, got {model.width}",
    )
    if entry.family == "centralized":
        entry.check(config)
    else:
        _check_federated(config, entry)


# Client optimizers without moment decays (client.b1 and client.b2 are refused for them).
_NO_MOMENT_DECAYS = ("sgd", "adagrad", "lars", "optax_lars")


def _check_federated(config: ml_collections.ConfigDict, entry) -> None:
    """The fields of a federated or distributed config; ``entry`` is its algorithm's."""
    from fedjax_sim.config import registry

    client, server = config.client, config.server
    for name in ("b1", "b2"):
        require(
            client[name] is None or client.optimizer not in _NO_MOMENT_DECAYS,
            f"client.{name} is a moment decay of adam, yogi or lamb; client.optimizer="
            f"{client.optimizer!r} has none: leave it None",
        )
    check_optimizer(config, "client")
    integer("server.warmup_steps", server.warmup_steps, 0)
    integer("client.warmup_steps", client.warmup_steps, 0)
    one_of("client.schedule", client.schedule, SCHEDULES)
    require(
        client.schedule == "constant" or entry.inner_schedule,
        f"client.schedule={client.schedule!r} is for algorithm="
        f"{', '.join(n for n, e in registry.ALGORITHMS.items() if e.inner_schedule)} "
        "(a per-round inner "
        f"learning rate); {config.algorithm} takes client.schedule='constant'",
    )
    if client.schedule != "constant":
        make_schedule(1.0, client.schedule, total_steps=config.rounds,
                      warmup_steps=client.warmup_steps, field="client")  # fmt: skip
    check_optimizer(config, "server")
    speed = config.speed
    one_of("speed.model", speed.model, SPEED_MODELS)
    number("speed.sigma", speed.sigma)
    number("speed.straggler_fraction", speed.straggler_fraction)
    require(
        speed.straggler_fraction <= 1,
        f"speed.straggler_fraction must be in [0, 1], got {speed.straggler_fraction}",
    )
    number("speed.slowdown", speed.slowdown, strict=True)
    if speed.model == "given" or speed.durations is not None:
        require(
            speed.model == "given",
            f"speed.durations is for speed.model='given', not {speed.model!r}; leave it None",
        )
        require(
            speed.durations is not None,
            "speed.model='given' needs speed.durations, one positive number per worker, e.g. "
            "'1,1,2,4'",
        )
        workers = config.data.num_clients or None  # shakespeare's 0: known once loaded
        try:
            parse_durations(speed.durations, workers)
        except ValueError as error:
            raise ConfigError(str(error)) from error
    # Every federated and distributed config carries every algorithm's group.
    for owner in registry.trained_groups().values():
        owner.check_group(config)
    integer("finetune.steps", config.finetune.steps, 0)
    one_of("client.local_work", client.local_work, LOCAL_WORK)
    one_of("client.optimizer_state", client.optimizer_state, CLIENT_OPTIMIZER_STATE)
    one_of("model_state", config.model_state, MODEL_STATE_MODES)
    selection = config.selection
    one_of("selection.name", selection.name, SELECTIONS)
    number("selection.gamma", selection.gamma, strict=True)
    integer("selection.candidates", selection.candidates, 0)
    require(
        isinstance(selection.replace, bool),
        f"selection.replace must be True or False, got {selection.replace!r}",
    )
    number("selection.dropout", selection.dropout)
    require(selection.dropout < 1, f"selection.dropout must be in [0, 1), got {selection.dropout}")
    robust = config.robust
    one_of("robust.aggregator", robust.aggregator, AGGREGATORS)
    number("robust.trim_fraction", robust.trim_fraction)
    require(
        robust.trim_fraction < 0.5,
        f"robust.trim_fraction must be in [0, 0.5), got {robust.trim_fraction}",
    )
    number("robust.max_norm", robust.max_norm, strict=True)
    integer("robust.byzantine", robust.byzantine, 0)
    integer("robust.krum_selected", robust.krum_selected)
    if config.clients_per_round > 0:  # else participation x K, checked once K is known
        try:
            check_round_size(
                robust.aggregator, config.clients_per_round, trim_fraction=robust.trim_fraction,
                byzantine=robust.byzantine, krum_selected=robust.krum_selected,
            )  # fmt: skip
        except ValueError as error:
            raise ConfigError(str(error)) from error
    require(
        robust.aggregator == "mean" or entry.robust_aggregation,
        f"robust.aggregator={robust.aggregator!r} is for "
        f"{', '.join(n for n, e in registry.ALGORITHMS.items() if e.robust_aggregation)}; "
        f"{config.algorithm} takes robust.aggregator='mean'",
    )
    one_of("robust.attack", robust.attack, ATTACKS)
    for name in ("bad_fraction", "sensor_fraction"):
        number(f"robust.{name}", robust[name])
        require(robust[name] <= 1, f"robust.{name} must be in [0, 1], got {robust[name]}")
    number("robust.noise_std", robust.noise_std)
    number("robust.attack_scale", robust.attack_scale, strict=True)
    federated = registry.names("federated")
    require(
        robust.attack not in UPDATE_ATTACKS or entry.family == "federated",
        f"robust.attack={robust.attack!r} changes federated clients' updates, for one of "
        f"{list(federated)}; {config.algorithm} takes a data attack or 'none'",
    )
    if entry.check is not None:
        entry.check(config)
    integer("client.local_steps", client.local_steps)
    integer("client.batch_size", client.batch_size)
    integer("client.local_epochs", client.local_epochs, 0)
    integer("clients_per_round", config.clients_per_round, 0)
    population = config.data.num_clients
    require(
        not population or config.clients_per_round <= population,
        f"clients_per_round={config.clients_per_round} exceeds the population of "
        f"data.num_clients={population} clients",
    )
    number("participation", config.participation, strict=True)
    require(
        config.participation <= 1,
        f"participation must be in (0, 1], got {config.participation!r}",
    )
    one_of("weighting", config.weighting, ("auto", "examples", "uniform"))
    one_of("client_axis", config.client_axis, CLIENT_AXIS_MODES)
    integer("chunk_size", config.chunk_size, 1 if config.client_axis == "chunked" else 0)
    integer("unroll_local_steps", config.unroll_local_steps, 0)
    integer("client_devices", config.client_devices, 0)
    integer("data_devices", config.data_devices)
    number("memory_budget_gb", config.memory_budget_gb)
