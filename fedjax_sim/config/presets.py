"""The shared settings of the config files: one function per track and dataset, each the
base config (`fedjax_sim.config.defaults.base_config`) with the setting's fields, run by the
algorithm a config file names, so that every algorithm of a comparison shares its setting."""

from __future__ import annotations

import ml_collections

from fedjax_sim.config import registry
from fedjax_sim.config.defaults import base_config, variant


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
    if registry.is_centralized(algorithm):
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
        if registry.is_centralized(algorithm):
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
    if registry.is_centralized(algorithm):
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
        if registry.is_centralized(algorithm):
            config.batch_size, config.micro_batch_size = 32, 16
            config.optimizer.warmup_steps = 1
        else:
            config.client.batch_size, config.client.local_steps = 8, 2
    return config


def digits_federated(algorithm: str, arg: str | None) -> ml_collections.ConfigDict:
    """The federated track's quick offline setting: the course CNN on scikit-learn's digits,
    K = 20 clients with Dirichlet(0.5) label skew, 10 per round, J = 8 SGD steps of B = 16,
    60 rounds, run by ``algorithm``."""
    config = base_config("digits", algorithm)
    config.data.partition = "dirichlet"
    config.data.alpha = 0.5
    config.data.num_clients = 20
    config.clients_per_round = 10
    config.eval_batch_size = 400
    config.memory_budget_gb = 0.0  # a small round; skip the memory check
    config.client.batch_size = 16
    config.client.local_steps = 8
    config.client.learning_rate = 0.05
    config.rounds = 60
    config.eval_every = config.checkpoint_every = 10
    if variant(arg) == "smoke":
        config.data.num_clients = 6
        config.clients_per_round = 3
        config.client.batch_size = 8
        config.client.local_steps = 2
        config.rounds = 4
        config.eval_every = config.checkpoint_every = 2
    return config
