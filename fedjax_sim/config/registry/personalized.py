"""The federated family's personalization methods (`fedjax_sim.algorithms.personalized`): FedPer,
LG-FedAvg, FedRep, FedBABU (a model split into a shared body and a head), Ditto and APFL (a
global and a personal model), one entry each over their shared ``personal`` group."""

from __future__ import annotations

import jax
import ml_collections

from fedjax_sim.algorithms.personalized import (
    PERSONALIZATION,
    head_predicate,
    split_parts,
    two_model_parts,
)
from fedjax_sim.config.fields import ConfigError, integer, number, require
from fedjax_sim.config.registry.entry import AlgorithmEntry, LedgerFacts
from fedjax_sim.config.registry.federated import federated_entry


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


# The personalization methods' shared group (fedper, lg_fedavg, fedrep, fedbabu: a model split
# into a body and a head; ditto, apfl: a personal model beside the global one).
def _personal_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # fedper, lg_fedavg, fedrep, fedbabu: the head, "auto" (the output layer) or
            # top-level layer names, e.g. "Dense_1,Dense_2"
            "head": "auto",
            "head_steps": 4,  # fedrep: each round's first local steps, which train the head alone
            "ditto_lambda": 0.1,  # ditto: lambda of the personal loss's lambda / 2 ||v - w_t||^2
            "apfl_alpha": 0.5,  # apfl: the personal model's fixed mixing weight alpha, in [0, 1]
        }
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


def _personalization(method: str) -> AlgorithmEntry:
    two_models = method in ("ditto", "apfl")
    return federated_entry(
        method,
        _two_model_parts(method) if two_models else _split_parts(method),
        # its smoke variant's 2 local steps leave FedRep's 4 head steps no body steps
        smoke="configs/personalized_digits.py" + ("" if method == "fedrep" else ":smoke"),
        group="personal",
        defaults=_personal_defaults, check_group=_check_personal_group,
        check={"fedrep": _check_fedrep, "fedbabu": _check_fedbabu}.get(method),
        vectorizable={"ditto": ("personal.ditto_lambda",), "apfl": ("personal.apfl_alpha",)}
        .get(method, ()),
        ledger=LedgerFacts(compute_factor=2 if two_models else 1), robust_aggregation=True,
    )  # fmt: skip


ENTRIES = tuple(_personalization(method) for method in PERSONALIZATION)
