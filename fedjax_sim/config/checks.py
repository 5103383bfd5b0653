"""Checks a config before anything is built, so bad values fail fast with one clear line.

`check_config` checks every field of `fedjax_sim.config.defaults.base_config` (tests set each
numeric field out of range and expect its name in the error); whether a config may continue the
run already in a workdir is `fedjax_sim.config.resume.check_resumable`.
"""

from __future__ import annotations

import json

import ml_collections

from fedjax_sim.algorithms.async_sgd import RULES as ASYNC_RULES
from fedjax_sim.algorithms.async_sgd import STALENESS_SCALING
from fedjax_sim.algorithms.fedavg import CLIENT_OPTIMIZER_STATE, MODEL_STATE_MODES
from fedjax_sim.algorithms.fedseq import ORDERS
from fedjax_sim.algorithms.fedseq_groups import ESTIMATES, GROUPERS
from fedjax_sim.algorithms.gossip import GOSSIP_GRAPHS
from fedjax_sim.algorithms.local_sgd import (
    BATCH_SCHEDULES,
    BEFORE_SWITCH,
    H_SCHEDULES,
    SYNC_MOMENTUM,
)
from fedjax_sim.algorithms.personalized import PERSONALIZATION
from fedjax_sim.algorithms.scaffold import OPTIONS as SCAFFOLD_OPTIONS
from fedjax_sim.core.attacks import ATTACKS, UPDATE_ATTACKS
from fedjax_sim.core.engine import CLIENT_AXIS_MODES
from fedjax_sim.core.fedopt import SERVER_OPTIMIZERS, server_optimizer
from fedjax_sim.core.optimizers import (
    LR_SCALING,
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


FEDERATED_ALGORITHMS = (
    "fedavg", "fedprox", "scaffold", "feddyn", "fednova", "fedbn", *PERSONALIZATION, "fedseq",
)  # fmt: skip
ROBUST_ALGORITHMS = (
    "fedavg",
    "fedbn",
    "fedprox",
    *PERSONALIZATION,
    "fedseq",
)  # take robust.aggregator
DISTRIBUTED_ALGORITHMS = ("localsgd", "asyncsgd", "gossip")  # K workers training one model
_ALGORITHMS = (*FEDERATED_ALGORITHMS, *DISTRIBUTED_ALGORITHMS, "centralized")
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


def _one_of(field: str, value, allowed):
    require(value in allowed, f"{field} must be one of {list(allowed)}, got {value!r}")


def _integer(field: str, value, minimum: int = 1):
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{field} must be an integer >= {minimum}, got {value!r}",
    )


def _number(field: str, value, minimum: float = 0.0, *, strict: bool = False):
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


# Their papers average the round's clients uniformly (SCAFFOLD: x += eta_g / |S| sum dy_i;
# FedDyn: theta = mean of the clients' models - h / alpha); the rest weight by examples.
UNIFORM_WEIGHTING_ALGORITHMS = ("scaffold", "feddyn")


def resolved_weighting(config: ml_collections.ConfigDict) -> str:
    """``config.weighting`` with ``"auto"`` resolved to the algorithm's paper's weighting."""
    if config.weighting != "auto":
        return config.weighting
    return "uniform" if config.algorithm in UNIFORM_WEIGHTING_ALGORITHMS else "examples"


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


def _optimizer(config: ml_collections.ConfigDict, field: str):
    """An optimizer block, checked by building it (the builders name the bad field)."""
    name = config[field]["name" if field == "optimizer" else "optimizer"]
    allowed = SERVER_OPTIMIZERS if field == "server" else OPTIMIZERS
    _one_of(f"{field}.{'name' if field == 'optimizer' else 'optimizer'}", name, allowed)
    try:
        build_optimizer(config, field)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises `ConfigError` naming the first field whose value is not allowed."""
    _one_of("algorithm", config.algorithm, _ALGORITHMS)
    centralized_config = "optimizer" in config and "client" not in config
    require(
        centralized_config == (config.algorithm == "centralized"),
        f"algorithm={config.algorithm!r} needs a "
        + ("federated or distributed config (client.*, server.*), e.g. configs/fedavg_*.py"
           if centralized_config else "centralized config (optimizer.*, batch_size), e.g. "
           "configs/centralized_*.py")
        + "; this config file is for "
        + ("algorithm='centralized'" if centralized_config else "the other algorithms"),
    )  # fmt: skip
    _integer("rounds", config.rounds)
    _integer("eval_every", config.eval_every, 0)
    _integer("checkpoint_every", config.checkpoint_every, 0)
    _integer("seed", config.seed, 0)
    _integer("num_seeds", config.num_seeds)
    require(
        config.num_seeds == 1 or config.algorithm != "fedseq",
        "num_seeds > 1 is not available for algorithm=fedseq (its superclients depend on the "
        "seed); run its seeds separately",
    )
    _integer("eval_batch_size", config.eval_batch_size)
    _integer("eval_max_examples", config.eval_max_examples, 0)
    require(
        isinstance(config.xla_flags, str), f"xla_flags must be a string, got {config.xla_flags!r}"
    )
    data = config.data
    _one_of("data.name", data.name, tuple(_DATASETS))
    _one_of("data.partition", data.partition, _PARTITIONS[data.name])
    _integer("data.num_clients", data.num_clients, 0 if data.name == "shakespeare" else 1)
    _number("data.alpha", data.alpha, strict=True)
    _integer("data.classes_per_client", data.classes_per_client)
    _one_of("data.source", data.source, _CIFAR_SOURCES)
    _integer("data.synthetic_train", data.synthetic_train)
    _integer("data.synthetic_test", data.synthetic_test)
    _integer("data.min_samples", data.min_samples, 0)
    _integer("data.seed", data.seed, 0)
    _integer("data.test_per_client", data.test_per_client, 0)
    require(
        not data.test_per_client or data.name != "shakespeare",
        "data.test_per_client is for cifar100 and digits; shakespeare has LEAF's per-client "
        "test split: use 0",
    )
    _number("data.test_fraction", data.test_fraction, strict=True)
    require(
        data.test_fraction < 1, f"data.test_fraction must be in (0, 1), got {data.test_fraction}"
    )
    require(
        bool(data.leaf_train_dir) == bool(data.leaf_test_dir),
        "data.leaf_train_dir and data.leaf_test_dir go together: give both or neither",
    )
    _integer("rounds_per_call", config.rounds_per_call)
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
    _one_of("ledger.topology", ledger.topology, ("auto", *TOPOLOGIES))
    for name in ("worker_tflops", "bandwidth_gbps"):
        _number(f"ledger.{name}", ledger[name], strict=True)
    _number("ledger.latency_ms", ledger.latency_ms)
    model = config.model
    _one_of(f"model.name (for data.name={data.name!r})", model.name, _DATASETS[data.name])
    _integer("model.hidden", model.hidden)
    _one_of("model.conv", model.conv, CONV_IMPLEMENTATIONS)
    _one_of("model.norm", model.norm, NORMS)
    _integer("model.groups", model.groups)
    for name in ("patch", "depth", "width", "heads", "mlp_ratio"):
        _integer(f"model.{name}", model[name])
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
    if config.algorithm == "centralized":
        _check_centralized(config)
    else:
        _check_federated(config)


def _check_centralized(config: ml_collections.ConfigDict) -> None:
    _integer("batch_size", config.batch_size)
    _integer("micro_batch_size", config.micro_batch_size, 0)
    require(
        not config.micro_batch_size or config.batch_size % config.micro_batch_size == 0,
        f"micro_batch_size={config.micro_batch_size} must divide batch_size={config.batch_size}",
    )
    opt = config.optimizer
    _integer("optimizer.schedule_steps", opt.schedule_steps, 0)
    _integer("optimizer.warmup_steps", opt.warmup_steps, 0)
    _number("optimizer.decay_power", opt.decay_power, strict=True)
    _one_of("optimizer.lr_scaling", opt.lr_scaling, LR_SCALING)
    _integer("optimizer.base_batch_size", opt.base_batch_size)
    require(
        opt.exclude_bias_and_norm is None or isinstance(opt.exclude_bias_and_norm, bool),
        "optimizer.exclude_bias_and_norm must be True, False or None (the papers' choice), got "
        f"{opt.exclude_bias_and_norm!r}",
    )
    _optimizer(config, "optimizer")


# Client optimizers without moment decays (client.b1 and client.b2 are refused for them).
_NO_MOMENT_DECAYS = ("sgd", "adagrad", "lars", "optax_lars")


def _check_federated(config: ml_collections.ConfigDict) -> None:
    client, server = config.client, config.server
    for name in ("b1", "b2"):
        require(
            client[name] is None or client.optimizer not in _NO_MOMENT_DECAYS,
            f"client.{name} is a moment decay of adam, yogi or lamb; client.optimizer="
            f"{client.optimizer!r} has none: leave it None",
        )
    _optimizer(config, "client")
    _integer("server.warmup_steps", server.warmup_steps, 0)
    _integer("client.warmup_steps", client.warmup_steps, 0)
    _one_of("client.schedule", client.schedule, SCHEDULES)
    require(
        client.schedule == "constant" or config.algorithm == "localsgd",
        f"client.schedule={client.schedule!r} is for algorithm=localsgd (a per-round inner "
        f"learning rate); {config.algorithm} takes client.schedule='constant'",
    )
    if client.schedule != "constant":
        make_schedule(1.0, client.schedule, total_steps=config.rounds,
                      warmup_steps=client.warmup_steps, field="client")  # fmt: skip
    require(
        isinstance(config.localsgd.normalize_outer, bool),
        f"localsgd.normalize_outer must be True or False, got {config.localsgd.normalize_outer!r}",
    )
    _optimizer(config, "server")
    localsgd = config.localsgd
    _one_of("localsgd.sync_momentum", localsgd.sync_momentum, (None, *SYNC_MOMENTUM))
    _one_of("localsgd.schedule", localsgd.schedule, H_SCHEDULES)
    _integer("localsgd.switch_step", localsgd.switch_step, 0)
    _one_of("localsgd.before_switch", localsgd.before_switch, BEFORE_SWITCH)
    _integer("localsgd.initial_steps", localsgd.initial_steps)
    _integer("localsgd.double_every", localsgd.double_every)
    _number("localsgd.divergence_threshold", localsgd.divergence_threshold, strict=True)
    _one_of("localsgd.batch_schedule", localsgd.batch_schedule, BATCH_SCHEDULES)
    _integer("localsgd.initial_batch_size", localsgd.initial_batch_size, 0)
    require(
        localsgd.initial_batch_size <= client.batch_size,
        f"localsgd.initial_batch_size={localsgd.initial_batch_size} must be at most "
        f"client.batch_size={client.batch_size} (the largest batch it may grow to)",
    )
    _number("localsgd.noise_decay", localsgd.noise_decay)
    decay = localsgd.noise_decay
    require(decay < 1, f"localsgd.noise_decay must be in [0, 1), got {decay}")
    speed = config.speed
    _one_of("speed.model", speed.model, SPEED_MODELS)
    _number("speed.sigma", speed.sigma)
    _number("speed.straggler_fraction", speed.straggler_fraction)
    require(
        speed.straggler_fraction <= 1,
        f"speed.straggler_fraction must be in [0, 1], got {speed.straggler_fraction}",
    )
    _number("speed.slowdown", speed.slowdown, strict=True)
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
    asynchronous = config.asynchronous
    _one_of("asynchronous.staleness_scaling", asynchronous.staleness_scaling, STALENESS_SCALING)
    _number("asynchronous.staleness_exponent", asynchronous.staleness_exponent)
    _one_of("asynchronous.rule", asynchronous.rule, ASYNC_RULES)
    _number("asynchronous.mixing", asynchronous.mixing, strict=True)
    require(
        asynchronous.mixing <= 1,
        f"asynchronous.mixing must be in (0, 1], got {asynchronous.mixing}",
    )
    gossip = config.gossip
    _one_of("gossip.graph", gossip.graph, GOSSIP_GRAPHS)
    _integer("gossip.communications", gossip.communications)
    require(
        isinstance(gossip.accelerate, bool),
        f"gossip.accelerate must be True or False, got {gossip.accelerate!r}",
    )
    if config.algorithm == "gossip":
        require(
            config.data.num_clients >= 2,
            f"data.num_clients must be >= 2 for gossip (workers), got {config.data.num_clients}",
        )
        _one_of("speed.model (for gossip: steps of whole ticks)", speed.model,
                ("fixed", "straggler"))  # fmt: skip
        require(
            speed.slowdown >= 1,
            f"speed.slowdown must be >= 1 for gossip (a step lasts whole ticks), got "
            f"{speed.slowdown}",
        )
    if config.algorithm == "asyncsgd":
        _one_of("localsgd.sync_momentum (for asyncsgd)", localsgd.sync_momentum,
                (None, "reset", "keep"))  # fmt: skip
    _one_of("client.local_work", client.local_work, LOCAL_WORK)
    _one_of("client.optimizer_state", client.optimizer_state, CLIENT_OPTIMIZER_STATE)
    _one_of("model_state", config.model_state, MODEL_STATE_MODES)
    selection = config.selection
    _one_of("selection.name", selection.name, SELECTIONS)
    _number("selection.gamma", selection.gamma, strict=True)
    _integer("selection.candidates", selection.candidates, 0)
    require(
        isinstance(selection.replace, bool),
        f"selection.replace must be True or False, got {selection.replace!r}",
    )
    _number("selection.dropout", selection.dropout)
    require(selection.dropout < 1, f"selection.dropout must be in [0, 1), got {selection.dropout}")
    _number("fedprox.mu", config.fedprox.mu)
    robust = config.robust
    _one_of("robust.aggregator", robust.aggregator, AGGREGATORS)
    _number("robust.trim_fraction", robust.trim_fraction)
    require(
        robust.trim_fraction < 0.5,
        f"robust.trim_fraction must be in [0, 0.5), got {robust.trim_fraction}",
    )
    _number("robust.max_norm", robust.max_norm, strict=True)
    _integer("robust.byzantine", robust.byzantine, 0)
    _integer("robust.krum_selected", robust.krum_selected)
    if config.clients_per_round > 0:  # else participation x K, checked once K is known
        try:
            check_round_size(
                robust.aggregator, config.clients_per_round, trim_fraction=robust.trim_fraction,
                byzantine=robust.byzantine, krum_selected=robust.krum_selected,
            )  # fmt: skip
        except ValueError as error:
            raise ConfigError(str(error)) from error
    require(
        robust.aggregator == "mean" or config.algorithm in ROBUST_ALGORITHMS,
        f"robust.aggregator={robust.aggregator!r} is for {', '.join(ROBUST_ALGORITHMS)}; "
        f"{config.algorithm} takes robust.aggregator='mean'",
    )
    _one_of("robust.attack", robust.attack, ATTACKS)
    for name in ("bad_fraction", "sensor_fraction"):
        _number(f"robust.{name}", robust[name])
        require(robust[name] <= 1, f"robust.{name} must be in [0, 1], got {robust[name]}")
    _number("robust.noise_std", robust.noise_std)
    _number("robust.attack_scale", robust.attack_scale, strict=True)
    require(
        robust.attack not in UPDATE_ATTACKS or config.algorithm in FEDERATED_ALGORITHMS,
        f"robust.attack={robust.attack!r} changes federated clients' updates, for one of "
        f"{list(FEDERATED_ALGORITHMS)}; {config.algorithm} takes a data attack or 'none'",
    )
    _check_personalization(config)
    _check_fedseq(config)
    _one_of("scaffold.option", config.scaffold.option, SCAFFOLD_OPTIONS)
    _number("feddyn.alpha", config.feddyn.alpha, strict=True)
    if config.algorithm == "scaffold" and client.optimizer != "sgd":
        raise ConfigError(
            "client.optimizer must be 'sgd' for scaffold (its control update uses the client "
            f"learning rate), got {client.optimizer!r}"
        )
    if config.algorithm == "fednova" and client.optimizer != "sgd":
        raise ConfigError(
            f"client.optimizer must be 'sgd' for fednova (its normalizer is derived for SGD "
            f"with momentum), got {client.optimizer!r}"
        )
    if config.algorithm == "fedbn" and config.model.name not in ("resnet20", "resnet18"):
        raise ConfigError(
            f"model.name must be one of ['resnet20', 'resnet18'] for fedbn (a model with "
            f"normalization layers), got {config.model.name!r}"
        )
    require(
        config.algorithm != "fedbn" or config.model.norm == "batch",
        f"model.norm must be 'batch' for fedbn, got {config.model.norm!r}: FedBN keeps the "
        f"BatchNorm layers local (algorithm=fedavg for the other norms)",
    )
    _integer("client.local_steps", client.local_steps)
    _integer("client.batch_size", client.batch_size)
    _integer("client.local_epochs", client.local_epochs, 0)
    _integer("clients_per_round", config.clients_per_round, 0)
    population = config.data.num_clients
    require(
        not population or config.clients_per_round <= population,
        f"clients_per_round={config.clients_per_round} exceeds the population of "
        f"data.num_clients={population} clients",
    )
    _number("participation", config.participation, strict=True)
    require(
        config.participation <= 1,
        f"participation must be in (0, 1], got {config.participation!r}",
    )
    _one_of("weighting", config.weighting, ("auto", "examples", "uniform"))
    _one_of("client_axis", config.client_axis, CLIENT_AXIS_MODES)
    _integer("chunk_size", config.chunk_size, 1 if config.client_axis == "chunked" else 0)
    _integer("unroll_local_steps", config.unroll_local_steps, 0)
    _integer("client_devices", config.client_devices, 0)
    _integer("data_devices", config.data_devices)
    _number("memory_budget_gb", config.memory_budget_gb)


def _check_fedseq(config: ml_collections.ConfigDict) -> None:
    fedseq = config.fedseq
    _one_of("fedseq.estimate", fedseq.estimate, ESTIMATES)
    _one_of("fedseq.grouper", fedseq.grouper, GROUPERS)
    _one_of("fedseq.order", fedseq.order, ORDERS)
    for name, minimum in (("estimate_steps", 1), ("exemplars", 1), ("max_clients", 1),
                          ("min_examples", 0)):  # fmt: skip
        _integer(f"fedseq.{name}", fedseq[name], minimum)
    if config.algorithm != "fedseq":
        return
    _integer("clients_per_round (for fedseq: the superclients of a round)",
             config.clients_per_round)  # fmt: skip
    # A superclient is one model trained through its members: no per-client state to keep.
    _one_of("model_state (for fedseq)", config.model_state, ("average", "recompute"))
    _one_of("client.optimizer_state (for fedseq)", config.client.optimizer_state, ("reset",))
    _one_of("selection.name (for fedseq: superclients drawn uniformly)", config.selection.name,
            ("uniform",))  # fmt: skip


def _check_personalization(config: ml_collections.ConfigDict) -> None:
    personal = config.personal
    require(
        isinstance(personal.head, str), f"personal.head must be a string, got {personal.head!r}"
    )
    _integer("personal.head_steps", personal.head_steps, 0)
    require(
        config.algorithm != "fedrep" or personal.head_steps < config.client.local_steps,
        f"personal.head_steps={personal.head_steps} must be below client.local_steps="
        f"{config.client.local_steps}: FedRep's body trains in the steps after the head's",
    )
    _number("personal.ditto_lambda", personal.ditto_lambda)
    _number("personal.apfl_alpha", personal.apfl_alpha)
    require(personal.apfl_alpha <= 1, f"personal.apfl_alpha must be in [0, 1], got "
             f"{personal.apfl_alpha}")  # fmt: skip
    _integer("finetune.steps", config.finetune.steps, 0)
    require(
        config.algorithm != "fedbabu" or config.finetune.steps > 0,
        "algorithm=fedbabu evaluates clients' fine-tuned models: set finetune.steps >= 1",
    )
