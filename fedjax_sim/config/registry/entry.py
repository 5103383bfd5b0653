"""What one algorithm's registry entry says: `AlgorithmEntry`, its `LedgerFacts`, its optional
`HostStep` and its `ResumedField` rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from fedjax_sim.core.local import Algorithm

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
class HostStep:
    """Work done once on the host before the first round, whose result the algorithm's builder
    takes (FedSeq's superclients); `fedjax_sim.experiment.assembly.build_experiment` runs it.

    Attributes:
      set_aside: ``set_aside(config, dataset) -> (dataset, held)``, run on the dataset as
        loaded, before its test split is matched to the clients or subsampled: takes from it
        what ``prepare`` reads (FedSeq's server exemplars), ``held`` (None: nothing taken).
      prepare: ``prepare(config, task, dataset, clients, initial_variables, held) -> kwargs``:
        the keyword arguments that ``build`` takes besides the config (FedSeq:
        ``superclients``), from the dataset and training clients as the run uses them and the
        initial model.
      describe: ``describe(kwargs) -> dict``: what the run's ``dataset.json`` records of them.
    """

    set_aside: Callable[[ml_collections.ConfigDict, Any], tuple[Any, Any]]
    prepare: Callable[..., dict[str, Any]]
    describe: Callable[[dict[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class ResumedField:
    """How a group field compares when a run resumes (`fedjax_sim.config.resume`): by what it
    does, not by its value, because what its value means changed, or because a ``config.json``
    written before the field lacks it. A run then resumes where nothing it does changed, and is
    told the flag that keeps its behaviour where something did.

    Attributes:
      added: the value that a run whose ``config.json`` has the field's group but not the field
        ran with.
      meaning: ``meaning(flat) -> what the field does`` in the flattened config ``flat`` (None
        where it does nothing); None: its value.
    """

    added: Any = None
    meaning: Callable[[dict], Any] | None = None


@dataclasses.dataclass(frozen=True)
class AlgorithmEntry:
    """Everything the config layer and the experiment know of one algorithm.

    Attributes:
      name: ``config.algorithm``.
      family: "federated" (sampled clients, a server), "distributed" (K workers training one
        model, all in every round) or "centralized" (one model, optimizer steps).
      build: ``build(config, task, num_clients, execution, **prepared) -> Algorithm``
        (centralized ignores the execution); ``prepared`` are its `HostStep`'s keyword
        arguments, which an entry without one ignores.
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
      host_step: its `HostStep`, or None.
      resumed_fields: ``{field: ResumedField}`` for the group's fields that compare by what
        they do when a run resumes, in the order a message lists them.
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
    host_step: HostStep | None = None
    # a dict: left out of the entry's hash
    resumed_fields: Mapping[str, ResumedField] = dataclasses.field(default_factory=dict, hash=False)

    @property
    def per_client_data(self) -> bool:
        return self.family == "federated"
