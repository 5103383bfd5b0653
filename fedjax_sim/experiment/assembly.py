"""An experiment built from a config, ready for its first round: data, task, algorithm, initial
state, evaluation, and the ledger's cost model.

`fedjax_sim.experiment.run.run_experiment` runs what `build_experiment` builds; notebooks and
scripts call `build_experiment` to look at the parts before (or instead of) running them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fedjax_sim.config import registry
from fedjax_sim.config.build import build_algorithm, fit_algorithm_to_memory
from fedjax_sim.config.building_blocks import (
    client_optimizer,
    clients_per_round,
    with_epoch_steps,
)
from fedjax_sim.config.checks import ConfigError, check_config
from fedjax_sim.core import attacks
from fedjax_sim.core.engine import resolve_client_axis
from fedjax_sim.core.finetune import client_variables, make_finetuner
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.tasks import Task, make_task
from fedjax_sim.data import cifar100, digits, shakespeare
from fedjax_sim.data.client_data import ClientData, pooled_client_data, train_client_data
from fedjax_sim.data.dataset import (
    FederatedDataset,
    keep_test_examples,
    label_matched_test_split,
)
from fedjax_sim.data.synthetic import synthetic_images
from fedjax_sim.runtime import ledger, multihost
from fedjax_sim.runtime.evaluation import (
    evaluation_metrics,
    make_evaluator,
    make_statistics_recomputer,
    personalized_evaluation,
    prefixed,
)


def load_dataset(data: ml_collections.ConfigDict) -> FederatedDataset:
    """The federated dataset that ``data`` describes (see the configs for the fields).

    Every random choice about it comes from ``data.seed``, never from the training seed.
    """
    seed = data.seed
    if data.name == "shakespeare":
        if data.get("leaf_train_dir"):
            dataset = shakespeare.load_leaf_json(data.leaf_train_dir, data.leaf_test_dir)
        else:
            dataset = shakespeare.build_shakespeare(
                data.get("texts_dir") or None,
                cache_dir=data.cache_dir,
                min_samples=data.min_samples,
                seed=seed,
            )
        if data.num_clients > dataset.num_clients:
            raise ConfigError(
                f"data.num_clients={data.num_clients} exceeds the {dataset.num_clients} clients "
                f"this data has (with data.min_samples={data.min_samples}); at most "
                f"{dataset.num_clients}, or 0 for all"
            )
        if data.num_clients and data.num_clients < dataset.num_clients:
            keep = np.sort(
                np.random.default_rng(seed).choice(
                    dataset.num_clients, data.num_clients, replace=False
                )
            )
            dataset = dataset.select_clients(keep)
        if data.partition == "iid":
            dataset = shakespeare.iid_reshuffle(dataset, seed)
        return dataset
    if data.name == "digits":
        return digits.make_federated_digits(
            num_clients=data.num_clients,
            partition=data.partition,
            alpha=data.alpha,
            test_fraction=data.test_fraction,
            seed=seed,
        )
    if data.source == "synthetic":
        arrays = synthetic_images(data.synthetic_train, data.synthetic_test, seed=seed)
    else:
        arrays = cifar100.load_cifar100(data.data_dir, source=data.source, download=data.download)
    return cifar100.make_federated_cifar100(
        arrays,
        partition=data.partition,
        num_clients=data.num_clients,
        alpha=data.alpha,
        classes_per_client=data.classes_per_client,
        seed=seed,
    )


def subsample_test(dataset: FederatedDataset, max_examples: int, seed: int) -> FederatedDataset:
    """Keeps at most ``max_examples`` test examples, so periodic evaluation stays cheap.

    With a per-client test split every client keeps up to ``max_examples // K`` of its own test
    examples (seeded), so per-client accuracy rests on every client's data; otherwise a seeded
    uniform subset is kept.
    """
    n = len(dataset.test["y"])
    if not max_examples or n <= max_examples:
        return dataset
    rng = np.random.default_rng(seed)
    test_idx = dataset.test_client_indices
    if test_idx is None:
        keep = np.sort(rng.choice(n, max_examples, replace=False))
    else:
        cap = max(1, max_examples // len(test_idx))
        keep = np.sort(
            np.concatenate([rng.choice(idx, min(cap, len(idx)), replace=False) for idx in test_idx])
        )
    return keep_test_examples(dataset, keep)


def attack_of(config: ml_collections.ConfigDict) -> str:
    """The run's ``robust.attack``; "none" for configs without one (centralized runs)."""
    return config.robust.attack if "robust" in config else "none"


def bad_clients_of(config: ml_collections.ConfigDict, num_clients: int) -> np.ndarray:
    """The ids of the run's bad clients (`fedjax_sim.core.attacks`), none without an attack."""
    if attack_of(config) == "none" or registry.get(config.algorithm).family == "centralized":
        return np.zeros(0, np.int64)
    return attacks.choose_bad_clients(num_clients, config.robust.bad_fraction, config.data.seed)


def build_task(
    config: ml_collections.ConfigDict, num_classes: int, image_shape: tuple | None = None
) -> Task:
    """The task of ``config.model`` (built by `fedjax_sim.models.registry`); image models are
    built for ``image_shape`` (HWC of the data) when given."""
    fields = dict(config.model)
    if image_shape is not None:
        fields["image_shape"] = tuple(image_shape)
    return make_task(config.model.name, num_classes, augment=config.data.augment, **fields)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything `run_experiment` builds before the first round (handy in notebooks)."""

    config: ml_collections.ConfigDict
    dataset: FederatedDataset
    clients: ClientData
    task: Task
    algorithm: Algorithm
    initial_state: Any
    key: jax.Array
    evaluate: Any
    # The keyword arguments its registry entry's HostStep prepared for the builder; {}: none.
    prepared: dict[str, Any] = dataclasses.field(default_factory=dict)
    # seed -> (initial state, data key, evaluate) of the same experiment under another
    # training seed (``config.seed``'s equal the fields above): the runs of ``num_seeds``.
    seeded: Callable[[int], tuple] | None = None


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
    """Checks ``config`` and builds data, task, algorithm and the initial state."""
    check_config(config)
    dataset = load_dataset(config.data)
    host_step = registry.get(config.algorithm).host_step
    held = None
    if host_step is not None:  # before the test split is matched to the clients or subsampled
        dataset, held = host_step.set_aside(config, dataset)
    if config.data.test_per_client:  # each client's own test set, with its label distribution
        dataset = label_matched_test_split(dataset, config.data.test_per_client, config.data.seed)
    dataset = subsample_test(dataset, config.eval_max_examples, config.data.seed)
    bad_clients = bad_clients_of(config, dataset.num_clients)
    if bad_clients.size:
        dataset = attacks.corrupt_dataset(
            dataset, config.robust.attack, bad_clients, seed=config.data.seed,
            noise_std=config.robust.noise_std, sensor_fraction=config.robust.sensor_fraction,
        )  # fmt: skip
    is_centralized = registry.get(config.algorithm).family == "centralized"
    clients = pooled_client_data(dataset) if is_centralized else train_client_data(dataset)
    config = with_epoch_steps(config, dataset.client_sizes())  # E epochs: J from the data
    if bad_clients.size or attack_of(config) in attacks.UPDATE_ATTACKS:  # reaches updates
        flags = attacks.bad_client_flags(dataset.num_clients, bad_clients)
        clients = clients.replace(attributes={**clients.attributes, "bad": jnp.asarray(flags)})
    x = dataset.train["x"]
    task = build_task(config, dataset.num_classes, x.shape[1:] if x.ndim == 4 else None)
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    initial_variables = task.model.init(init_key)
    prepared = {}
    if host_step is not None:
        prepared = host_step.prepare(config, task, dataset, clients, initial_variables, held)
    algorithm = build_algorithm(config, task, dataset.num_clients, **prepared)
    state = algorithm.init(initial_variables)
    algorithm = fit_algorithm_to_memory(
        config, task, clients, state, data_key, algorithm, **prepared
    )
    evaluator = make_evaluator(task, config.eval_batch_size)
    personal_of = algorithm.personal  # None: every client uses the global model
    finetune = None
    if not is_centralized and config.finetune.steps:
        finetune = make_finetuner(
            task, client_optimizer(config),
            personal_of or (lambda state, k: {"params": state.params, "state": state.model_state}),
            steps=config.finetune.steps, batch_size=config.client.batch_size,
            augment=config.data.augment, client_axis=resolve_client_axis(
                config.client_axis, task.model, clients=clients.num_clients),
        )  # fmt: skip
    per_client = registry.get(config.algorithm).per_client_data  # else IID shards

    recompute_from, recompute = None, None
    if not is_centralized and config.model_state == "recompute":
        # BatchNorm statistics from eval_batch_size training examples, drawn once (data.seed)
        rng = np.random.default_rng(config.data.seed)
        n = len(dataset.train["y"])
        keep = np.sort(rng.choice(n, min(n, config.eval_batch_size), replace=False))
        recompute_from, recompute = dataset.train["x"][keep], make_statistics_recomputer(task)

    def evaluate_with(finetune_key):
        return lambda state: evaluate(state, finetune_key)

    def evaluate(state, finetune_key):
        state = multihost.local_copy(state)  # each process evaluates its own copy
        variables = {"params": state.params, "state": state.model_state}
        if recompute_from is not None and jax.tree.leaves(state.model_state):
            variables["state"] = recompute(variables, recompute_from)
        loss, correct, _ = evaluator(variables, dataset.test)
        metrics = evaluation_metrics(dataset, loss, correct, per_client=per_client)
        if personal_of is not None:  # each client's own model (FedBN, FedPer, Ditto, ...)
            own = personalized_evaluation(evaluator, dataset, lambda k: personal_of(state, k))
            metrics.update(prefixed(own, "personal"))
        if finetune is not None:  # each client's model after finetune.steps on its own data
            tuned = finetune(state, clients, jax.random.fold_in(finetune_key, state.round))
            own = personalized_evaluation(evaluator, dataset,
                                          lambda k: client_variables(tuned, k))  # fmt: skip
            metrics.update(prefixed(own, "finetuned"))
        return metrics

    def evaluate_of(seed: int):
        return evaluate_with(jax.random.fold_in(jax.random.key(seed), 0xF1E))  # apart from both

    def seeded(seed: int):
        init_key, data_key = jax.random.split(jax.random.key(seed))
        return algorithm.init(task.model.init(init_key)), data_key, evaluate_of(seed)

    return Experiment(
        config, dataset, clients, task, algorithm, state, data_key, evaluate_of(config.seed),
        prepared, seeded,
    )  # fmt: skip


def cost_model(experiment: Experiment) -> ledger.CostModel:
    """The ledger's `fedjax_sim.runtime.ledger.CostModel` of ``experiment``: FLOPs per example
    by XLA's cost analysis of a training step at the run's batch size, the model's bytes, the
    workers of a synchronization, the config's speeds."""
    config = experiment.config
    entry = registry.get(config.algorithm)
    if entry.family == "centralized":
        batch, workers = config.micro_batch_size or config.batch_size, 1
    else:
        batch = config.client.batch_size
        workers = clients_per_round(config, experiment.clients.num_clients)
    train = experiment.dataset.train
    take = np.arange(batch) % len(train["y"])
    example = {"x": train["x"][take], "y": train["y"][take]}
    state = experiment.initial_state
    variables = {"params": state.params, "state": state.model_state}
    topology = config.ledger.topology
    if topology == "auto":
        topology = entry.ledger.topology
    return ledger.CostModel(
        # e.g. Ditto and APFL train two models per step (global and personal)
        flops_per_example=ledger.training_flops_per_example(experiment.task, variables, example)
        * entry.ledger.compute_factor,
        parameter_bytes=ledger.parameter_bytes(state.params),
        workers=workers,
        train_examples=len(train["y"]),
        topology=topology,
        copies=entry.ledger.tensors_per_message,  # e.g. SCAFFOLD's control variate travels too
        worker_flops_per_s=config.ledger.worker_tflops * 1e12,
        bandwidth_bytes_per_s=config.ledger.bandwidth_gbps * 1e9 / 8,
        latency_s=config.ledger.latency_ms * 1e-3,
    )


def local_parameters(state) -> list[str]:
    """The "/"-joined paths of the parameters each client keeps and the server never averages
    (FedBN's BatchNorm layers, FedPer's head, ...); empty when there are none."""
    clients = getattr(state, "clients", None)
    return list(clients.get("params", {})) if isinstance(clients, dict) else []
