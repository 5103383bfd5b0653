"""The federated family's server-client algorithms whose round is `fedjax_sim.core.round`'s:
FedAvg, FedProx, q-FedAvg, SCAFFOLD, FedDyn, FedNova, FedBN, with their groups (``fedprox``,
``qffl``, ``scaffold``, ``feddyn``); and `federated_entry`, which the personalization methods'
entries use too.

Each algorithm's ``*_parts(config, task, objective, client_tx, server_tx, aggregator, options)``
reads its fields from the config and calls the config-free factory of `fedjax_sim.algorithms`.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.algorithms.feddyn import feddyn_parts
from fedjax_sim.algorithms.fednova import fednova_parts
from fedjax_sim.algorithms.fedprox import fedprox_parts
from fedjax_sim.algorithms.qfedavg import qfedavg_parts
from fedjax_sim.algorithms.scaffold import OPTIONS as SCAFFOLD_OPTIONS
from fedjax_sim.algorithms.scaffold import scaffold_parts
from fedjax_sim.config.building_blocks import federated_algorithm
from fedjax_sim.config.fields import ConfigError, number, one_of, require
from fedjax_sim.config.registry.entry import AlgorithmEntry, LedgerFacts
from fedjax_sim.core.local import Algorithm


def federated_entry(name: str, parts: Callable, **fields) -> AlgorithmEntry:
    """The entry of federated algorithm ``name`` whose round is `fedjax_sim.core.round`'s over
    ``parts(config, task, objective, client_tx, server_tx, aggregator, options)``; ``fields``
    are the entry's others (``smoke`` and on), its ``weighting`` also the builder's."""
    weighting = fields.get("weighting", "examples")

    def build(config, task, num_clients, execution, **_) -> Algorithm:
        return federated_algorithm(config, task, num_clients, execution, parts,
                                   weighting=weighting)  # fmt: skip

    return AlgorithmEntry(name, "federated", build, **fields)


def fedavg_config_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    """FedAvg's parts (also each FedSeq member's work)."""
    return fedavg_parts(objective, client_tx, server_tx, aggregator=aggregator, **options)


def _fedbn_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return fedavg_parts(
        objective, client_tx, server_tx, personal="norm", aggregator=aggregator, **options
    )


def _fedprox_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return fedprox_parts(
        objective, client_tx, server_tx, mu=config.fedprox.mu, aggregator=aggregator, **options
    )


def _qfedavg_parts(config, task, objective, client_tx, server_tx, aggregator, options):
    return qfedavg_parts(
        objective, client_tx, server_tx, q=config.qffl.q,
        learning_rate=config.client.learning_rate, **options,
    )  # fmt: skip


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


# algorithm="fedprox" (fedjax_sim.algorithms.fedprox): each client minimizes its loss plus a
# proximal term from the round's model.
def _fedprox_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "mu": 0.01,  # the proximal term's weight: mu / 2 ||w - w_t||^2 (0: FedAvg bit for bit)
        }
    )


def _check_fedprox_group(config) -> None:
    number("fedprox.mu", config.fedprox.mu)


# algorithm="qfedavg" (fedjax_sim.algorithms.qfedavg): q-FedAvg's fairness, each client weighed
# by its loss at the round's model to the power q; its L is 1 / client.learning_rate.
def _qffl_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # q-FFL's q, >= 0: the server weighs each client by its loss to the power q (0:
            # FedAvg's uniform mean; larger: the clients with larger losses count more)
            "q": 1.0,
        }
    )


def _check_qffl_group(config) -> None:
    number("qffl.q", config.qffl.q)


def _check_qfedavg(config) -> None:
    _sgd_client("qfedavg", "its L is 1 / client.learning_rate, SGD's")(config)
    require(
        config.client.momentum == 0,
        f"client.momentum must be 0 for qfedavg (Algorithm 2's L = 1 / client.learning_rate "
        f"assumes plain SGD), got {config.client.momentum!r}",
    )


# algorithm="scaffold" (fedjax_sim.algorithms.scaffold): client steps corrected by the server's
# and the client's control variates.
def _scaffold_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # the control variate update: "I" (the gradient at the round's model, J more
            # gradient evaluations) or "II" (from the client's delta and its steps taken)
            "option": "II",
        }
    )


def _check_scaffold_group(config) -> None:
    one_of("scaffold.option", config.scaffold.option, SCAFFOLD_OPTIONS)


# algorithm="feddyn" (fedjax_sim.algorithms.feddyn): each client's dynamic regularizer and the
# paper's server step, which replaces a server optimizer.
def _feddyn_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # the regularizer's alpha, > 0: alpha / 2 ||w - w_t||^2 in each client's loss and
            # the server's h step
            "alpha": 0.01,
        }
    )


def _check_feddyn_group(config) -> None:
    number("feddyn.alpha", config.feddyn.alpha, strict=True)


ENTRIES = (
    federated_entry(
        "fedavg",
        fedavg_config_parts,
        smoke="configs/fedavg_digits.py:smoke",
        robust_aggregation=True,
    ),
    federated_entry(
        "fedprox",
        _fedprox_parts,
        smoke="configs/fedprox_shakespeare.py:smoke",
        group="fedprox",
        defaults=_fedprox_defaults,
        check_group=_check_fedprox_group,
        vectorizable=("fedprox.mu",),
        robust_aggregation=True,
    ),
    federated_entry(
        "qfedavg",
        _qfedavg_parts,
        smoke="configs/qfedavg_shakespeare.py:smoke",
        group="qffl",
        defaults=_qffl_defaults,
        check_group=_check_qffl_group,
        check=_check_qfedavg,
        vectorizable=("qffl.q",),
        # Algorithm 2 sums over the sampled clients alike; its h_k weigh them, so a robust
        # aggregator (robust_aggregation False) has no mean to replace.
        weighting="uniform",
    ),
    federated_entry(
        "scaffold",
        _scaffold_parts,
        smoke="configs/scaffold_shakespeare.py:smoke",
        group="scaffold",
        defaults=_scaffold_defaults,
        check_group=_check_scaffold_group,
        check=_sgd_client("scaffold", "its control update uses the client learning rate"),
        ledger=LedgerFacts(tensors_per_message=2),
        weighting="uniform",
    ),
    federated_entry(
        "feddyn",
        _feddyn_parts,
        smoke="configs/feddyn_shakespeare.py:smoke",
        group="feddyn",
        defaults=_feddyn_defaults,
        check_group=_check_feddyn_group,
        vectorizable=("feddyn.alpha",),
        weighting="uniform",
    ),
    federated_entry(
        "fednova",
        _fednova_parts,
        smoke="configs/fednova_shakespeare.py:smoke",
        check=_sgd_client("fednova", "its normalizer is derived for SGD with momentum"),
    ),
    federated_entry(
        "fedbn",
        _fedbn_parts,
        smoke="configs/fedbn_cifar100.py:smoke",
        check=_check_fedbn,
        robust_aggregation=True,
    ),
)
