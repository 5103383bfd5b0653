"""Checks a config before anything is built, so bad values fail fast with one clear line.

`check_config` checks every field of `fedjax_sim.config.defaults.base_config` (tests set each
numeric field out of range and expect its name in the error); whether a config may continue the
run already in a workdir is `fedjax_sim.config.resume.check_resumable`.
"""

from __future__ import annotations

import json

import ml_collections

from fedjax_sim.algorithms.fedavg import CLIENT_OPTIMIZER_STATE, MODEL_STATE_MODES
from fedjax_sim.config import registry
from fedjax_sim.config.fields import (
    ConfigError,
    build_optimizer,
    check_optimizer,
    integer,
    number,
    one_of,
    require,
)
from fedjax_sim.core.attacks import ATTACKS, UPDATE_ATTACKS
from fedjax_sim.core.engine import CLIENT_AXIS_MODES
from fedjax_sim.core.optimizers import SCHEDULES, make_schedule
from fedjax_sim.core.robust_aggregation import AGGREGATORS, check_round_size
from fedjax_sim.core.round import LOCAL_WORK
from fedjax_sim.core.selection import SELECTIONS
from fedjax_sim.core.speeds import SPEED_MODELS, parse_durations
from fedjax_sim.data import cifar100, digits
from fedjax_sim.data.digits import PARTITIONS as DIGITS_PARTITIONS
from fedjax_sim.models.cnn import CONV_IMPLEMENTATIONS
from fedjax_sim.models.resnet import NORMS
from fedjax_sim.runtime.ledger import TOPOLOGIES
from fedjax_sim.runtime.wandb_log import MODES as WANDB_MODES

# ConfigError and build_optimizer live in fedjax_sim.config.fields; imported from here too.
__all__ = [
    "DISTRIBUTED_ALGORITHMS",
    "FEDERATED_ALGORITHMS",
    "ROBUST_ALGORITHMS",
    "ConfigError",
    "build_optimizer",
    "check_config",
    "config_record",
    "resolved_weighting",
]

FEDERATED_ALGORITHMS = registry.names("federated")
DISTRIBUTED_ALGORITHMS = registry.names("distributed")  # K workers training one model
ROBUST_ALGORITHMS = tuple(n for n, e in registry.ALGORITHMS.items() if e.robust_aggregation)

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


def resolved_weighting(config: ml_collections.ConfigDict) -> str:
    """``config.weighting`` with ``"auto"`` resolved to the algorithm's paper's weighting."""
    if config.weighting != "auto":
        return config.weighting
    return registry.get(config.algorithm).weighting


def config_record(config: ml_collections.ConfigDict) -> dict:
    """The config as its run's ``config.json`` records it: JSON values, ``weighting="auto"``
    resolved (so the file says which weighting ran, and resuming compares what ran)."""
    record = json.loads(config.to_json_best_effort())
    if "weighting" in record:
        record["weighting"] = resolved_weighting(config)
    return record


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises `ConfigError` naming the first field whose value is not allowed."""
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
    _check_run(config)
    _check_data(config.data)
    _check_sweep(config)
    _check_ledger(config.ledger)
    _check_wandb(config.wandb)
    _check_model(config.model, config.data.name)
    if entry.family == "centralized":
        entry.check(config)
    else:
        _check_federated(config, entry)


def _check_run(config: ml_collections.ConfigDict) -> None:
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


def _check_data(data: ml_collections.ConfigDict) -> None:
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


def _check_sweep(config: ml_collections.ConfigDict) -> None:
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


def _check_ledger(ledger: ml_collections.ConfigDict) -> None:
    one_of("ledger.topology", ledger.topology, ("auto", *TOPOLOGIES))
    for name in ("worker_tflops", "bandwidth_gbps"):
        number(f"ledger.{name}", ledger[name], strict=True)
    number("ledger.latency_ms", ledger.latency_ms)


def _check_wandb(wandb: ml_collections.ConfigDict) -> None:
    for name in ("project", "entity", "name", "group", "tags"):
        require(isinstance(wandb[name], str), f"wandb.{name} must be a string, got {wandb[name]!r}")
    one_of("wandb.mode", wandb.mode, WANDB_MODES)


def _check_model(model: ml_collections.ConfigDict, dataset: str) -> None:
    one_of(f"model.name (for data.name={dataset!r})", model.name, _DATASETS[dataset])
    integer("model.hidden", model.hidden)
    one_of("model.conv", model.conv, CONV_IMPLEMENTATIONS)
    one_of("model.norm", model.norm, NORMS)
    integer("model.groups", model.groups)
    for name in ("patch", "depth", "width", "heads", "mlp_ratio"):
        integer(f"model.{name}", model[name])
    side = _IMAGE_SIDES.get(dataset)
    require(
        model.name != "vit" or side % model.patch == 0,
        f"model.patch must divide the {side}x{side} images of data.name={dataset!r}, "
        f"got {model.patch}",
    )
    require(
        model.name != "vit" or model.width % model.heads == 0,
        f"model.width must be a multiple of model.heads={model.heads}, got {model.width}",
    )


# Client optimizers without moment decays (client.b1 and client.b2 are refused for them).
_NO_MOMENT_DECAYS = ("sgd", "adagrad", "lars", "optax_lars")


def _check_federated(config: ml_collections.ConfigDict, entry) -> None:
    """The fields of a federated or distributed config; ``entry`` is its algorithm's."""
    _check_optimizers(config, entry)
    _check_speed(config)
    # Every federated and distributed config carries every algorithm's group.
    for owner in registry.trained_groups().values():
        owner.check_group(config)
    integer("finetune.steps", config.finetune.steps, 0)
    one_of("client.local_work", config.client.local_work, LOCAL_WORK)
    one_of("client.optimizer_state", config.client.optimizer_state, CLIENT_OPTIMIZER_STATE)
    one_of("model_state", config.model_state, MODEL_STATE_MODES)
    _check_selection(config.selection)
    _check_robust(config, entry)
    if entry.check is not None:
        entry.check(config)
    _check_round(config)
    _check_local_epochs(config, entry)


def _check_local_epochs(config: ml_collections.ConfigDict, entry) -> None:
    """E local epochs set each federated client's steps (`building_blocks.with_epoch_steps`)."""
    epochs = config.client.local_epochs
    require(
        not epochs or entry.family == "federated",
        f"client.local_epochs={epochs} is for federated algorithms; {config.algorithm}'s "
        "workers take client.local_steps (H) and local_epochs=0",
    )
    require(
        not epochs or config.client.local_work == "fixed",
        f"client.local_epochs={epochs} sets each client's work (E passes over its data); "
        f"client.local_work={config.client.local_work!r} would set it too: use 'fixed'",
    )


def _check_optimizers(config: ml_collections.ConfigDict, entry) -> None:
    """The client (inner) and server (outer) optimizers and the inner learning-rate schedule."""
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


def _check_speed(config: ml_collections.ConfigDict) -> None:
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


def _check_selection(selection: ml_collections.ConfigDict) -> None:
    one_of("selection.name", selection.name, SELECTIONS)
    number("selection.gamma", selection.gamma, strict=True)
    integer("selection.candidates", selection.candidates, 0)
    require(
        isinstance(selection.replace, bool),
        f"selection.replace must be True or False, got {selection.replace!r}",
    )
    number("selection.dropout", selection.dropout)
    require(selection.dropout < 1, f"selection.dropout must be in [0, 1), got {selection.dropout}")


def _check_robust(config: ml_collections.ConfigDict, entry) -> None:
    """The robust aggregator (for the algorithms that take one) and the attack."""
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
        f"robust.aggregator={robust.aggregator!r} is for {', '.join(ROBUST_ALGORITHMS)}; "
        f"{config.algorithm} takes robust.aggregator='mean'",
    )
    one_of("robust.attack", robust.attack, ATTACKS)
    for name in ("bad_fraction", "sensor_fraction"):
        number(f"robust.{name}", robust[name])
        require(robust[name] <= 1, f"robust.{name} must be in [0, 1], got {robust[name]}")
    number("robust.noise_std", robust.noise_std)
    number("robust.attack_scale", robust.attack_scale, strict=True)
    require(
        robust.attack not in UPDATE_ATTACKS or entry.family == "federated",
        f"robust.attack={robust.attack!r} changes federated clients' updates, for one of "
        f"{list(FEDERATED_ALGORITHMS)}; {config.algorithm} takes a data attack or 'none'",
    )


def _check_round(config: ml_collections.ConfigDict) -> None:
    """A round's clients, their local work and how the round runs."""
    client = config.client
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
