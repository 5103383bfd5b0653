"""What the registry entries' builders share: the clients of a round, the optimizers, the
workers' job durations, and a federated `Algorithm` assembled from an algorithm's parts.

Below `fedjax_sim.config.registry` (whose entries call these) and above `fedjax_sim.config.fields`;
it reads no entry, so an entry passes in what its own fields say (its paper's weighting).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from fedjax_sim.config.fields import ConfigError, build_optimizer
from fedjax_sim.core.attacks import attack_updates
from fedjax_sim.core.engine import Execution
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.robust_aggregation import make_aggregator
from fedjax_sim.core.round import federated_round
from fedjax_sim.core.selection import make_sampler
from fedjax_sim.core.speeds import make_job_durations
from fedjax_sim.core.tasks import Task, cross_entropy


def clients_per_round(config: ml_collections.ConfigDict, num_clients: int) -> int:
    """C: ``clients_per_round``, or ``participation`` x K when it is 0.

    Raises:
      ConfigError: ``clients_per_round`` exceeds the K clients of the population.
    """
    if config.clients_per_round > num_clients:
        raise ConfigError(
            f"clients_per_round={config.clients_per_round} exceeds the {num_clients} clients of "
            f"the population; at most {num_clients}"
        )
    return config.clients_per_round or max(1, round(config.participation * num_clients))


def job_durations(config, num_workers: int):
    """Each worker's job durations (`fedjax_sim.core.speeds.make_job_durations`) of ``speed``."""
    speed = config.speed
    try:
        return make_job_durations(
            speed.model, num_workers=num_workers, seed=config.seed, sigma=speed.sigma,
            straggler_fraction=speed.straggler_fraction, slowdown=speed.slowdown,
            durations=speed.durations,
        )  # fmt: skip
    except ValueError as error:  # durations for another number of workers
        raise ConfigError(str(error)) from error


def optimizers(config):
    """The client (or inner) and the server (or outer) optimizers of ``config``."""
    return build_optimizer(config, "client"), build_optimizer(config, "server")


def client_optimizer(config):
    """The client (or inner) optimizer of ``config`` (also the fine-tuning optimizer)."""
    return optimizers(config)[0]


def federated_algorithm(
    config,
    task: Task,
    num_clients: int,
    execution: Execution,
    parts,
    *,
    weighting: str,
    run_members=None,
) -> Algorithm:
    """A federated `Algorithm`: `fedjax_sim.core.round.federated_round` over the parts
    ``parts(config, task, objective, client_tx, server_tx, aggregator, options)`` (``options``:
    num_clients, model_state, client_optimizer_state, unroll), with ``config.robust.attack`` on
    the clients' updates, aggregated with ``config.weighting`` (``"auto"``: ``weighting``, the
    paper's). ``run_members(parts, round_options)``, when given, runs the round instead (FedSeq's
    superclients)."""
    count = clients_per_round(config, num_clients)
    sampler = None if run_members is not None else _sampler(config, count, num_clients)
    objective = cross_entropy(task, augment=config.data.augment)
    client_tx, server_tx = optimizers(config)
    aggregator = _aggregator(config.robust, count)
    options = {
        "num_clients": num_clients,
        "model_state": config.model_state,
        "client_optimizer_state": config.client.optimizer_state,
        "unroll": execution.unroll,
    }
    built = parts(config, task, objective, client_tx, server_tx, aggregator, options)
    built = attack_updates(built, config.robust.attack, config.robust.attack_scale)
    round_options = {
        "local_steps": config.client.local_steps,
        "batch_size": config.client.batch_size,
        "local_epochs": config.client.local_epochs or None,
        "weighting": weighting if config.weighting == "auto" else config.weighting,
        "execution": execution,
    }
    if run_members is not None:
        return run_members(built, round_options)
    round_fn = federated_round(
        built, task=task, sampler=sampler, local_work=config.client.local_work, **round_options
    )
    return Algorithm(init=built.init, round_fn=round_fn, personal=built.personal)


def _sampler(config, count: int, num_clients: int):
    """The sampler of ``count`` clients a round that ``config.selection`` names."""
    selection = config.selection
    return make_sampler(
        selection.name,
        count,
        num_clients,
        gamma=selection.gamma,
        candidates=selection.candidates,
        replace=selection.replace,
        dropout=selection.dropout,
        seed=config.data.seed,
    )


def _aggregator(robust, count: int):
    """The aggregator that ``robust`` names, checked against the ``count`` clients a round
    (known once the data is)."""
    try:
        return make_aggregator(
            robust.aggregator, trim_fraction=robust.trim_fraction, max_norm=robust.max_norm,
            byzantine=robust.byzantine, krum_selected=robust.krum_selected,
            clients_per_round=count,
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(str(error)) from error


MAX_EPOCH_STEPS = 1000  # the most local steps a round compiles for client.local_epochs


def with_epoch_steps(
    config: ml_collections.ConfigDict, client_sizes: np.ndarray
) -> ml_collections.ConfigDict:
    """``config`` with ``client.local_steps`` derived from ``client.local_epochs`` = E > 0:
    each client makes E passes over its n_k examples, ceil(E n_k / B) steps, and the round
    compiles J = ceil(E max_k n_k / B) steps (a client's steps past its E passes are masked).
    With E = 0 (or a centralized config), ``config`` itself. The config a run records keeps
    the fields as given; this copy only builds the round.

    Raises:
      ConfigError: J would exceed `MAX_EPOCH_STEPS`; the message says what to set.
    """
    if "client" not in config or not config.client.local_epochs:  # centralized: no clients
        return config
    epochs, batch = config.client.local_epochs, config.client.batch_size
    steps = int(np.ceil(epochs * int(np.max(client_sizes)) / batch))
    if steps > MAX_EPOCH_STEPS:
        raise ConfigError(
            f"client.local_epochs={epochs} at client.batch_size={batch} takes the largest "
            f"client ({int(np.max(client_sizes))} examples) {steps} local steps a round, over "
            f"the {MAX_EPOCH_STEPS} a round compiles: raise client.batch_size, lower "
            "client.local_epochs, or set local_epochs=0 and client.local_steps"
        )
    derived = config.copy_and_resolve_references()
    derived.client.local_steps = steps
    return derived
