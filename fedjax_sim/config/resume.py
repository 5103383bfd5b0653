"""Whether a config may continue the run already in a workdir (`check_resumable`).

A run's ``config.json`` may predate today's fields and defaults. It is first brought to today's
terms (`upgraded`) by one table of upgrades: the ``config.json`` written before FedOpt followed
Reddi et al.'s Algorithm 2, and each field that a registry entry's `ResumedField` says was added
later. Those resumed fields then compare by what they do in each config (their entries say
what), every other field by its value. A group that the ``config.json`` has none of and that its
algorithm does not own came with another algorithm after the run was written: it did nothing in
that run, and is not compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fedjax_sim.config import registry
from fedjax_sim.config.fields import require
from fedjax_sim.core.optimizers import SCHEDULES

# Schedules whose learning rate at a step depends on the horizon (rounds, or schedule_steps).
_HORIZON_SCHEDULES = tuple(name for name in SCHEDULES if name != "constant")
# A resumed run may be lengthened, re-paced, allowed to run on through NaNs or given another
# number of rounds per call (bit-identical results), or compute its convolutions another way (the
# same function, other rounding: e.g. `loop_friendly` to go on as `auto` ran on CPU before it
# chose `winograd`); any other change would make it another run.
_RESUMABLE_CHANGES = (
    "rounds", "eval_every", "checkpoint_every", "allow_nan", "rounds_per_call", "sweep",
    "model.conv",
)  # fmt: skip
# Groups that only say where a run's records are logged: any of their fields may change.
_RESUMABLE_GROUPS = ("wandb",)
_HORIZON_FIELD = "optimizer.schedule_steps"
_RESUMED = registry.resumed_fields()
_ABSENT = object()  # a field that a config.json lacks


@dataclasses.dataclass(frozen=True)
class _Upgrade:
    """A change after which an older ``config.json`` reads differently: where ``applies(flat)``,
    each field of ``values`` takes ``values[field][its value then]`` (`_ABSENT`: it lacked the
    field), other values staying."""

    applies: Callable[[dict], bool]
    values: dict[str, dict]


# Written before FedOpt followed Algorithm 2 (server.b1 without client.b1): its server adam,
# yogi and adagrad and its lars were optax's (now optax_*), and server.b1 = 0.9 and
# server.b2 = 0.99 were the defaults that an unset field now means.
_BEFORE_FEDOPT = _Upgrade(
    lambda flat: "server.b1" in flat and "client.b1" not in flat,
    {
        "client.b1": {_ABSENT: None},
        "client.b2": {_ABSENT: None},
        "server.optimizer": {name: "optax_" + name for name in ("adam", "yogi", "adagrad", "lars")},
        "client.optimizer": {"lars": "optax_lars"},  # optax's trust ratio then, You et al.'s now
        "server.b1": {0.9: None},
        "server.b2": {0.99: None},
    },
)


def _added(field: str, value) -> _Upgrade:
    """A field added to its group later: a config.json with the group but not the field ran
    with ``value``."""
    group = field.rpartition(".")[0] + "."
    return _Upgrade(lambda flat: any(name.startswith(group) for name in flat),
                    {field: {_ABSENT: value}})  # fmt: skip


_UPGRADES = (_BEFORE_FEDOPT, *(_added(field, rule.added) for field, rule in _RESUMED.items()))


def upgraded(previous: dict) -> dict:
    """The flattened ``config.json`` ``previous`` in today's terms (`_UPGRADES`, in order)."""
    flat = dict(previous)
    for upgrade in _UPGRADES:
        if not upgrade.applies(flat):
            continue
        for name, values in upgrade.values.items():
            then = flat.get(name, _ABSENT)
            now = values.get(then, then)
            if now is not _ABSENT:
                flat[name] = now
    return flat


def _meaning(name: str, flat: dict):
    """What resumed field ``name`` does in the flattened config ``flat``."""
    meaning = _RESUMED[name].meaning
    return flat.get(name) if meaning is None else meaning(flat)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _groups_added_since(old: dict) -> set[str]:
    """The registry's groups that the flattened record ``old`` has no field of and that its
    algorithm does not own (every federated and distributed config carries every group of
    both families, so an algorithm added with a group adds it to every new record)."""
    entries = registry.ALGORITHMS.values()
    owned = {e.group for e in entries if e.name == old.get("algorithm")}
    present = {name.partition(".")[0] for name in old}
    return {e.group for e in entries if e.group} - owned - present


def _hints(old: dict, new: dict) -> str:
    """What to pass to resume a run whose default or meaning has changed since it was written."""
    hints = []
    for block in ("server", "client"):
        name = f"{block}.optimizer"
        if old.get(name) == "optax_" + str(new.get(name)):
            hints.append(
                f"{name}={new[name]} follows its paper since this run was written; pass "
                f"--config.{name}={old[name]} (optax's, as it ran) to resume it"
            )
    if old.get("weighting") == "examples" and new.get("weighting") == "uniform":
        *others, last = [n for n, e in registry.ALGORITHMS.items() if e.weighting == "uniform"]
        uniform = f"{', '.join(others)} and {last}" if others else last
        hints.append(
            f"weighting 'auto' (the default) is now the paper's uniform mean for {uniform}; "
            "pass --config.weighting=examples to resume this run"
        )
    return "".join(f" ({hint})" for hint in hints)


def check_resumable(previous: dict, current: dict, workdir: str) -> None:
    """Raises `ConfigError` unless ``current`` may continue the run of config ``previous``.

    Args:
      previous: the resolved config (as JSON) of the run in ``workdir``.
      current: the resolved config (as JSON) asked for now.
      workdir: named in the message.

    ``previous`` is read in today's terms (`upgraded`). The registry entries' resumed fields
    (e.g. ``localsgd.sync_momentum``, whose None is the papers' choice, or
    ``asynchronous.rule``, which older runs lack) compare by what they do: an old run whose
    behaviour a new default changes is refused with the flag that keeps it. A group that
    ``previous`` has none of and its algorithm does not own (one added with another algorithm
    since) is not compared; the run's own group always is.

    Lengthening (``rounds``), re-pacing (``eval_every``, ``checkpoint_every``), ``allow_nan``
    and the ``wandb`` logging fields may change. A schedule whose horizon is ``rounds`` (every
    one but ``constant``, centralized or server) may not be lengthened that way: its learning
    rate would jump to the middle of a new decay. A centralized run's horizon can be kept with
    ``optimizer.schedule_steps`` set to the old one, which is what the error says.
    """
    old, new = upgraded(_flatten(previous)), _flatten(current)
    added = _groups_added_since(old)
    new = {name: value for name, value in new.items() if name.partition(".")[0] not in added}
    changed = sorted(
        name
        for name in old.keys() | new.keys()
        if name not in (*_RESUMABLE_CHANGES, _HORIZON_FIELD, *_RESUMED)
        and name.partition(".")[0] not in _RESUMABLE_GROUPS
        and old.get(name) != new.get(name)
    )
    require(
        not changed,
        f"workdir {workdir} holds a run whose config differs in {', '.join(changed)}; "
        f"use a new --workdir{_hints(old, new)}",
    )
    keep = [
        f"--config.{name}={_meaning(name, old)}"
        for name in _RESUMED
        if (name in old or name in new) and _meaning(name, old) != _meaning(name, new)
    ]
    require(
        not keep,
        f"workdir {workdir} holds a run that this config would continue differently (a "
        f"default may have changed); pass {' '.join(keep)} to resume it as it ran, or use a "
        "new --workdir",
    )
    _check_horizons(old, new, workdir)


def _check_horizons(old: dict, new: dict, workdir: str) -> None:
    """A decaying schedule keeps its horizon (see `check_resumable`)."""
    for block in ("server", "client"):
        schedule = new.get(f"{block}.schedule")
        require(
            schedule not in _HORIZON_SCHEDULES or old["rounds"] == new["rounds"],
            f"rounds={new['rounds']}: the run in {workdir} decays its {block} {schedule} "
            f"learning rate over {old['rounds']} rounds and this config over {new['rounds']}, "
            "so it would resume mid-way through another schedule; use a new --workdir",
        )
    if new.get("optimizer.schedule") not in _HORIZON_SCHEDULES or not registry.is_centralized(
        new["algorithm"]
    ):
        return
    old_horizon = old.get(_HORIZON_FIELD) or old["rounds"]
    new_horizon = new.get(_HORIZON_FIELD) or new["rounds"]
    require(
        old_horizon == new_horizon,
        f"rounds={new['rounds']}: the run in {workdir} decays its {new['optimizer.schedule']} "
        f"learning rate over {old_horizon} steps and this config over {new_horizon}, so it "
        f"would resume mid-way through another schedule; pass "
        f"--config.optimizer.schedule_steps={old_horizon} to keep the run's schedule, or use a "
        "new --workdir",
    )
