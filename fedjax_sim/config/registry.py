"""The one place that knows every algorithm: ``ALGORITHMS[name]`` is its `AlgorithmEntry`.

An entry holds what the rest of the package asks of an algorithm: its family (federated,
distributed, centralized), its config group (``config.<group>``: defaults, bounds), the rules
it adds on other fields, its builder (config -> `fedjax_sim.core.local.Algorithm`; the
algorithm factories in `fedjax_sim.algorithms` take no config, optax style), the group fields a
vectorized sweep may vary, and its ledger facts. `fedjax_sim.config.defaults`,
`fedjax_sim.config.checks`, `fedjax_sim.config.build`, `fedjax_sim.experiment.vector_sweep` and
the ledger's cost model read the entries; none of them branches on an algorithm's name.

Adding an algorithm is a module in `fedjax_sim.algorithms` and one entry here (a group's
defaults and bounds beside it, when it has options of its own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import ml_collections
from ml_collections import config_dict

from fedjax_sim.algorithms.async_sgd import RULES as ASYNC_RULES
from fedjax_sim.algorithms.async_sgd import STALENESS_SCALING, async_sgd
from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.algorithms.feddyn import feddyn_parts
from fedjax_sim.algorithms.fednova import fednova_parts
from fedjax_sim.algorithms.fedprox import fedprox_parts
from fedjax_sim.algorithms.fedseq import ORDERS, fedseq_algorithm
from fedjax_sim.algorithms.fedseq_groups import ESTIMATES, GROUPERS
from fedjax_sim.algorithms.gossip import GOSSIP_GRAPHS, gossip_sgd
from fedjax_sim.algorithms.local_sgd import (
    BATCH_SCHEDULES,
    BEFORE_SWITCH,
    H_SCHEDULES,
    SYNC_MOMENTUM,
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
from fedjax_sim.algorithms.scaffold import OPTIONS as SCAFFOLD_OPTIONS
from fedjax_sim.algorithms.scaffold import scaffold_parts
from fedjax_sim.config.build import (
    clients_per_round,
    federated_algorithm,
    job_durations,
    optimizers,
)
from fedjax_sim.config.checks import (
    ConfigError,
    check_optimizer,
    integer,
    number,
    one_of,
    optimizer_arguments,
    require,
)
from fedjax_sim.core.engine import Execution, resolve_unroll
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.optimizers import (
    LR_SCALING,
    make_optimizer,
    make_schedule,
    scaled_learning_rate,
)
from fedjax_sim.core.tasks import Task, cross_entropy

FAMILIES = ("federated", "distributed", "centralized")


@dataclasses.dataclass(frozen=True)
class LedgerFacts:
    """What the ledger (`fedjax_sim.runtime.ledger.CostModel`) needs to know of an algorithm.

    Attributes:
      topology: what ``ledger.topology="auto"`` resolves to ("server", "allreduce", "gossip").
      tensors_per_message: model-sized tensors in each message (SCAFFOLD's control variate
        travels with the model: 2).
      compute_factor: models trained per step (Ditto and APFL train a global and a personal
        model: 2).
    """

    topology: str = "server"
    tensors_per_message: int = 1
    compute_factor: int = 1


@dataclasses.dataclass(frozen=True)
class AlgorithmEntry:
    """Everything the config layer and the experiment know of one algorithm.

    Attributes:
      name: ``config.algorithm``.
      family: "federated" (sampled clients, a server), "distributed" (K workers training one
        model, all in every round) or "centralized" (one model, optimizer steps).
      build: ``build(config, task, num_clients, execution, superclients=None) -> Algorithm``
        (centralized ignores the execution).
      smoke: the config file (``configs/X.py:smoke``) that a quick run of it starts from, with
        ``config.algorithm`` set to ``name``.
      group: the config group it owns (``config.<group>``), or None. Entries may share one
        (the personalization methods' ``personal``); the first entry of a group gives it.
      defaults: ``() -> ConfigDict``, the group's default fields.
      check_group: ``check_group(config)`` raises `ConfigError` naming the first of the group's
        fields out of bounds; run for every config of the family, whatever its algorithm (every
        federated and distributed config carries every group).
      check: ``check(config)`` raises `ConfigError` for the rules this algorithm adds on other
        fields; run when ``config.algorithm`` is ``name``.
      vectorizable: the group's fields a vectorized sweep may vary (numbers that enter the
        round's arithmetic, never its shapes; `fedjax_sim.experiment.vector_sweep`).
      ledger: its `LedgerFacts`.
      weighting: what ``weighting="auto"`` resolves to: its paper's aggregation weights.
      robust_aggregation: takes ``robust.aggregator`` other than "mean".
      inner_schedule: takes ``client.schedule`` other than "constant" (a per-round inner
        learning rate).
      superclients: its round runs over groups of clients built before it from the data and
        the initial model (`fedjax_sim.algorithms.fedseq_groups.build_superclients`), passed to
        ``build`` as ``superclients``.
      per_client_data: its clients' data is their own (False: IID shards of the training set
        for the workers).
    """

    name: str
    family: str
    build: Callable[..., Algorithm]
    smoke: str
    group: str | None = None
    defaults: Callable[[], ml_collections.ConfigDict] | None = None
    check_group: Callable[[ml_collections.ConfigDict], None] | None = None
    check: Callable[[ml_collections.ConfigDict], None] | None = None
    vectorizable: tuple[str, ...] = ()
    ledger: LedgerFacts = LedgerFacts()
    weighting: str = "examples"
    robust_aggregation: bool = False
    inner_schedule: bool = False
    superclients: bool = False

    @property
    def per_client_data(self) -> bool:
        return self.family == "federated"


# -- centralized ---------------------------------------------------------------------------


def _optimizer_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
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
            # no weight decay and no LARS/LAMB trust ratio on biases and norm scales; None:
            # the papers' choice, True for lars, optax_lars and lamb, False for the others
            "exclude_bias_and_norm": config_dict.placeholder(bool),
        }
    )


def _check_centralized(config) -> None:
    integer("batch_size", config.batch_size)
    integer("micro_batch_size", config.micro_batch_size, 0)
    require(
        not config.micro_batch_size or config.batch_size % config.micro_batch_size == 0,
        f"micro_batch_size={config.micro_batch_size} must divide batch_size={config.batch_size}",
    )
    opt = config.optimizer
    integer("optimizer.schedule_steps", opt.schedule_steps, 0)
    integer("optimizer.warmup_steps", opt.warmup_steps, 0)
    number("optimizer.decay_power", opt.decay_power, strict=True)
    one_of("optimizer.lr_scaling", opt.lr_scaling, LR_SCALING)
    integer("optimizer.base_batch_size", opt.base_batch_size)
    require(
        opt.exclude_bias_and_norm is None or isinstance(opt.exclude_bias_and_norm, bool),
        "optimizer.exclude_bias_and_norm must be True, False or None (the papers' choice), got "
        f"{opt.exclude_bias_and_norm!r}",
    )
    check_optimizer(config, "optimizer")


def _build_centralized(config, task: Task, num_clients, execution=None, **_) -> Algorithm:
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


# -- federated: the server-client round ----------------------------------------------------


def _federated(parts: Callable) -> Callable[..., Algorithm]:
    """The builder of a federated algorithm whose round is `fedjax_sim.core.round`'s with the
    parts ``parts(config, task, objective, client_tx, server_tx, aggregator, options)``."""

    def build(config, task, num_clients, execution, superclients=None) -> Algorithm:
        return federated_algorithm(config, task, num_clients, execution, parts)

    return build


def _fedavg_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return fedavg_parts(objective, client_tx, server_tx, aggregator=aggregator, **options)


def _fedbn_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return fedavg_parts(
        objective, client_tx, server_tx, personal="norm", aggregator=aggregator, **options
    )


def _fedprox_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return fedprox_parts(
        objective, client_tx, server_tx, mu=config.fedprox.mu, aggregator=aggregator, **options
    )


def _fednova_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return fednova_parts(
        objective, client_tx, server_tx, client_momentum=config.client.momentum, **options
    )


def _scaffold_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return scaffold_parts(
        objective, client_tx, server_tx, num_clients=options["num_clients"],
        client_learning_rate=config.client.learning_rate, option=config.scaffold.option,
        unroll=options["unroll"],
    )  # fmt: skip


def _feddyn_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return feddyn_parts(
        objective, client_tx, num_clients=options["num_clients"], alpha=config.feddyn.alpha,
        unroll=options["unroll"],
    )  # fmt: skip


def _two_model_parts(method: str):
    def parts(config, task, objective, client_tx, server_tx, aggregator, options):
        personal = config.personal
        return two_model_parts(
            method, objective, client_tx, server_tx, num_clients=options["num_clients"],
            lam=personal.ditto_lambda, alpha=personal.apfl_alpha, aggregator=aggregator,
            unroll=options["unroll"],
        )  # fmt: skip

    return parts


def _split_parts(method: str):
    def parts(config, task, objective, client_tx, server_tx, aggregator, options):
        params = jax.eval_shape(task.model.init, jax.random.key(0))["params"]
        try:
            head = head_predicate(params, config.personal.head)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        return split_parts(method, objective, client_tx, server_tx, head=head,
                           head_steps=config.personal.head_steps, aggregator=aggregator,
                           **options)  # fmt: skip

    return parts


def _sgd_client(name: str, why: str):
    def check(config) -> None:
        if config.client.optimizer != "sgd":
            raise ConfigError(
                f"client.optimizer must be 'sgd' for {name} ({why}), got "
                f"{config.client.optimizer!r}"
            )

    return check


def _check_fedbn(config) -> None:
    if config.model.name not in ("resnet20", "resnet18"):
        raise ConfigError(
            f"model.name must be one of ['resnet20', 'resnet18'] for fedbn (a model with "
            f"normalization layers), got {config.model.name!r}"
        )
    require(
        config.model.norm == "batch",
        f"model.norm must be 'batch' for fedbn, got {config.model.norm!r}: FedBN keeps the "
        f"BatchNorm layers local (algorithm=fedavg for the other norms)",
    )


def _fedprox_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"mu": 0.01})


def _check_fedprox_group(config) -> None:
    number("fedprox.mu", config.fedprox.mu)


def _scaffold_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"option": "II"})


def _check_scaffold_group(config) -> None:
    one_of("scaffold.option", config.scaffold.option, SCAFFOLD_OPTIONS)


def _feddyn_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"alpha": 0.01})


def _check_feddyn_group(config) -> None:
    number("feddyn.alpha", config.feddyn.alpha, strict=True)


# Personalization (fedjax_sim.algorithms.personalized): head "auto" (the output layer) or
# top-level layer names for fedper / lg_fedavg / fedrep / fedbabu; FedRep's head-only steps per
# round; Ditto's lambda; APFL's mixing alpha.
def _personal_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"head": "auto", "head_steps": 4, "ditto_lambda": 0.1, "apfl_alpha": 0.5}
    )


def _check_personal_group(config) -> None:
    personal = config.personal
    require(
        isinstance(personal.head, str), f"personal.head must be a string, got {personal.head!r}"
    )
    integer("personal.head_steps", personal.head_steps, 0)
    number("personal.ditto_lambda", personal.ditto_lambda)
    number("personal.apfl_alpha", personal.apfl_alpha)
    require(personal.apfl_alpha <= 1, f"personal.apfl_alpha must be in [0, 1], got "
             f"{personal.apfl_alpha}")  # fmt: skip


def _check_fedrep(config) -> None:
    personal = config.personal
    require(
        personal.head_steps < config.client.local_steps,
        f"personal.head_steps={personal.head_steps} must be below client.local_steps="
        f"{config.client.local_steps}: FedRep's body trains in the steps after the head's",
    )


def _check_fedbabu(config) -> None:
    require(
        config.finetune.steps > 0,
        "algorithm=fedbabu evaluates clients' fine-tuned models: set finetune.steps >= 1",
    )


# -- fedseq ----------------------------------------------------------------------------------


# algorithm="fedseq" (fedjax_sim.algorithms.fedseq_groups; clients_per_round = superclients per
# round): each client's label distribution estimate ("labels", or "confidence": the mean
# softmax on `exemplars` test examples, set aside, of the initial model after estimate_steps
# local steps), grouper "random", "greedy_kl" or "kmeans", a superclient closed at max_clients
# members or min_examples examples (0: no example limit), members trained in "fixed" or
# "shuffle" order, each for client.local_steps (at most client.local_epochs passes).
def _fedseq_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"estimate": "labels", "estimate_steps": 10, "exemplars": 100, "grouper": "greedy_kl",
         "max_clients": 5, "min_examples": 0, "order": "fixed"}
    )  # fmt: skip


def _check_fedseq_group(config) -> None:
    fedseq = config.fedseq
    one_of("fedseq.estimate", fedseq.estimate, ESTIMATES)
    one_of("fedseq.grouper", fedseq.grouper, GROUPERS)
    one_of("fedseq.order", fedseq.order, ORDERS)
    for name, minimum in (("estimate_steps", 1), ("exemplars", 1), ("max_clients", 1),
                          ("min_examples", 0)):  # fmt: skip
        integer(f"fedseq.{name}", fedseq[name], minimum)


def _check_fedseq(config) -> None:
    require(
        config.num_seeds == 1,
        "num_seeds > 1 is not available for algorithm=fedseq (its superclients depend on the "
        "seed); run its seeds separately",
    )
    integer("clients_per_round (for fedseq: the superclients of a round)",
            config.clients_per_round)  # fmt: skip
    # A superclient is one model trained through its members: no per-client state to keep.
    one_of("model_state (for fedseq)", config.model_state, ("average", "recompute"))
    one_of("client.optimizer_state (for fedseq)", config.client.optimizer_state, ("reset",))
    one_of("selection.name (for fedseq: superclients drawn uniformly)", config.selection.name,
           ("uniform",))  # fmt: skip


def _build_fedseq(config, task, num_clients, execution, superclients=None) -> Algorithm:
    count = clients_per_round(config, num_clients)
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

    def run_members(parts, round_options):  # FedSeq: FedAvg's work for each member
        return fedseq_algorithm(
            parts, groups=superclients, superclients_per_round=count,
            order=config.fedseq.order, **round_options,
        )  # fmt: skip

    return federated_algorithm(
        config, task, num_clients, execution, _fedavg_parts, run_members=run_members
    )


# -- distributed: K workers training one model -------------------------------------------------


# algorithm="localsgd" (K = data.num_clients workers, all in every round; H =
# client.local_steps; outer optimizer = server.*): what the workers' inner optimizer state does
# at a sync ("reset", "keep", "average"; None: "keep" for post_local, as torch's
# PostLocalSGDOptimizer, else "reset"), and the H schedule ("constant"; "post_local": 1 for the
# first switch_step rounds, then H). Before post-local SGD's switch, before_switch "gradients"
# (torch's) runs synchronous SGD: the workers' gradients averaged, one shared inner state, and
# the models averaged after the first local step too; "models": each worker steps on its own
# gradient and the models are averaged.
# "increasing": H = initial_steps doubled every double_every rounds; "adaptive": from
# initial_steps, doubled while the workers' divergence < divergence_threshold, halved above
# twice it (fedjax_sim.algorithms.local_sgd). batch_schedule "noise_scale": each worker's batch
# starts at initial_batch_size and grows with the gradient noise scale up to client.batch_size;
# noise_scale True only estimates and reports B_simple.
def _localsgd_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "sync_momentum": config_dict.placeholder(str),
            "schedule": "constant",
            "switch_step": 0,
            "before_switch": "gradients",
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


def _build_local_sgd(config, task: Task, num_workers: int, execution: Execution,
                     superclients=None) -> Algorithm:  # fmt: skip
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


# algorithm="asyncsgd" (a parameter server; workers as for localsgd, whose sync_momentum
# "reset"/"keep" says whether a worker keeps its inner optimizer state across its jobs):
# staleness_scaling "none" or "polynomial" (s = (1 + tau)^-staleness_exponent, tau the server
# updates since the worker pulled); rule "delta" (x += s delta, the delta from the pulled model)
# or "fedasync" (Xie et al. 2019: x = (1 - a) x + a x_new, a = mixing * s).
def _asynchronous_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"staleness_scaling": "none", "staleness_exponent": 0.5, "rule": "delta", "mixing": 0.6}
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


def _build_async_sgd(config, task: Task, num_workers: int, execution: Execution,
                     superclients=None) -> Algorithm:  # fmt: skip
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


# algorithm="gossip" (decentralized; client.* is each worker's optimizer, client.local_steps the
# gradient steps per round): graph "ring" or "random_pairs", communications pairwise averagings
# per gradient step, accelerate: A2CiD2's continuous momentum (False: plain gossip SGD, its
# baseline).
def _gossip_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"graph": "ring", "communications": 1, "accelerate": True})


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


def _build_gossip(config, task: Task, num_workers: int, execution: Execution,
                  superclients=None) -> Algorithm:  # fmt: skip
    options = config.gossip
    return gossip_sgd(
        cross_entropy(task, augment=config.data.augment), optimizers(config)[0],
        num_workers=num_workers, local_steps=config.client.local_steps,
        batch_size=config.client.batch_size, graph=options.graph,
        communications=options.communications, accelerate=options.accelerate,
        durations=job_durations(config, num_workers), execution=execution,
    )  # fmt: skip


# -- the registry ------------------------------------------------------------------------------


def _personalization(method: str) -> AlgorithmEntry:
    two_models = method in ("ditto", "apfl")
    return AlgorithmEntry(
        method, "federated",
        _federated(_two_model_parts(method) if two_models else _split_parts(method)),
        # its smoke variant's 2 local steps leave FedRep's 4 head steps no body steps
        smoke="configs/personalized_digits.py" + ("" if method == "fedrep" else ":smoke"),
        group="personal",
        defaults=_personal_defaults, check_group=_check_personal_group,
        check={"fedrep": _check_fedrep, "fedbabu": _check_fedbabu}.get(method),
        vectorizable={"ditto": ("personal.ditto_lambda",), "apfl": ("personal.apfl_alpha",)}
        .get(method, ()),
        ledger=LedgerFacts(compute_factor=2 if two_models else 1), robust_aggregation=True,
    )  # fmt: skip


def _entries(*entries: AlgorithmEntry) -> dict[str, AlgorithmEntry]:
    for entry in entries:
        assert entry.family in FAMILIES, entry
    return {entry.name: entry for entry in entries}


ALGORITHMS: dict[str, AlgorithmEntry] = _entries(
    AlgorithmEntry(
        "fedavg",
        "federated",
        _federated(_fedavg_parts),
        smoke="configs/fedavg_digits.py:smoke",
        robust_aggregation=True,
    ),
    AlgorithmEntry(
        "fedprox",
        "federated",
        _federated(_fedprox_parts),
        smoke="configs/fedprox_shakespeare.py:smoke",
        group="fedprox",
        defaults=_fedprox_defaults,
        check_group=_check_fedprox_group,
        vectorizable=("fedprox.mu",),
        robust_aggregation=True,
    ),
    AlgorithmEntry(
        "scaffold",
        "federated",
        _federated(_scaffold_parts),
        smoke="configs/scaffold_shakespeare.py:smoke",
        group="scaffold",
        defaults=_scaffold_defaults,
        check_group=_check_scaffold_group,
        check=_sgd_client("scaffold", "its control update uses the client learning rate"),
        ledger=LedgerFacts(tensors_per_message=2),
        weighting="uniform",
    ),
    AlgorithmEntry(
        "feddyn",
        "federated",
        _federated(_feddyn_parts),
        smoke="configs/feddyn_shakespeare.py:smoke",
        group="feddyn",
        defaults=_feddyn_defaults,
        check_group=_check_feddyn_group,
        vectorizable=("feddyn.alpha",),
        weighting="uniform",
    ),
    AlgorithmEntry(
        "fednova",
        "federated",
        _federated(_fednova_parts),
        smoke="configs/fednova_shakespeare.py:smoke",
        check=_sgd_client("fednova", "its normalizer is derived for SGD with momentum"),
    ),
    AlgorithmEntry(
        "fedbn",
        "federated",
        _federated(_fedbn_parts),
        smoke="configs/fedbn_cifar100.py:smoke",
        check=_check_fedbn,
        robust_aggregation=True,
    ),
    *(_personalization(method) for method in PERSONALIZATION),
    AlgorithmEntry(
        "fedseq",
        "federated",
        _build_fedseq,
        smoke="configs/fedseq_digits.py:smoke",
        group="fedseq",
        defaults=_fedseq_defaults,
        check_group=_check_fedseq_group,
        check=_check_fedseq,
        robust_aggregation=True,
        superclients=True,
    ),
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
    AlgorithmEntry(
        "centralized",
        "centralized",
        _build_centralized,
        smoke="configs/centralized_cifar100.py:smoke",
        group="optimizer",
        defaults=_optimizer_defaults,
        check=_check_centralized,
    ),
)


def names(family: str | None = None) -> tuple[str, ...]:
    """The registered algorithms (of ``family``), in registry order."""
    return tuple(n for n, e in ALGORITHMS.items() if family is None or e.family == family)


def is_centralized(name: str) -> bool:
    """Whether ``name`` is a registered algorithm of the centralized family."""
    entry = ALGORITHMS.get(name)
    return entry is not None and entry.family == "centralized"


def get(name: str) -> AlgorithmEntry:
    """The entry of algorithm ``name``.

    Raises:
      ConfigError: an unknown name; the message lists the known ones.
    """
    one_of("algorithm", name, tuple(ALGORITHMS))
    return ALGORITHMS[name]


def groups(family: str) -> dict[str, AlgorithmEntry]:
    """``{group: the first entry of family ``family`` that owns it}``, in registry order."""
    owners = {}
    for entry in ALGORITHMS.values():
        if entry.family == family and entry.group is not None:
            owners.setdefault(entry.group, entry)
    return owners


def trained_groups() -> dict[str, AlgorithmEntry]:
    """The groups every federated and distributed config carries (all of both families')."""
    return {**groups("federated"), **groups("distributed")}


def vectorizable_fields() -> tuple[str, ...]:
    """The group fields of every entry that a vectorized sweep may vary, in registry order."""
    return tuple(dict.fromkeys(f for e in ALGORITHMS.values() for f in e.vectorizable))
