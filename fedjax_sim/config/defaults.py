"""The fields every experiment config has, with defaults; configs/*.py override what differs.

Kept in the library (not in configs/) so that config files, loaded by path, can share them.
"""

from __future__ import annotations

import os

import ml_collections
from ml_collections import config_dict

from fedjax_sim.config import registry
from fedjax_sim.config.fields import ConfigError

VARIANTS = ("smoke",)


def _data(name: str) -> ml_collections.ConfigDict:
    cache = os.path.join(os.path.expanduser("~"), ".cache", "fedjax_sim")
    return ml_collections.ConfigDict(
        {
            "name": name,
            # shakespeare: "natural" (a client per play and role) or "iid" (same sizes, reshuffled)
            # cifar100: "iid", "dirichlet" (label skew, alpha) or "shards" (classes_per_client)
            "partition": {"shakespeare": "natural", "digits": "iid"}.get(name, "dirichlet"),
            # shakespeare: 0 keeps all clients; digits: the workers
            "num_clients": {"shakespeare": 0, "digits": 8}.get(name, 100),
            "alpha": 0.5,
            "classes_per_client": 10,
            "augment": name == "cifar100",
            "test_fraction": 0.2,  # digits: the share of the 1,797 images held out
            # cifar100, digits: > 0 gives every client this many test examples drawn with its
            # training label distribution (per-client accuracy on them); 0: per-class estimate
            "test_per_client": 0,
            # cifar100: where the official archives are; "auto", "python", "binary", "tfds" or
            # "synthetic" (CIFAR-shaped random data for smoke runs and benchmarks)
            "data_dir": os.path.join(cache, "cifar100"),
            "source": "auto",
            "download": False,
            "synthetic_train": 5000,
            "synthetic_test": 1000,
            # shakespeare: the texts of the `shakespeare` package, or LEAF's own JSON files
            "texts_dir": "",
            "leaf_train_dir": "",
            "leaf_test_dir": "",
            "cache_dir": os.path.join(cache, "shakespeare"),
            "min_samples": 64,
            # Every random choice about the data: the clients kept, the train/test split, the
            # IID reshuffle, the CIFAR partition, synthetic images, the evaluation subsample.
            # Separate from the top-level seed, so that a seed sweep trains on one dataset.
            "seed": 0,
        }
    )


def base_config(dataset: str, algorithm: str) -> ml_collections.ConfigDict:
    """Defaults shared by every config of ``dataset`` and ``algorithm``; the algorithms' groups
    come from their `fedjax_sim.config.registry` entries."""
    # an unknown name gets a federated config, which check_config then refuses by name
    family = registry.ALGORITHMS[algorithm].family if algorithm in registry.ALGORITHMS else None
    config = ml_collections.ConfigDict()
    config.algorithm = algorithm
    _set_run_fields(config)
    config.data = _data(dataset)
    config.ledger = _ledger(family)
    # Rounds run per compiled call (a lax.scan over rounds; evaluation and checkpoints land
    # on call boundaries): fewer host round trips for short rounds, same results.
    config.rounds_per_call = 1
    config.model = _model(dataset)
    if family == "centralized":
        config.batch_size = 64
        entry = registry.ALGORITHMS[algorithm]
        config[entry.group] = entry.defaults()
        # Gradient accumulation: batch_size examples per optimizer step, in micro-batches of
        # this size (0: one batch); memory is that of one micro-batch.
        config.micro_batch_size = 0
        return config
    config.clients_per_round = 10  # 0: use participation * num_clients
    config.participation = 0.1
    # The aggregation weights: "examples" (n_k, FedAvg's), "uniform" (each reporting client
    # alike) or "auto": each algorithm's paper's (its registry entry's `weighting`; config.json
    # records the resolved one).
    config.weighting = "auto"
    config.client = _client()
    config.server = _server()
    config.selection = _selection()
    # BatchNorm statistics: "average" (with the weights), "local" (each client keeps its own),
    # "recompute" (dropped after each round; recomputed from training data to evaluate).
    config.model_state = "average"
    # Every algorithm's group (config.fedprox, config.scaffold, ..., config.gossip), whatever
    # the algorithm, so that --config.algorithm may switch between them.
    for group, owner in registry.trained_groups().items():
        config[group] = owner.defaults()
    config.robust = _robust()
    # Evaluation also reports each client's model fine-tuned for `steps` local steps (client
    # optimizer, batch size) on its training data (finetuned_*); 0: off. FedBABU needs it.
    config.finetune = ml_collections.ConfigDict({"steps": 0})
    config.speed = _speed()
    _set_execution_fields(config)
    return config


def _set_run_fields(config: ml_collections.ConfigDict) -> None:
    """The run's own fields: seeds, length, evaluation and checkpoint pace, sweeps."""
    config.seed = 0  # model initialization and the rounds' sampling; the data has data.seed
    # N > 1: seeds seed, ..., seed + N - 1 as one vectorized program (a leading run axis over
    # the whole state), on the same data; outputs per seed in seed_<s>/ and their mean +- std.
    config.num_seeds = 1
    config.rounds = 100  # rounds, or optimizer steps for centralized runs
    config.eval_every = 10
    config.checkpoint_every = 10
    config.eval_batch_size = 500
    # XLA:CPU flags for this model ("auto": measured best, see fedjax_sim.experiment.xla_flags;
    # "": none)
    config.xla_flags = "auto"
    config.eval_max_examples = 0  # 0 evaluates on the whole test split
    # A round whose training metrics or parameters are NaN/inf stops the run (the last good
    # checkpoint stays); True runs on.
    config.allow_nan = False
    # A grid of runs from this config (fedjax_sim.experiment.sweep), e.g.
    # "client.local_steps+rounds=4:300,8:150;data.alpha=0.1,1.0": each cell in
    # WORKDIR/cells/<name>, resumable per cell.
    config.sweep = ""
    # True: the sweep's cells (scalar hyper-parameters only: fedjax_sim.experiment.vector_sweep)
    # and the num_seeds seeds run as ONE vectorized program instead of one run after another.
    config.sweep_vectorized = False


def _ledger(family: str | None) -> ml_collections.ConfigDict:
    # The ledger's simulated wall clock (fedjax_sim.runtime.ledger): each worker's sustained
    # TFLOP/s, each link's Gbit/s and each message's latency. Defaults: a data-center GPU and
    # network for centralized and distributed runs, a phone on a mobile link for federated ones.
    # topology "auto": a parameter server for federated runs, a ring all-reduce for
    # distributed ones ("server", "allreduce").
    data_center = family not in ("federated", None)
    return ml_collections.ConfigDict(
        {
            "topology": "auto",
            "worker_tflops": 50.0 if data_center else 0.05,
            "bandwidth_gbps": 100.0 if data_center else 0.01,
            "latency_ms": 0.01 if data_center else 50.0,
        }
    )


# model.name: lstm (shakespeare); cnn, resnet20, resnet18 (cifar100); cnn (digits).
# model.conv (CNN): "auto" (loop-friendly on CPU, XLA's elsewhere), "xla", "loop_friendly"
# model.norm (ResNets): "batch", "group", "layer", "none"; model.groups: GroupNorm's groups
# ViT: model.patch (side of a patch), depth (encoder blocks), width, heads, mlp_ratio
def _model(dataset: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "lstm" if dataset == "shakespeare" else "cnn",
            "hidden": 256,
            "conv": "auto",
            "norm": "batch",
            "groups": 2,
            "patch": 4,
            "depth": 4,
            "width": 128,
            "heads": 4,
            "mlp_ratio": 2,
        }
    )


def _client() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "eps": config_dict.placeholder(float),  # None: the optimizer's default
            # adam, yogi, lamb: the moment decays (None: optax's, 0.9 and 0.999)
            "b1": config_dict.placeholder(float),
            "b2": config_dict.placeholder(float),
            "local_steps": 8,
            # E > 0: each client makes E passes over its data, ceil(E n_k / B) steps (the
            # round compiles those of the largest client, at most 1,000); local_steps unread
            "local_epochs": 0,
            "batch_size": 64,
            # How many of the local_steps each client runs: "fixed" (all), "proportional" (to
            # its data size; the largest runs all), "random" (uniform in [1, local_steps]).
            "local_work": "fixed",
            # "reset": a fresh client optimizer every round; "keep": each client's persists.
            "optimizer_state": "reset",
            # localsgd only: the inner learning rate per round ("constant", "cosine",
            # "warmup_cosine", "poly", "warmup_poly" over `rounds`; warmup_steps in rounds).
            "schedule": "constant",
            "warmup_steps": 0,
        }
    )


# The server optimizer on the negated aggregated delta
# (fedjax_sim.core.fedopt.server_optimizer):
# sgd (lr 1: FedAvg; momentum: FedAvgM); adam, yogi, adagrad = FedAdam, FedYogi, FedAdagrad
# exactly as Reddi et al. 2021's Algorithm 2 (no bias correction; eps is their tau, unset
# 1e-3; b1, b2 unset 0.9, 0.99; initial_accumulator their v_{-1}, unset tau^2);
# optax_adam, optax_yogi, optax_adagrad = optax's own (not Algorithm 2); lars, lamb.
# A field the chosen optimizer does not read is refused.
def _server() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "optimizer": "sgd",
            "learning_rate": 1.0,
            "momentum": 0.0,
            "eps": config_dict.placeholder(float),
            "b1": config_dict.placeholder(float),
            "b2": config_dict.placeholder(float),
            "initial_accumulator": config_dict.placeholder(float),
            # over `rounds`: constant, cosine, warmup_cosine, poly, warmup_poly
            "schedule": "constant",
            "warmup_steps": 0,
            "nesterov": False,  # Nesterov momentum of an sgd server (DiLoCo's outer step)
        }
    )


# Who takes part: uniform; proportional (to data size); skewed (fixed p ~ Dirichlet(gamma):
# SMALL gamma = STRONG skew); power_of_choice (candidates d, the C with the highest loss).
# replace: with replacement (proportional, skewed); dropout: chance a client fails to report.
def _selection() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "uniform",
            "gamma": 1.0,
            "candidates": 0,  # power_of_choice's d; 0: 2 * clients_per_round
            "replace": True,
            "dropout": 0.0,
        }
    )


# How the server combines the client deltas (fedavg, fedbn, fedprox): "mean"
# (weighted), "median" and "trimmed_mean" (coordinate-wise, trim_fraction from each end),
# "norm_clipping" (each delta to norm <= max_norm, then the mean), "krum" (byzantine: the
# bad clients assumed; krum_selected > 1: multi-Krum), "noise_aware" (FedGW-style: trust =
# positive cosine with the median delta). attack (fedjax_sim.core.attacks) on a bad_fraction of
# the clients (drawn from data.seed): label_flip, random_labels, gaussian_noise (noise_std
# of the pixel range), broken_sensor (sensor_fraction dead pixels, plus noise_std),
# sign_flip (-attack_scale x delta), scaled (attack_scale x delta).
def _robust() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"aggregator": "mean", "trim_fraction": 0.1, "max_norm": 1.0, "byzantine": 0,
         "krum_selected": 1, "attack": "none", "bad_fraction": 0.0, "attack_scale": 1.0,
         "noise_std": 0.3, "sensor_fraction": 0.3}
    )  # fmt: skip


# How long each worker's jobs take (fedjax_sim.core.speeds): "fixed", "lognormal"
# (sigma), "straggler" (straggler_fraction of the workers, slowdown times slower), "given"
# (durations: one positive number per worker, e.g. "1,1,2,4"). The synchronous family
# waits for its slowest worker; asyncsgd applies jobs as they arrive.
def _speed() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"model": "fixed", "sigma": 0.5, "straggler_fraction": 0.25, "slowdown": 4.0,
         "durations": config_dict.placeholder(str)}
    )  # fmt: skip


def _set_execution_fields(config: ml_collections.ConfigDict) -> None:
    """How a round runs: the client axis, memory, unrolling and devices."""
    # "vmap", "map", "chunked", "sequential" or "auto" (fastest per backend and model)
    config.client_axis = "auto"
    config.chunk_size = 0
    # Device memory a round may use: with client_axis "vmap" (or "auto" choosing it), a round
    # that would need more runs in chunks of as many clients as fit (XLA's memory analysis).
    # 0: no cap.
    config.memory_budget_gb = 8.0
    config.unroll_local_steps = 0  # 0: auto (fully unrolled for the CNN on CPU, else rolled)
    # Devices the round's clients are split over (each runs its share by client_axis): 0 = all
    # of the process's devices when their number divides clients_per_round, else one.
    config.client_devices = 0
    # Devices each client's (worker's) batch is split over: a "data" mesh axis beside the
    # clients axis when above 1 (XLA sums the gradients across it); must divide the devices.
    config.data_devices = 1


def variant(arg: str | None) -> str | None:
    """The variant a config file was asked for (``configs/X.py:smoke``), or None for the default.

    Raises:
      ConfigError: an unknown variant (a typo would otherwise run the full default config).
    """
    if arg and arg not in VARIANTS:
        raise ConfigError(f"unknown config variant {arg!r}; allowed: {', '.join(VARIANTS)}")
    return arg or None
