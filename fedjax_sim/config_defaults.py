"""The fields every experiment config has, with defaults; configs/*.py override what differs.

Kept in the library (not in configs/) so that config files, loaded by path, can share them.
"""

from __future__ import annotations

import os

import ml_collections
from ml_collections import config_dict

from fedjax_sim.config_checks import DISTRIBUTED_ALGORITHMS, ConfigError

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
    """Defaults shared by every config of ``dataset`` and ``algorithm``."""
    config = ml_collections.ConfigDict()
    config.algorithm = algorithm
    config.seed = 0  # model initialization and the rounds' sampling; the data has data.seed
    config.rounds = 100  # rounds, or optimizer steps for centralized runs
    config.eval_every = 10
    config.checkpoint_every = 10
    config.eval_batch_size = 500
    # XLA:CPU flags for this model ("auto": measured best, see fedjax_sim.xla_flags; "": none)
    config.xla_flags = "auto"
    config.eval_max_examples = 0  # 0 evaluates on the whole test split
    # A round whose training metrics or parameters are NaN/inf stops the run (the last good
    # checkpoint stays); True runs on.
    config.allow_nan = False
    config.data = _data(dataset)
    # The ledger's simulated wall clock (fedjax_sim.ledger): each worker's sustained TFLOP/s,
    # each link's Gbit/s and each message's latency. Defaults: a data-center GPU and network
    # for centralized and distributed runs, a phone on a mobile link for federated ones.
    # topology "auto": a parameter server for federated runs, a ring all-reduce for
    # distributed ones ("server", "allreduce").
    data_center = algorithm in ("centralized", *DISTRIBUTED_ALGORITHMS)
    config.ledger = ml_collections.ConfigDict(
        {
            "topology": "auto",
            "worker_tflops": 50.0 if data_center else 0.05,
            "bandwidth_gbps": 100.0 if data_center else 0.01,
            "latency_ms": 0.01 if data_center else 50.0,
        }
    )
    # Rounds run per compiled call (a lax.scan over rounds; evaluation and checkpoints land
    # on call boundaries): fewer host round trips for short rounds, same results.
    config.rounds_per_call = 1
    # model.name: lstm (shakespeare); cnn, resnet20, resnet18 (cifar100); cnn (digits).
    # model.conv (CNN): "auto" (loop-friendly on CPU, XLA's elsewhere), "xla", "loop_friendly"
    # model.norm (ResNets): "batch", "group", "layer", "none"; model.groups: GroupNorm's groups
    config.model = ml_collections.ConfigDict(
        {
            "name": "lstm" if dataset == "shakespeare" else "cnn",
            "hidden": 256,
            "conv": "auto",
            "norm": "batch",
            "groups": 2,
        }
    )
    if algorithm == "centralized":
        config.batch_size = 64
        config.optimizer = ml_collections.ConfigDict(
            {
                "name": "sgd",
                "learning_rate": 0.05,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "eps": config_dict.placeholder(float),  # None: the optimizer's default
                # constant, cosine, warmup_cosine, poly, warmup_poly (power decay_power)
                "schedule": "cosine",
                # The schedule's horizon in steps (0: rounds). Set it to lengthen a finished
                # run with its schedule unchanged.
                "schedule_steps": 0,
                "warmup_steps": 0,  # warmup_cosine, warmup_poly
                "decay_power": 2.0,  # poly, warmup_poly (LARS's paper: 2)
                # learning_rate is tuned at base_batch_size and scaled to batch_size by this
                # rule: "none", "linear" (Goyal et al. 2017) or "sqrt" (LAMB's paper)
                "lr_scaling": "none",
                "base_batch_size": 64,
                # no weight decay and no LARS/LAMB trust ratio on biases and norm scales
                "exclude_bias_and_norm": False,
            }
        )
        # Gradient accumulation: batch_size examples per optimizer step, in micro-batches of
        # this size (0: one batch); memory is that of one micro-batch.
        config.micro_batch_size = 0
        return config
    config.clients_per_round = 10  # 0: use participation * num_clients
    config.participation = 0.1
    config.weighting = "examples"
    config.client = ml_collections.ConfigDict(
        {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "eps": config_dict.placeholder(float),  # None: the optimizer's default
            "local_steps": 8,
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
    # The FedOpt family (Reddi et al. 2021): sgd (+momentum: FedAvgM), adam, yogi, adagrad on
    # the negated mean delta. eps is their adaptivity tau (unset: the paper's 1e-3, not optax's);
    # b1, b2 their moment decays; initial_accumulator their v_{-1} (unset: optax's).
    config.server = ml_collections.ConfigDict(
        {
            "optimizer": "sgd",
            "learning_rate": 1.0,
            "momentum": 0.0,
            "eps": config_dict.placeholder(float),
            "b1": 0.9,
            "b2": 0.99,
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
    config.selection = ml_collections.ConfigDict(
        {
            "name": "uniform",
            "gamma": 1.0,
            "candidates": 0,  # power_of_choice's d; 0: 2 * clients_per_round
            "replace": True,
            "dropout": 0.0,
        }
    )
    # BatchNorm statistics: "average" (with the weights), "local" (each client keeps its own),
    # "recompute" (dropped after each round; recomputed from training data to evaluate).
    config.model_state = "average"
    config.fedprox = ml_collections.ConfigDict({"mu": 0.01})
    # How the server combines the client deltas (fedavg, fedbn, fedprox): "mean"
    # (weighted), "median" and "trimmed_mean" (coordinate-wise, trim_fraction from each end),
    # "norm_clipping" (each delta to norm <= max_norm, then the mean), "krum" (byzantine: the
    # bad clients assumed; krum_selected > 1: multi-Krum).
    config.robust = ml_collections.ConfigDict(
        {"aggregator": "mean", "trim_fraction": 0.1, "max_norm": 1.0, "byzantine": 0,
         "krum_selected": 1}
    )  # fmt: skip
    config.scaffold = ml_collections.ConfigDict({"option": "II"})
    config.feddyn = ml_collections.ConfigDict({"alpha": 0.01})
    # algorithm="localsgd" (K = data.num_clients workers, all in every round; H =
    # client.local_steps; outer optimizer = server.*): what the workers' inner optimizer state
    # does at a sync ("reset", "keep", "average"), and the H schedule ("constant";
    # "post_local": H = 1 for the first switch_step rounds).
    # "increasing": H = initial_steps doubled every double_every rounds; "adaptive": from
    # initial_steps, doubled while the workers' divergence < divergence_threshold, halved
    # above twice it (fedjax_sim.algorithms.local_sgd). batch_schedule "noise_scale": each
    # worker's batch starts at initial_batch_size and grows with the gradient noise scale up
    # to client.batch_size; noise_scale True only estimates and reports B_simple.
    config.localsgd = ml_collections.ConfigDict(
        {
            "sync_momentum": "reset",
            "schedule": "constant",
            "switch_step": 0,
            "initial_steps": 1,
            "double_every": 1,
            "divergence_threshold": 0.01,
            "batch_schedule": "constant",
            "initial_batch_size": 0,
            "noise_scale": False,
            "noise_decay": 0.9,
            # with client.schedule: the outer step on the pseudo-gradient / the round's inner
            # rate, times it (fairscale's SlowMo); False: the raw pseudo-gradient (DiLoCo).
            "normalize_outer": False,
        }
    )
    # How long each worker's jobs take (fedjax_sim.algorithms.speeds): "fixed", "lognormal"
    # (sigma), "straggler" (straggler_fraction of the workers, slowdown times slower). The
    # synchronous family waits for its slowest worker; asyncsgd applies jobs as they arrive.
    config.speed = ml_collections.ConfigDict(
        {"model": "fixed", "sigma": 0.5, "straggler_fraction": 0.25, "slowdown": 4.0}
    )
    # algorithm="asyncsgd" (a parameter server; workers as for localsgd, whose sync_momentum
    # "reset"/"keep" says whether a worker keeps its inner optimizer state across its jobs):
    # staleness_scaling "none" or "polynomial" ((1 + tau)^-staleness_exponent).
    config.asynchronous = ml_collections.ConfigDict(
        {"staleness_scaling": "none", "staleness_exponent": 0.5}
    )
    # algorithm="gossip" (decentralized; client.* is each worker's optimizer, client.local_steps
    # the gradient steps per round): graph "ring" or "random_pairs", communications pairwise
    # averagings per gradient step, accelerate: A2CiD2's continuous momentum (False: plain
    # gossip SGD, its baseline).
    config.gossip = ml_collections.ConfigDict(
        {"graph": "ring", "communications": 1, "accelerate": True}
    )
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
    return config


def variant(arg: str | None) -> str | None:
    """The variant a config file was asked for (``configs/X.py:smoke``), or None for the default.

    Raises:
      ConfigError: an unknown variant (a typo would otherwise run the full default config).
    """
    if arg and arg not in VARIANTS:
        raise ConfigError(f"unknown config variant {arg!r}; allowed: {', '.join(VARIANTS)}")
    return arg or None


def shakespeare_main_job(algorithm: str, arg: str | None) -> ml_collections.ConfigDict:
    """The README's main job (100 Shakespeare clients, 10 per round, J=4, B=10, LSTM) run by
    ``algorithm``, so that every algorithm's Shakespeare config shares its setting."""
    config = base_config("shakespeare", algorithm)
    config.data.num_clients = 100
    config.clients_per_round = 10
    config.client.local_steps = 4
    config.client.batch_size = 10
    config.client.learning_rate = 1.0
    config.rounds = 150
    config.eval_every = 15
    config.checkpoint_every = 15
    config.eval_max_examples = 2000
    if variant(arg) == "smoke":
        config.data.num_clients = 12
        config.clients_per_round = 3
        config.client.local_steps = 2
        config.client.batch_size = 4
        config.model.hidden = 32
        config.rounds = 4
        config.eval_every = 2
        config.checkpoint_every = 2
        config.eval_max_examples = 200
    return config


def cifar100_federated(algorithm: str, arg: str | None) -> ml_collections.ConfigDict:
    """FedAvg's CIFAR-100 setting (Dirichlet(0.5) over 100 clients, 10 per round, J=8, B=64)
    run by ``algorithm``; the smoke variant runs on synthetic CIFAR-shaped data."""
    config = base_config("cifar100", algorithm)
    config.rounds = 2000
    config.eval_every = 50
    config.checkpoint_every = 50
    if variant(arg) == "smoke":
        config.data.source = "synthetic"
        config.data.synthetic_train = 400
        config.data.synthetic_test = 100
        config.data.num_clients = 8
        config.clients_per_round = 2
        config.client.local_steps = 2
        config.client.batch_size = 8
        config.rounds = 2
        config.eval_every = 1
        config.checkpoint_every = 1
    return config


def digits_workers(algorithm: str, arg: str | None) -> ml_collections.ConfigDict:
    """The distributed track's offline setting: the course CNN on scikit-learn's digits
    (1,438 training images) sharded IID over K = 8 workers, B = 16 per worker."""
    config = base_config("digits", algorithm)
    config.data.num_clients = 8
    config.eval_batch_size = 400
    if algorithm == "centralized":
        config.batch_size = 128
        config.optimizer.weight_decay = 0.0
        config.optimizer.learning_rate = 0.05
        config.rounds = 450  # 40 epochs of 1,438 examples at B = 128
        config.eval_every = 45
        config.checkpoint_every = 45
    else:
        config.memory_budget_gb = 0.0  # the workers' round is small; skip the memory check
        config.participation = 1.0
        config.clients_per_round = 0
        config.weighting = "uniform"
        config.client.batch_size = 16
        config.client.local_steps = 8
        config.client.momentum = 0.9
        config.client.learning_rate = 0.01  # at 0.05 (momentum 0.9, B = 16) the CNN did not train
        config.rounds = 56  # 40 epochs: 40 * 1438 / (8 workers * 16 * 8 steps)
        config.eval_every = 7
        config.checkpoint_every = 7
    if variant(arg) == "smoke":
        config.data.num_clients = 2
        config.eval_every = 2
        config.checkpoint_every = 2
        config.rounds = 4
        if algorithm == "centralized":
            config.batch_size = 32
        else:
            config.client.batch_size = 8
            config.client.local_steps = 2
    return config


def cifar100_workers(algorithm: str, arg: str | None) -> ml_collections.ConfigDict:
    """The distributed track on CIFAR-100 (course CNN, IID shards): K = 8 workers of B = 32
    and H = 8 (``algorithm`` localsgd, asyncsgd or gossip), or, for ``"centralized"``, LARS
    at batch 4,096 in micro-batches of 256; 50 epochs. The smoke variant runs on synthetic
    CIFAR-shaped data."""
    config = base_config("cifar100", algorithm)
    config.data.partition = "iid"
    config.data.num_clients = 8
    if algorithm == "centralized":
        opt = config.optimizer
        config.batch_size, config.micro_batch_size = 4096, 256
        opt.name, opt.learning_rate, opt.momentum, opt.weight_decay = "lars", 2.0, 0.9, 5e-4
        opt.lr_scaling, opt.base_batch_size = "sqrt", 64
        opt.schedule, opt.warmup_steps, opt.exclude_bias_and_norm = "warmup_poly", 61, True
        config.rounds = 610  # 50 epochs of 50,000 images at batch 4,096
        config.eval_every = config.checkpoint_every = 61
    else:
        config.memory_budget_gb = 0.0
        config.participation = 1.0
        config.clients_per_round = 0
        config.weighting = "uniform"
        client = config.client
        client.batch_size, client.local_steps = 32, 8
        client.learning_rate, client.momentum, client.weight_decay = 0.05, 0.9, 5e-4
        config.rounds = 1221  # 50 epochs: 50 * 50,000 / (8 workers * 32 * 8 steps)
        config.eval_every = config.checkpoint_every = 111
    if variant(arg) == "smoke":
        config.data.source = "synthetic"
        config.data.synthetic_train = 400
        config.data.synthetic_test = 100
        config.data.num_clients = 2
        config.rounds = 4
        config.eval_every = config.checkpoint_every = 2
        if algorithm == "centralized":
            config.batch_size, config.micro_batch_size = 32, 16
            config.optimizer.warmup_steps = 1
        else:
            config.client.batch_size, config.client.local_steps = 8, 2
    return config
