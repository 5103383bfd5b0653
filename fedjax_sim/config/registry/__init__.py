"""The one place that knows every algorithm: ``ALGORITHMS[name]`` is its `AlgorithmEntry`.

An entry holds what the rest of the package asks of an algorithm: its family (federated,
distributed, centralized), its config group (``config.<group>``: defaults, bounds), the rules
it adds on other fields, its builder (config -> `fedjax_sim.core.local.Algorithm`; the
algorithm factories in `fedjax_sim.algorithms` take no config, optax style), the group fields a
vectorized sweep may vary, its ledger facts, the host work before its first round, and how its
group's fields compare when a run resumes. `fedjax_sim.config.defaults`,
`fedjax_sim.config.checks`, `fedjax_sim.config.build`, `fedjax_sim.config.resume`,
`fedjax_sim.experiment` and the ledger's cost model read the entries; none of them branches on
an algorithm's name.

The entries sit in one module per family, each ending in its ``ENTRIES``; `ALGORITHMS` gathers
them module by module in this order, each module's in its own, which config.json's groups and
the messages listing the allowed names follow:

  federated.py     FedAvg and the server-client algorithms whose round is core.round's
  personalized.py  the personalization methods
  fedseq.py        FedSeq
  distributed.py   the distributed track's (LocalSGD and kin, asynchronous SGD, gossip)
  centralized.py   centralized training

Adding an algorithm is a module in `fedjax_sim.algorithms` and one entry in its family's
module (a group's defaults and bounds beside it, when it has options of its own).
"""

from __future__ import annotations

from fedjax_sim.config.fields import ConfigError, one_of
from fedjax_sim.config.registry import centralized, distributed, federated, fedseq, personalized
from fedjax_sim.config.registry.entry import (
    FAMILIES,
    AlgorithmEntry,
    HostStep,
    LedgerFacts,
    ResumedField,
)

__all__ = [
    "ALGORITHMS",
    "FAMILIES",
    "AlgorithmEntry",
    "HostStep",
    "LedgerFacts",
    "ResumedField",
    "get",
    "groups",
    "is_centralized",
    "names",
    "resumed_fields",
    "trained_groups",
    "vectorizable_fields",
]


def _entries(*entries: AlgorithmEntry) -> dict[str, AlgorithmEntry]:
    for entry in entries:
        assert entry.family in FAMILIES, entry
    return {entry.name: entry for entry in entries}


ALGORITHMS: dict[str, AlgorithmEntry] = _entries(
    *federated.ENTRIES,
    *personalized.ENTRIES,
    *fedseq.ENTRIES,
    *distributed.ENTRIES,
    *centralized.ENTRIES,
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
    if name in SPELLED_BY_FIELDS:
        raise ConfigError(f"algorithm={name!r} is {SPELLED_BY_FIELDS[name]}")
    one_of("algorithm", name, tuple(ALGORITHMS))
    return ALGORITHMS[name]


# Algorithms of the papers that are another entry with some fields set: the name a user tries
# first gets the fields that run it.
SPELLED_BY_FIELDS = {
    "fedadam": "fedavg with --config.server.optimizer=adam (configs/fedadam_shakespeare.py)",
    "fedyogi": "fedavg with --config.server.optimizer=yogi (configs/fedadam_shakespeare.py)",
    "fedadagrad": "fedavg with --config.server.optimizer=adagrad (configs/fedadam_shakespeare.py)",
    "fedopt": "fedavg with --config.server.optimizer=adam, yogi or adagrad "
    "(configs/fedadam_shakespeare.py)",
    "fedavgm": "fedavg with --config.server.momentum=0.9 --config.server.learning_rate=0.3 "
    "(server momentum; configs/fedadam_shakespeare.py's docstring)",
    "slowmo": "localsgd with --config.server.momentum (the slow momentum beta) "
    "(configs/slowmo_digits.py)",
    "diloco": "localsgd with an inner AdamW and an outer Nesterov server "
    "(configs/diloco_digits.py)",
    "postlocal": "localsgd with --config.localsgd.schedule=post_local "
    "(configs/postlocal_digits.py)",
    "lars": "centralized with --config.optimizer.name=lars (configs/largebatch_digits.py)",
    "lamb": "centralized with --config.optimizer.name=lamb (configs/largebatch_digits.py)",
}


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


def resumed_fields() -> dict[str, ResumedField]:
    """Every entry's `AlgorithmEntry.resumed_fields`, in registry order."""
    return {field: rule for e in ALGORITHMS.values() for field, rule in e.resumed_fields.items()}
