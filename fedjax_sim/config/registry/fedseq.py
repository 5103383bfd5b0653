"""FedSeq's entry (`fedjax_sim.algorithms.fedseq`): superclients, groups of dissimilar clients
built on the host before the first round (its `HostStep`), each trained through its members in
sequence with FedAvg's client work; its ``fedseq`` group."""

from __future__ import annotations

import jax
import ml_collections

from fedjax_sim.algorithms.fedseq import ORDERS, fedseq_algorithm
from fedjax_sim.algorithms.fedseq_groups import ESTIMATES, GROUPERS, build_superclients
from fedjax_sim.config.building_blocks import (
    client_optimizer,
    clients_per_round,
    federated_algorithm,
)
from fedjax_sim.config.fields import ConfigError, integer, one_of, require
from fedjax_sim.config.registry.entry import AlgorithmEntry, HostStep
from fedjax_sim.config.registry.federated import fedavg_config_parts
from fedjax_sim.core.local import Algorithm
from fedjax_sim.data.dataset import set_aside_test_examples


# algorithm="fedseq": clients_per_round = superclients per round, groups of dissimilar clients
# built from each client's label distribution estimate, members trained in sequence, each for
# client.local_steps (at most client.local_epochs passes).
def _fedseq_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # each client's label distribution estimate: "labels" (its histogram) or
            # "confidence" (the mean softmax on `exemplars` test examples of the initial model
            # after estimate_steps local steps)
            "estimate": "labels",
            "estimate_steps": 10,  # confidence: each client's local steps from the initial model
            "exemplars": 100,  # confidence: the test examples set aside for it, never evaluated on
            "grouper": "greedy_kl",  # how superclients are formed: "random", "greedy_kl", "kmeans"
            "max_clients": 5,  # a superclient is closed at this many members
            "min_examples": 0,  # a superclient is also closed at this many examples (0: no limit)
            "order": "fixed",  # members trained in a "fixed" order or "shuffle"d every round
        }
    )


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


def _build_fedseq(config, task, num_clients, execution, superclients=None, **_) -> Algorithm:
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

    return federated_algorithm(config, task, num_clients, execution, fedavg_config_parts,
                               weighting=ENTRY.weighting, run_members=run_members)  # fmt: skip


def _set_aside_exemplars(config, dataset):
    """The "confidence" estimate's server-held exemplars, taken from the test split."""
    if config.fedseq.estimate != "confidence":
        return dataset, None
    exemplars, dataset = set_aside_test_examples(dataset, config.fedseq.exemplars, config.data.seed)
    return dataset, exemplars


def _superclients(config, task, dataset, clients, initial_variables, exemplars) -> dict:
    groups = build_superclients(
        config, task, dataset, clients, tx=client_optimizer(config),
        initial_variables=initial_variables,
        exemplars_x=None if exemplars is None else exemplars["x"],
        key=jax.random.fold_in(jax.random.key(config.seed), 0x5EC),
    )  # fmt: skip
    return {"superclients": groups}


def _describe(prepared: dict) -> dict:
    """Each superclient's members, the -1 padding dropped."""
    groups = prepared["superclients"]
    return {"superclients": [[int(k) for k in group if k >= 0] for group in groups]}


ENTRY = AlgorithmEntry(
    "fedseq",
    "federated",
    _build_fedseq,
    smoke="configs/fedseq_digits.py:smoke",
    group="fedseq",
    defaults=_fedseq_defaults,
    check_group=_check_fedseq_group,
    check=_check_fedseq,
    robust_aggregation=True,
    host_step=HostStep(_set_aside_exemplars, _superclients, _describe),
)
ENTRIES = (ENTRY,)
