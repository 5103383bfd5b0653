"""The distributed family's entries, K workers training one model: Local SGD and its variants
(SlowMo, DiLoCo, post-local SGD, adaptive H and batch growth; ``localsgd`` group), asynchronous
SGD (``asynchronous``) and gossip SGD / A2CiD2 (``gossip``)."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from fedjax_sim.algorithms.async_sgd import RULES as ASYNC_RULES
from fedjax_sim.algorithms.async_sgd import STALENESS_SCALING, async_sgd
from fedjax_sim.algorithms.gossip import GOSSIP_GRAPHS, gossip_sgd
from fedjax_sim.algorithms.local_schedules import (
    BATCH_SCHEDULES,
    BEFORE_SWITCH,
    H_SCHEDULES,
    SYNC_MOMENTUM,
    AdaptiveSteps,
    BatchGrowth,
    InnerSchedule,
    local_steps_schedule,
    post_local_rounds,
    resolved_sync_momentum,
)
from fedjax_sim.algorithms.local_sgd import local_sgd
from fedjax_sim.config.building_blocks import job_durations, optimizers
from fedjax_sim.config.fields import integer, number, one_of, require
from fedjax_sim.config.registry.entry import AlgorithmEntry, LedgerFacts, ResumedField
from fedjax_sim.core.engine import Execution
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.optimizers import make_schedule
from fedjax_sim.core.tasks import Task, cross_entropy


# algorithm="localsgd" (fedjax_sim.algorithms.local_sgd; K = data.num_clients workers, all in
# every round; H = client.local_steps; outer optimizer = server.*): the workers' inner optimizer
# state at a sync, the H schedule (post-local SGD, increasing or adaptive H) and the per-worker
# batch schedule (grown with the gradient noise scale).
def _localsgd_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # the workers' inner optimizer state at a sync: "reset", "keep" or "average" (None:
            # "keep" for post_local, as torch's PostLocalSGDOptimizer, else "reset"); asyncsgd:
            # "reset" or "keep", whether a worker keeps its own across its jobs
            "sync_momentum": config_dict.placeholder(str),
            # the H schedule: "constant", "post_local" (1 step a round for the first
            # switch_step rounds, then H), "increasing" or "adaptive"
            "schedule": "constant",
            "switch_step": 0,  # post_local: the rounds before the switch to H local steps
            # post_local, before the switch: "gradients" (torch's) runs synchronous SGD: the
            # workers' gradients averaged, one shared inner state, and the models averaged
            # after the first local step too; "models": each worker steps on its own gradient
            # and the models are averaged
            "before_switch": "gradients",
            "initial_steps": 1,  # increasing, adaptive: H in the first round
            "double_every": 1,  # increasing: H doubles every double_every rounds
            # adaptive: H doubles while the workers' divergence after a sync is below it,
            # halves above twice it
            "divergence_threshold": 0.01,
            # "constant" or "noise_scale": each worker's batch starts at initial_batch_size and
            # grows with the gradient noise scale up to client.batch_size
            "batch_schedule": "constant",
            "initial_batch_size": 0,  # noise_scale: the first batch (0: client.batch_size)
            "noise_scale": False,  # True: estimates and reports B_simple (batch unchanged)
            "noise_decay": 0.9,  # the smoothing of the noise-scale estimates, in [0, 1)
            # with client.schedule: the outer step on the pseudo-gradient / the round's inner
            # rate, times it (fairscale's SlowMo); False: the raw pseudo-gradient (DiLoCo).
            "normalize_outer": False,
        }
    )


def _check_localsgd_group(config) -> None:
    localsgd, client = config.localsgd, config.client
    require(
        isinstance(localsgd.normalize_outer, bool),
        f"localsgd.normalize_outer must be True or False, got {localsgd.normalize_outer!r}",
    )
    one_of("localsgd.sync_momentum", localsgd.sync_momentum, (None, *SYNC_MOMENTUM))
    one_of("localsgd.schedule", localsgd.schedule, H_SCHEDULES)
    integer("localsgd.switch_step", localsgd.switch_step, 0)
    one_of("localsgd.before_switch", localsgd.before_switch, BEFORE_SWITCH)
    integer("localsgd.initial_steps", localsgd.initial_steps)
    integer("localsgd.double_every", localsgd.double_every)
    number("localsgd.divergence_threshold", localsgd.divergence_threshold, strict=True)
    one_of("localsgd.batch_schedule", localsgd.batch_schedule, BATCH_SCHEDULES)
    integer("localsgd.initial_batch_size", localsgd.initial_batch_size, 0)
    require(
        localsgd.initial_batch_size <= client.batch_size,
        f"localsgd.initial_batch_size={localsgd.initial_batch_size} must be at most "
        f"client.batch_size={client.batch_size} (the largest batch it may grow to)",
    )
    number("localsgd.noise_decay", localsgd.noise_decay)
    decay = localsgd.noise_decay
    require(decay < 1, f"localsgd.noise_decay must be in [0, 1), got {decay}")


def _build_local_sgd(config, task: Task, num_workers: int, execution: Execution, **_) -> Algorithm:
    client_tx, outer_tx = optimizers(config)
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
        durations=job_durations(config, num_workers),
        execution=execution,
    )


# algorithm="asyncsgd" (fedjax_sim.algorithms.async_sgd; a parameter server; workers as for
# localsgd, whose sync_momentum "reset"/"keep" says whether a worker keeps its inner optimizer
# state across its jobs): how the server applies each job's result as it arrives.
def _asynchronous_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # "none" or "polynomial": s = (1 + tau)^-staleness_exponent, tau the server updates
            # since the worker pulled
            "staleness_scaling": "none",
            "staleness_exponent": 0.5,  # polynomial: the exponent of the staleness scaling
            # "delta" (x += s delta, the delta from the pulled model, through the outer
            # optimizer) or "fedasync" (Xie et al. 2019: x = (1 - a) x + a x_new, a = mixing * s)
            "rule": "delta",
            "mixing": 0.6,  # fedasync: the mixing weight a, in (0, 1]
        }
    )


def _check_asynchronous_group(config) -> None:
    asynchronous = config.asynchronous
    one_of("asynchronous.staleness_scaling", asynchronous.staleness_scaling, STALENESS_SCALING)
    number("asynchronous.staleness_exponent", asynchronous.staleness_exponent)
    one_of("asynchronous.rule", asynchronous.rule, ASYNC_RULES)
    number("asynchronous.mixing", asynchronous.mixing, strict=True)
    require(
        asynchronous.mixing <= 1,
        f"asynchronous.mixing must be in (0, 1], got {asynchronous.mixing}",
    )


def _check_asyncsgd(config) -> None:
    one_of("localsgd.sync_momentum (for asyncsgd)", config.localsgd.sync_momentum,
           (None, "reset", "keep"))  # fmt: skip


def _build_async_sgd(config, task: Task, num_workers: int, execution: Execution, **_) -> Algorithm:
    client_tx, outer_tx = optimizers(config)
    options = config.asynchronous
    return async_sgd(
        cross_entropy(task, augment=config.data.augment),
        client_tx,
        outer_tx,
        num_workers=num_workers,
        local_steps=config.client.local_steps,
        batch_size=config.client.batch_size,
        durations=job_durations(config, num_workers),
        staleness_scaling=options.staleness_scaling,
        staleness_exponent=options.staleness_exponent,
        rule=options.rule,
        mixing=options.mixing,
        keep_inner_state=config.localsgd.sync_momentum == "keep",
        execution=execution,
    )


# algorithm="gossip" (fedjax_sim.algorithms.gossip; decentralized; client.* is each worker's
# optimizer, client.local_steps the gradient steps per round).
def _gossip_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # "ring" (alternately the even and odd edges of the cycle) or "random_pairs" (a
            # random perfect matching each time)
            "graph": "ring",
            "communications": 1,  # pairwise averagings with a neighbour per gradient step
            # A2CiD2's continuous momentum; False: plain gossip SGD, its baseline
            "accelerate": True,
        }
    )


def _check_gossip_group(config) -> None:
    gossip = config.gossip
    one_of("gossip.graph", gossip.graph, GOSSIP_GRAPHS)
    integer("gossip.communications", gossip.communications)
    require(
        isinstance(gossip.accelerate, bool),
        f"gossip.accelerate must be True or False, got {gossip.accelerate!r}",
    )


def _check_gossip(config) -> None:
    speed = config.speed
    require(
        config.data.num_clients >= 2,
        f"data.num_clients must be >= 2 for gossip (workers), got {config.data.num_clients}",
    )
    one_of("speed.model (for gossip: steps of whole ticks)", speed.model,
           ("fixed", "straggler"))  # fmt: skip
    require(
        speed.slowdown >= 1,
        f"speed.slowdown must be >= 1 for gossip (a step lasts whole ticks), got {speed.slowdown}",
    )


def _build_gossip(config, task: Task, num_workers: int, execution: Execution, **_) -> Algorithm:
    options = config.gossip
    return gossip_sgd(
        cross_entropy(task, augment=config.data.augment), optimizers(config)[0],
        num_workers=num_workers, local_steps=config.client.local_steps,
        batch_size=config.client.batch_size, graph=options.graph,
        communications=options.communications, accelerate=options.accelerate,
        durations=job_durations(config, num_workers), execution=execution,
    )  # fmt: skip


# Resuming (fedjax_sim.config.resume): sync_momentum's None is "keep" for post_local, else
# "reset"; before_switch (a config.json before it ran "models") acts in post-local SGD alone;
# asynchronous.rule and mixing came later (the runs before ran "delta"; mixing acts in
# "fedasync" alone).
def _sync_momentum_meaning(flat: dict):
    value = flat.get("localsgd.sync_momentum")
    if value is not None:
        return value
    schedule = flat.get("localsgd.schedule") if flat.get("algorithm") == "localsgd" else None
    return resolved_sync_momentum(None, schedule)


def _before_switch_meaning(flat: dict):
    run = (flat.get("algorithm"), flat.get("localsgd.schedule"))
    return flat.get("localsgd.before_switch") if run == ("localsgd", "post_local") else None


def _mixing_meaning(flat: dict):
    fedasync = flat.get("asynchronous.rule") == "fedasync"
    return flat.get("asynchronous.mixing") if fedasync else None


ENTRIES = (
    AlgorithmEntry(
        "localsgd",
        "distributed",
        _build_local_sgd,
        smoke="configs/localsgd_digits.py:smoke",
        group="localsgd",
        defaults=_localsgd_defaults,
        check_group=_check_localsgd_group,
        ledger=LedgerFacts(topology="allreduce"),
        inner_schedule=True,
        resumed_fields={
            "localsgd.sync_momentum": ResumedField(meaning=_sync_momentum_meaning),
            "localsgd.before_switch": ResumedField("models", _before_switch_meaning),
        },
    ),
    AlgorithmEntry(
        "asyncsgd",
        "distributed",
        _build_async_sgd,
        smoke="configs/async_digits.py:smoke",
        group="asynchronous",
        defaults=_asynchronous_defaults,
        check_group=_check_asynchronous_group,
        check=_check_asyncsgd,
        resumed_fields={
            "asynchronous.rule": ResumedField("delta"),
            "asynchronous.mixing": ResumedField(0.6, _mixing_meaning),
        },
    ),
    AlgorithmEntry(
        "gossip",
        "distributed",
        _build_gossip,
        smoke="configs/a2cid2_digits.py:smoke",
        group="gossip",
        defaults=_gossip_defaults,
        check_group=_check_gossip_group,
        check=_check_gossip,
        ledger=LedgerFacts(topology="gossip"),
    ),
)
