"""The fields every experiment config has, with defaults; configs/*.py override what differs.

Kept in the library (not in configs/) so that config files, loaded by path, can share them.
"""

from __future__ import annotations

import os

import ml_collections


def _data(name: str) -> ml_collections.ConfigDict:
    cache = os.path.join(os.path.expanduser("~"), ".cache", "fedjax_sim")
    return ml_collections.ConfigDict(
        {
            "name": name,
            # shakespeare: "natural" (a client per play and role) or "iid" (same sizes, reshuffled)
            # cifar100: "iid", "dirichlet" (label skew, alpha) or "shards" (classes_per_client)
            "partition": "natural" if name == "shakespeare" else "dirichlet",
            "num_clients": 0 if name == "shakespeare" else 100,  # shakespeare: 0 keeps all clients
            "alpha": 0.5,
            "classes_per_client": 10,
            "augment": name == "cifar100",
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
            "split_seed": 0,
        }
    )


def base_config(dataset: str, algorithm: str) -> ml_collections.ConfigDict:
    """Defaults shared by every config of ``dataset`` and ``algorithm``."""
    config = ml_collections.ConfigDict()
    config.algorithm = algorithm
    config.seed = 0
    config.rounds = 100  # rounds, or optimizer steps for centralized runs
    config.eval_every = 10
    config.checkpoint_every = 10
    config.eval_batch_size = 500
    # XLA:CPU flags for this model ("auto": measured best, see fedjax_sim.engine; "": none)
    config.xla_flags = "auto"
    config.eval_max_examples = 0  # 0 evaluates on the whole test split
    config.data = _data(dataset)
    # model.conv (CNN): "auto" (loop-friendly on CPU, XLA's elsewhere), "xla", "loop_friendly"
    config.model = ml_collections.ConfigDict(
        {"name": "lstm" if dataset == "shakespeare" else "cnn", "hidden": 256, "conv": "auto"}
    )
    if algorithm == "centralized":
        config.batch_size = 64
        config.optimizer = ml_collections.ConfigDict(
            {
                "name": "sgd",
                "learning_rate": 0.05,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "schedule": "cosine",
            }
        )
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
            "local_steps": 8,
            "local_epochs": 0,
            "batch_size": 64,
        }
    )
    config.server = ml_collections.ConfigDict(
        {"optimizer": "sgd", "learning_rate": 1.0, "momentum": 0.0}
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
    return config
