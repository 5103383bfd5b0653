"""Whether a config may continue the run already in a workdir (`check_resumable`)."""

from __future__ import annotations

from fedjax_sim.algorithms.local_sgd import resolved_sync_momentum
from fedjax_sim.config import registry
from fedjax_sim.config.checks import require
from fedjax_sim.core.optimizers import SCHEDULES, excludes_bias_and_norm

# Schedules whose learning rate at a step depends on the horizon (rounds, or schedule_steps).
_HORIZON_SCHEDULES = tuple(name for name in SCHEDULES if name != "constant")
# A resumed run may be lengthened, re-paced, allowed to run on through NaNs or given another
# number of rounds per call (bit-identical results); any other change would make it another run.
_RESUMABLE_CHANGES = (
    "rounds", "eval_every", "checkpoint_every", "allow_nan", "rounds_per_call", "sweep",
)  # fmt: skip


# Fields whose None means "the papers' choice" in context, or that a config.json written before
# them lacks (it ran with the value given here): compared by what they do in each config, so
# that an old run resumes where nothing changed and is told the flag that keeps its behaviour
# where something did.
_ADDED_FIELDS = {
    "localsgd.before_switch": "models",
    "asynchronous.rule": "delta",
    "asynchronous.mixing": 0.6,
}


def _meaning(name: str, flat: dict):
    """What field ``name`` does in the flattened config ``flat`` (which may predate it); None
    where it does nothing."""
    value = flat.get(name, _ADDED_FIELDS.get(name))
    algorithm, schedule = flat.get("algorithm"), flat.get("localsgd.schedule")
    if name == "optimizer.exclude_bias_and_norm" and value is None:
        return excludes_bias_and_norm(flat.get("optimizer.name", ""))
    if name == "localsgd.sync_momentum" and value is None:
        return resolved_sync_momentum(None, schedule if algorithm == "localsgd" else None)
    if name == "localsgd.before_switch" and (algorithm, schedule) != ("localsgd", "post_local"):
        return None
    if name == "asynchronous.mixing" and flat.get("asynchronous.rule", "delta") != "fedasync":
        return None
    return value


_BY_MEANING = ("optimizer.exclude_bias_and_norm", "localsgd.sync_momentum", *_ADDED_FIELDS)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
        hints.append(
            "weighting 'auto' (the default) is now the paper's uniform mean for scaffold and "
            "feddyn; pass --config.weighting=examples to resume this run"
        )
    return "".join(f" ({hint})" for hint in hints)


def upgraded(previous: dict) -> dict:
    """A flattened ``config.json`` written before Algorithm 2's FedOpt (without
    ``client.b1``), in today's terms: its server adam/yogi/adagrad and its lars were optax's
    (now ``optax_*``), and ``server.b1 = 0.9``, ``server.b2 = 0.99`` were the defaults that an
    unset field now means."""
    if "server.b1" not in previous or "client.b1" in previous:
        return previous
    old = dict(previous, **{"client.b1": None, "client.b2": None})
    if old["server.optimizer"] in ("adam", "yogi", "adagrad", "lars"):
        old["server.optimizer"] = "optax_" + old["server.optimizer"]
    if old["client.optimizer"] == "lars":  # optax's trust ratio then, You et al.'s now
        old["client.optimizer"] = "optax_lars"
    for name, former_default in (("server.b1", 0.9), ("server.b2", 0.99)):
        if old[name] == former_default:
            old[name] = None
    return old


def check_resumable(previous: dict, current: dict, workdir: str) -> None:
    """Raises `ConfigError` unless ``current`` may continue the run of config ``previous``.

    Args:
      previous: the resolved config (as JSON) of the run in ``workdir``.
      current: the resolved config (as JSON) asked for now.
      workdir: named in the message.

    Fields whose default changed (``optimizer.exclude_bias_and_norm``,
    ``localsgd.sync_momentum``: None, the papers' choice) or that the run's config predates
    (``localsgd.before_switch``, ``asynchronous.rule``, ``asynchronous.mixing``) compare by
    what they do: an old run whose behaviour a new default changes is refused with the flag
    that keeps it.

    Lengthening (``rounds``), re-pacing (``eval_every``, ``checkpoint_every``) and ``allow_nan``
    may change. A schedule whose horizon is ``rounds`` (every one but ``constant``, centralized
    or server) may not be lengthened that way: its learning rate would jump to the middle of a
    new decay. A centralized run's horizon can be kept with ``optimizer.schedule_steps`` set to
    the old one, which is what the error says.
    """
    old, new = upgraded(_flatten(previous)), _flatten(current)
    horizon_field = "optimizer.schedule_steps"
    changed = sorted(
        name
        for name in old.keys() | new.keys()
        if name not in (*_RESUMABLE_CHANGES, horizon_field, *_BY_MEANING)
        and old.get(name) != new.get(name)
    )
    require(
        not changed,
        f"workdir {workdir} holds a run whose config differs in {', '.join(changed)}; "
        f"use a new --workdir{_hints(old, new)}",
    )
    keep = [
        f"--config.{name}={_meaning(name, old)}"
        for name in _BY_MEANING
        if (name in old or name in new) and _meaning(name, old) != _meaning(name, new)
    ]
    require(
        not keep,
        f"workdir {workdir} holds a run that this config would continue differently (a "
        f"default may have changed); pass {' '.join(keep)} to resume it as it ran, or use a "
        "new --workdir",
    )
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
    old_horizon = old.get(horizon_field) or old["rounds"]
    new_horizon = new.get(horizon_field) or new["rounds"]
    require(
        old_horizon == new_horizon,
        f"rounds={new['rounds']}: the run in {workdir} decays its {new['optimizer.schedule']} "
        f"learning rate over {old_horizon} steps and this config over {new_horizon}, so it "
        f"would resume mid-way through another schedule; pass "
        f"--config.optimizer.schedule_steps={old_horizon} to keep the run's schedule, or use a "
        "new --workdir",
    )
