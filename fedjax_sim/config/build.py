"""From a config to an `Algorithm`: the algorithm's parts, its sampler, and the execution.

The algorithm (``config.algorithm`` and its groups) and the execution (``client_axis``,
``chunk_size``, ``client_devices``, ``unroll_local_steps``) are built separately, so fitting a
round to a memory budget changes the execution alone.
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
from absl import logging

from fedjax_sim.algorithms.async_sgd import async_sgd
from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.algorithms.feddyn import feddyn_parts
from fedjax_sim.algorithms.fednova import fednova_parts
from fedjax_sim.algorithms.fedprox import fedprox_parts
from fedjax_sim.algorithms.fedseq import fedseq_algorithm
from fedjax_sim.algorithms.gossip import gossip_sgd
from fedjax_sim.algorithms.local_sgd import (
    AdaptiveSteps,
    BatchGrowth,
    InnerSchedule,
    local_sgd,
    local_steps_schedule,
    post_local_rounds,
    resolved_sync_momentum,
)
from fedjax_sim.algorithms.personalized import (
    PERSONALIZATION,
    head_predicate,
    split_parts,
    two_model_parts,
)
from fedjax_sim.algorithms.scaffold import scaffold_parts
from fedjax_sim.config.checks import (
    DISTRIBUTED_ALGORITHMS,
    FEDERATED_ALGORITHMS,
    ConfigError,
    build_optimizer,
    optimizer_arguments,
    resolved_weighting,
)
from fedjax_sim.core.attacks import attack_updates
from fedjax_sim.core.engine import (
    Execution,
    client_mesh_for,
    clients_within_memory_budget,
    resolve_client_axis,
    resolve_unroll,
    steps_in_program,
)
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.optimizers import make_optimizer, make_schedule, scaled_learning_rate
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


def execution_for(config: ml_collections.ConfigDict, task: Task, num_clients: int) -> Execution:
    """The config's execution settings, ``"auto"`` resolved for this backend and model."""
    per_round = clients_per_round(config, num_clients)
    mesh = client_mesh_for(config.client_devices, per_round, config.data_devices)
    steps = config.client.local_steps
    unroll = config.unroll_local_steps or resolve_unroll(task.model, num_steps=steps)
    devices = mesh.shape["clients"] if mesh is not None else 1
    client_axis = resolve_client_axis(
        config.client_axis, task.model, clients=per_round // devices,
        steps_in_program=steps_in_program(unroll, steps) if steps else 1,
    )  # fmt: skip
    return Execution(
        client_axis=client_axis, chunk_size=config.chunk_size or None, mesh=mesh, unroll=unroll
    )


def _centralized(config, task: Task) -> Algorithm:
    name, learning_rate, options = optimizer_arguments(config, "optimizer")
    opt = config.optimizer
    learning_rate = scaled_learning_rate(
        learning_rate, config.batch_size, opt.base_batch_size, opt.lr_scaling
    )
    tx = make_optimizer(name, learning_rate, **options)
    micro = config.micro_batch_size or config.batch_size
    accumulation = config.batch_size // micro
    return centralized(
        task, tx, batch_size=config.batch_size, accumulation_steps=accumulation,
        augment=config.data.augment, unroll=resolve_unroll(task.model, num_steps=accumulation),
    )  # fmt: skip


def _job_durations(config, num_workers: int):
    speed = config.speed
    try:
        return make_job_durations(
            speed.model, num_workers=num_workers, seed=config.seed, sigma=speed.sigma,
            straggler_fraction=speed.straggler_fraction, slowdown=speed.slowdown,
            durations=speed.durations,
        )  # fmt: skip
    except ValueError as error:  # durations for another number of workers
        raise ConfigError(str(error)) from error


def _local_sgd(config, task: Task, num_workers: int, execution: Execution) -> Algorithm:
    client_tx, outer_tx = _optimizers(config)
    client, options = config.client, config.localsgd
    adaptive = None
    if options.schedule == "adaptive":
        adaptive = AdaptiveSteps(options.initial_steps, options.divergence_threshold)
    growth = None
    if options.batch_schedule == "noise_scale" or options.noise_scale:
        grow = options.batch_schedule == "noise_scale"
        initial = options.initial_batch_size if grow and options.initial_batch_size else None
        growth = BatchGrowth(initial or client.batch_size, options.noise_decay, grow)
    synchronous, one_step = 0, options.switch_step
    if options.schedule == "post_local":
        synchronous, one_step = post_local_rounds(options.switch_step, options.before_switch)
    inner_schedule = None
    if client.schedule != "constant":
        factor = make_schedule(1.0, client.schedule, total_steps=config.rounds,
                               warmup_steps=client.warmup_steps, field="client")  # fmt: skip
        inner_schedule = InnerSchedule(factor, options.normalize_outer)
    return local_sgd(
        cross_entropy(task, augment=config.data.augment),
        client_tx,
        outer_tx,
        num_workers=num_workers,
        local_steps=client.local_steps,
        batch_size=client.batch_size,
        sync_momentum=resolved_sync_momentum(options.sync_momentum, options.schedule),
        steps_schedule=local_steps_schedule(
            options.schedule,
            client.local_steps,
            one_step,
            options.initial_steps,
            options.double_every,
        ),  # fmt: skip
        adaptive_steps=adaptive,
        batch_growth=growth,
        inner_schedule=inner_schedule,
        synchronous_rounds=synchronous,
        durations=_job_durations(config, num_workers),
        execution=execution,
    )


def _async_sgd(config, task: Task, num_workers: int, execution: Execution) -> Algorithm:
    client_tx, outer_tx = _optimizers(config)
    options = config.asynchronous
    return async_sgd(
        cross_entropy(task, augment=config.data.augment),
        client_tx,
        outer_tx,
        num_workers=num_workers,
        local_steps=config.client.local_steps,
        batch_size=config.client.batch_size,
        durations=_job_durations(config, num_workers),
        staleness_scaling=options.staleness_scaling,
        staleness_exponent=options.staleness_exponent,
        rule=options.rule,
        mixing=options.mixing,
        keep_inner_state=config.localsgd.sync_momentum == "keep",
        execution=execution,
    )


def _optimizers(config):
    """The client (or inner) and the server (or outer) optimizers of ``config``."""
    return build_optimizer(config, "client"), build_optimizer(config, "server")


def client_optimizer(config):
    """The client (or inner) optimizer of ``config`` (also the fine-tuning optimizer)."""
    return _optimizers(config)[0]


def _parts(config, task: Task, num_clients: int, unroll):
    objective = cross_entropy(task, augment=config.data.augment)
    client_tx, server_tx = _optimizers(config)
    name = config.algorithm
    common = {"unroll": unroll}
    robust = config.robust
    try:  # checked against the clients a round, known once the data is
        aggregator = make_aggregator(
            robust.aggregator, trim_fraction=robust.trim_fraction, max_norm=robust.max_norm,
            byzantine=robust.byzantine, krum_selected=robust.krum_selected,
            clients_per_round=clients_per_round(config, num_clients),
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(str(error)) from error
    fedavg_options = {
        "num_clients": num_clients,
        "model_state": config.model_state,
        "client_optimizer_state": config.client.optimizer_state,
        **common,
    }
    if name in ("fedavg", "fedseq"):  # FedSeq: FedAvg's work for each member
        return fedavg_parts(
            objective, client_tx, server_tx, aggregator=aggregator, **fedavg_options
        )
    if name == "fedbn":
        return fedavg_parts(
            objective, client_tx, server_tx, personal="norm", aggregator=aggregator,
            **fedavg_options,
        )  # fmt: skip
    if name == "fedprox":
        return fedprox_parts(
            objective, client_tx, server_tx, mu=config.fedprox.mu, aggregator=aggregator,
            **fedavg_options,
        )  # fmt: skip
    if name in PERSONALIZATION:
        return _personalized(config, task, objective, client_tx, server_tx, aggregator,
                             fedavg_options)  # fmt: skip
    if name == "fednova":
        return fednova_parts(
            objective, client_tx, server_tx, client_momentum=config.client.momentum,
            **fedavg_options,
        )  # fmt: skip
    if name == "scaffold":
        return scaffold_parts(
            objective,
            client_tx,
            server_tx,
            num_clients=num_clients,
            client_learning_rate=config.client.learning_rate,
            option=config.scaffold.option,
            **common,
        )
    if name == "feddyn":
        return feddyn_parts(
            objective, client_tx, num_clients=num_clients, alpha=config.feddyn.alpha, **common
        )
    known = [*FEDERATED_ALGORITHMS, *DISTRIBUTED_ALGORITHMS, "centralized"]
    raise ConfigError(f"algorithm must be one of {known}, got {name!r}")


def _personalized(config, task, objective, client_tx, server_tx, aggregator, fedavg_options):
    personal, name = config.personal, config.algorithm
    if name in ("ditto", "apfl"):
        return two_model_parts(
            name, objective, client_tx, server_tx, num_clients=fedavg_options["num_clients"],
            lam=personal.ditto_lambda, alpha=personal.apfl_alpha, aggregator=aggregator,
            unroll=fedavg_options["unroll"],
        )  # fmt: skip
    params = jax.eval_shape(task.model.init, jax.random.key(0))["params"]
    try:
        head = head_predicate(params, personal.head)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return split_parts(name, objective, client_tx, server_tx, head=head,
                       head_steps=personal.head_steps, aggregator=aggregator,
                       **fedavg_options)  # fmt: skip


def build_algorithm(
    config: ml_collections.ConfigDict,
    task: Task,
    num_clients: int,
    execution: Execution | None = None,
    *,
    superclients=None,
) -> Algorithm:
    """The `Algorithm` that ``config.algorithm`` names, run with ``execution`` (default: the
    config's, `execution_for`); FedSeq needs its ``superclients``, the ``[G, M]`` groups of
    `fedjax_sim.algorithms.fedseq_groups.group_clients`.

    Raises:
      ConfigError: fedseq without superclients, or more superclients per round than groups.
    """
    if config.algorithm == "centralized":
        return _centralized(config, task)
    execution = execution or execution_for(config, task, num_clients)
    if config.algorithm == "localsgd":
        return _local_sgd(config, task, num_clients, execution)
    if config.algorithm == "asyncsgd":
        return _async_sgd(config, task, num_clients, execution)
    if config.algorithm == "gossip":
        options = config.gossip
        return gossip_sgd(
            cross_entropy(task, augment=config.data.augment), _optimizers(config)[0],
            num_workers=num_clients, local_steps=config.client.local_steps,
            batch_size=config.client.batch_size, graph=options.graph,
            communications=options.communications, accelerate=options.accelerate,
            durations=_job_durations(config, num_clients), execution=execution,
        )  # fmt: skip
    count = clients_per_round(config, num_clients)
    if config.algorithm == "fedseq":
        return _fedseq(config, task, num_clients, execution, superclients, count)
    selection = config.selection
    sampler = make_sampler(
        selection.name,
        count,
        num_clients,
        gamma=selection.gamma,
        candidates=selection.candidates,
        replace=selection.replace,
        dropout=selection.dropout,
        seed=config.data.seed,
    )
    parts = _parts(config, task, num_clients, execution.unroll)
    parts = attack_updates(parts, config.robust.attack, config.robust.attack_scale)
    round_fn = federated_round(
        parts,
        task=task,
        sampler=sampler,
        local_steps=config.client.local_steps,
        batch_size=config.client.batch_size,
        local_epochs=config.client.local_epochs or None,
        local_work=config.client.local_work,
        weighting=resolved_weighting(config),
        execution=execution,
    )
    return Algorithm(init=parts.init, round_fn=round_fn, personal=parts.personal)


def _fedseq(config, task, num_clients, execution, superclients, count) -> Algorithm:
    if superclients is None:
        raise ConfigError(
            "algorithm=fedseq needs its superclients (fedjax_sim.algorithms.fedseq_groups)"
        )
    if count > len(superclients):
        raise ConfigError(
            f"clients_per_round={count} exceeds the {len(superclients)} superclients that "
            f"fedseq.max_clients={config.fedseq.max_clients} and fedseq.min_examples="
            f"{config.fedseq.min_examples} make of the {num_clients} clients; at most "
            f"{len(superclients)}"
        )
    parts = _parts(config, task, num_clients, execution.unroll)
    parts = attack_updates(parts, config.robust.attack, config.robust.attack_scale)
    return fedseq_algorithm(
        parts, groups=superclients, superclients_per_round=count,
        local_steps=config.client.local_steps, batch_size=config.client.batch_size,
        local_epochs=config.client.local_epochs or None, order=config.fedseq.order,
        weighting=resolved_weighting(config), execution=execution,
    )  # fmt: skip


def fit_algorithm_to_memory(
    config, task, clients, state, key, algorithm, *, superclients=None
) -> Algorithm:
    """``algorithm``, or when its vectorized round would exceed ``config.memory_budget_gb``,
    the same algorithm run in chunks of as many clients as fit
    (`engine.clients_within_memory_budget`); only the execution changes.

    The check compiles the round as training will (reused from JAX's cache when it fits); a
    round over budget costs one more compilation per chunk size tried.
    """
    if config.algorithm == "centralized" or not config.memory_budget_gb:
        return algorithm
    execution = execution_for(config, task, clients.num_clients)
    if execution.client_axis != "vmap":
        return algorithm
    num = clients_per_round(config, clients.num_clients)

    def chunked(k):
        return dataclasses.replace(execution, client_axis="chunked", chunk_size=k)

    def round_for_chunk(k):
        if k == num:  # all clients at once: the vectorized round itself
            return algorithm.round_fn
        return build_algorithm(
            config, task, clients.num_clients, chunked(k), superclients=superclients
        ).round_fn

    chunk, chunk_bytes = clients_within_memory_budget(
        round_for_chunk, (state, clients, key), num, config.memory_budget_gb * 2**30
    )
    if chunk == num:
        return algorithm
    logging.info(
        "memory_budget_gb=%g: %d clients vectorized at once exceed it; running chunks of %d "
        "clients (%.2f GiB by XLA's memory analysis)",
        config.memory_budget_gb,
        num,
        chunk,
        chunk_bytes / 2**30,
    )
    return build_algorithm(
        config, task, clients.num_clients, chunked(chunk), superclients=superclients
    )
