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


# The dataset and its clients (fedjax_sim.experiment.assembly.load_dataset).
def _data(name: str) -> ml_collections.ConfigDict:
    cache = os.path.join(os.path.expanduser("~"), ".cache", "fedjax_sim")
    return ml_collections.ConfigDict(
        {
            "name": name,  # "shakespeare" (LEAF, offline), "cifar100" or "digits" (scikit-learn)
            # shakespeare: "natural" (a client per play and role) or "iid" (same sizes, reshuffled)
            # cifar100: "iid", "dirichlet" (label skew, alpha) or "shards" (classes_per_client)
            # digits: "iid" or "dirichlet"
            "partition": {"shakespeare": "natural", "digits": "iid"}.get(name, "dirichlet"),
            # the clients, or the distributed track's workers; shakespeare: how many of the
            # (play, role) clients to keep, drawn with seed (0: all)
            "num_clients": {"shakespeare": 0, "digits": 8}.get(name, 100),
            # Dirichlet concentration of the "dirichlet" label skew (cifar100, digits): small =
            # strong skew (one class per client as it nears 0), large approaches IID
            "alpha": 0.5,
            "classes_per_client": 10,  # cifar100's "shards": the classes each client holds
            # image training augmentation: a random crop of the 4-pixel padded image, a flip
            "augment": name == "cifar100",
            "test_fraction": 0.2,  # digits: the share of the 1,797 images held out
            # cifar100, digits: > 0 gives every client this many test examples drawn with its
            # training label distribution (per-client accuracy on them); 0: per-class estimate
            "test_per_client": 0,
            # cifar100: the folder of the official archives (source "tfds": tfds's data dir)
            "data_dir": os.path.join(cache, "cifar100"),
            # cifar100: "auto" (the python archive, then the binary one), "python", "binary",
            # "tfds" or "synthetic" (CIFAR-shaped random data for smoke runs and benchmarks)
            "source": "auto",
            "download": False,  # cifar100: fetch the official archive (MD5-checked) if missing
            "synthetic_train": 5000,  # cifar100, source "synthetic": the training images
            "synthetic_test": 1000,  # cifar100, source "synthetic": the test images
            # shakespeare: a folder of *_gut.txt plays ("": the `shakespeare` package's texts)
            "texts_dir": "",
            "leaf_train_dir": "",  # shakespeare: LEAF's train JSON folder, read instead of plays
            "leaf_test_dir": "",  # shakespeare: LEAF's test JSON folder (with leaf_train_dir)
            "cache_dir": os.path.join(cache, "shakespeare"),  # shakespeare: the built task's cache
            # shakespeare: clients with at most this many samples are dropped (as LEAF does)
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
    # the algorithm's entry in fedjax_sim.config.registry: fedavg, fedprox, ... (federated),
    # localsgd, asyncsgd, gossip (distributed) or centralized
    config.algorithm = algorithm
    _set_run_fields(config)
    config.data = _data(dataset)
    config.ledger = _ledger(family)
    config.wandb = _wandb()
    # Rounds run per compiled call (a lax.scan over rounds; evaluation and checkpoints land
    # on call boundaries): fewer host round trips for short rounds, same results.
    config.rounds_per_call = 1
    config.model = _model(dataset)
    if family == "centralized":
        config.batch_size = 64  # examples per optimizer step (optimizer.lr_scaling scales to it)
        entry = registry.ALGORITHMS[algorithm]
        config[entry.group] = entry.defaults()
        # Gradient accumulation: batch_size examples per optimizer step, in micro-batches of
        # this size (0: one batch); memory is that of one micro-batch.
        config.micro_batch_size = 0
        return config
    config.clients_per_round = 10  # 0: use participation * num_clients
    # with clients_per_round 0: the share of data.num_clients drawn each round (at least one)
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
    config.eval_every = 10  # rounds between evaluations, and after the last (0: only then)
    config.checkpoint_every = 10  # rounds between checkpoints, and the last (0: only that)
    # evaluation's batch size; model_state "recompute": the training examples it uses
    config.eval_batch_size = 500
    # XLA:CPU flags for this model ("auto": measured best, and the LSTM's malloc arena cap, see
    # fedjax_sim.experiment.xla_flags; "": none)
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


# The ledger's simulated wall clock (fedjax_sim.runtime.ledger). Defaults: a data-center GPU
# and network for centralized and distributed runs, a phone on a mobile link for federated ones.
def _ledger(family: str | None) -> ml_collections.ConfigDict:
    data_center = family not in ("federated", None)
    return ml_collections.ConfigDict(
        {
            # "auto": the algorithm's (a parameter server for federated runs, a ring all-reduce
            # for localsgd, gossip pairs for gossip), or "server", "allreduce", "gossip"
            "topology": "auto",
            "worker_tflops": 50.0 if data_center else 0.05,  # each worker's sustained TFLOP/s
            "bandwidth_gbps": 100.0 if data_center else 0.01,  # each link's Gbit/s
            "latency_ms": 0.01 if data_center else 50.0,  # each message's latency, milliseconds
        }
    )


# Optional Weights & Biases logging (fedjax_sim.runtime.wandb_log; pip install
# 'fedjax-sim[wandb]'), beside metrics.jsonl and TensorBoard. A resumed run continues the same
# W&B run (its id is in WORKDIR/wandb.json); these fields may change when resuming.
def _wandb() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "project": "",  # the W&B project to log to ("": no W&B logging)
            "entity": "",  # the W&B team or user ("": your default entity)
            "name": "",  # the W&B run's name ("": the workdir's folder name)
            "group": "",  # the W&B group of runs, e.g. a sweep's cells ("": none)
            "tags": "",  # comma-separated W&B tags, e.g. "fedavg,baseline"
            # "online" (needs `wandb login`) or "offline" (files in WORKDIR/wandb, for a later
            # `wandb sync`)
            "mode": "online",
        }
    )


# The model's arguments (fedjax_sim.models.registry): `name` picks the builder, which takes the
# fields it has and ignores the other models'.
def _model(dataset: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # lstm (shakespeare); cnn, resnet20, resnet18, vit (cifar100); cnn, resnet20, vit
            # (digits)
            "name": "lstm" if dataset == "shakespeare" else "cnn",
            "hidden": 256,  # lstm: the units of each LSTM layer
            # cnn: "auto" (winograd on CPU, XLA's elsewhere), "xla", "loop_friendly", "winograd"
            "conv": "auto",
            "norm": "batch",  # resnet20, resnet18: "batch", "group", "layer" or "none"
            "groups": 2,  # resnet20, resnet18 with norm "group": GroupNorm's groups
            "patch": 4,  # vit: the side of a square patch, in pixels
            "depth": 4,  # vit: the encoder blocks
            "width": 128,  # vit: the width each patch is projected to
            "heads": 4,  # vit: the attention heads of a block
            "mlp_ratio": 2,  # vit: a block's MLP has mlp_ratio x width GELU units
        }
    )


# Each client's (each worker's, for the distributed track) optimizer and local work.
def _client() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "optimizer": "sgd",  # sgd, adam (AdamW), adagrad, yogi, lars, lamb or optax_lars
            "learning_rate": 0.05,  # the client (inner) learning rate
            "momentum": 0.0,  # sgd, lars, optax_lars: heavy-ball momentum, used as given (0: none)
            # L2 weight decay: added to the gradient for sgd, adagrad and yogi, decoupled for
            # adam, lamb and the LARS
            "weight_decay": 0.0,
            # not sgd: the denominator's epsilon (None: the optimizer's default)
            "eps": config_dict.placeholder(float),
            # adam, yogi, lamb: the first moment decay (None: optax's, 0.9)
            "b1": config_dict.placeholder(float),
            # adam, yogi, lamb: the second moment decay (None: optax's, 0.999)
            "b2": config_dict.placeholder(float),
            # J (H for the distributed track; gossip: ticks): the local steps per round
            "local_steps": 8,
            # E > 0: each client makes E passes over its data, ceil(E n_k / B) steps (the
            # round compiles those of the largest client, at most 1,000); local_steps unread
            "local_epochs": 0,
            "batch_size": 64,  # B: the examples of one local step
            # How many of the local_steps each client runs: "fixed" (all), "proportional" (to
            # its data size; the largest runs all), "random" (uniform in [1, local_steps]).
            "local_work": "fixed",
            # "reset": a fresh client optimizer every round; "keep": each client's persists.
            "optimizer_state": "reset",
            # localsgd only: the inner learning rate per round ("constant", "cosine",
            # "warmup_cosine", "poly", "warmup_poly" over `rounds`).
            "schedule": "constant",
            "warmup_steps": 0,  # localsgd's client.schedule: the warmup, in rounds
        }
    )


# The server optimizer on the negated aggregated delta (the outer optimizer of the
# distributed track; fedjax_sim.core.fedopt.server_optimizer): adam, yogi, adagrad = FedAdam,
# FedYogi, FedAdagrad exactly as Reddi et al. 2021's Algorithm 2 (no bias correction);
# optax_adam, optax_yogi, optax_adagrad = optax's own (not Algorithm 2).
# A field the chosen optimizer does not read is refused.
def _server() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # sgd (lr 1: FedAvg), adam, yogi, adagrad, optax_adam, optax_yogi, optax_adagrad,
            # lars, optax_lars or lamb
            "optimizer": "sgd",
            "learning_rate": 1.0,  # the server (outer) learning rate; asyncsgd: per arrival
            # sgd, lars, optax_lars: heavy-ball momentum, used as given (sgd: FedAvgM, SlowMo's
            # beta; 0: none)
            "momentum": 0.0,
            # adam, yogi, adagrad: Algorithm 2's tau; optax_*, lamb, lars, optax_lars: their eps
            # (None: 1e-3; the LARS: their own default)
            "eps": config_dict.placeholder(float),
            # the first moment decay beta_1 of adam, yogi, adagrad, optax_adam, optax_yogi and
            # lamb (None: 0.9; 0: no momentum)
            "b1": config_dict.placeholder(float),
            # the second moment decay beta_2 of adam, yogi, optax_adam, optax_yogi and lamb
            # (None: 0.99)
            "b2": config_dict.placeholder(float),
            # v_{-1} of adam, yogi, adagrad (None: tau^2), optax_yogi, optax_adagrad (None:
            # optax's)
            "initial_accumulator": config_dict.placeholder(float),
            # the learning rate over `rounds`: constant, cosine, warmup_cosine, poly, warmup_poly
            "schedule": "constant",
            "warmup_steps": 0,  # warmup_cosine, warmup_poly: the warmup, in rounds
            "nesterov": False,  # Nesterov momentum of an sgd server (DiLoCo's outer step)
        }
    )


# Who takes part in a round (fedjax_sim.core.selection), drawn inside the compiled round.
def _selection() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # uniform; proportional (to data size); skewed (fixed p ~ Dirichlet(gamma));
            # power_of_choice (candidates d, the C with the highest loss)
            "name": "uniform",
            "gamma": 1.0,  # skewed: the Dirichlet concentration; SMALL gamma = STRONG skew
            "candidates": 0,  # power_of_choice's d; 0: 2 * clients_per_round
            "replace": True,  # proportional, skewed: draw with replacement
            "dropout": 0.0,  # the chance that a selected client fails to report
        }
    )


# How the server combines the client deltas (fedavg, fedprox, fedbn, fedseq and the
# personalization methods; fedjax_sim.core.robust_aggregation), and the attacks of bad clients
# (fedjax_sim.core.attacks).
def _robust() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # "mean" (weighted), "median", "trimmed_mean" (both coordinate-wise),
            # "norm_clipping", "krum" or "noise_aware" (FedGW-style: trust = positive cosine
            # with the median delta)
            "aggregator": "mean",
            "trim_fraction": 0.1,  # trimmed_mean: the share dropped from each end
            "max_norm": 1.0,  # norm_clipping: each delta scaled to norm <= max_norm, then mean
            "byzantine": 0,  # krum: the bad clients it assumes
            "krum_selected": 1,  # krum: > 1 averages that many best deltas (multi-Krum)
            # what the bad clients do: none, label_flip, random_labels, gaussian_noise,
            # broken_sensor, sign_flip (-attack_scale x delta), scaled (attack_scale x delta)
            "attack": "none",
            "bad_fraction": 0.0,  # the share of the clients that are bad (drawn from data.seed)
            "attack_scale": 1.0,  # sign_flip, scaled: the factor of the sent delta
            # gaussian_noise, broken_sensor: the pixel noise's std, as a share of the range
            "noise_std": 0.3,
            "sensor_fraction": 0.3,  # broken_sensor: the share of dead pixels of each camera
        }
    )


# How long each worker's jobs take (fedjax_sim.core.speeds; read by localsgd, asyncsgd and
# gossip). The synchronous family waits for its slowest worker; asyncsgd applies jobs as they
# arrive.
def _speed() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # "fixed", "lognormal" (sigma), "straggler" (straggler_fraction of the workers,
            # slowdown times slower) or "given" (durations)
            "model": "fixed",
            "sigma": 0.5,  # lognormal: sigma of the durations (mean 1, per worker and job)
            "straggler_fraction": 0.25,  # straggler: the share of slow workers (from the seed)
            "slowdown": 4.0,  # straggler: how many times slower a slow worker is
            # given: one positive relative duration per worker, e.g. "1,1,2,4"
            "durations": config_dict.placeholder(str),
        }
    )


def _set_execution_fields(config: ml_collections.ConfigDict) -> None:
    """How a round runs: the client axis, memory, unrolling and devices."""
    # "vmap", "map", "chunked", "sequential" or "auto" (fastest per backend and model)
    config.client_axis = "auto"
    config.chunk_size = 0  # client_axis "chunked": the clients of one vectorized chunk
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
