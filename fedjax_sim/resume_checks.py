"""Whether a config may continue the run already in a workdir (`check_resumable`)."""

from __future__ import annotations

from fedjax_sim.config_checks import require
from fedjax_sim.optimizers import SCHEDULES

# Schedules whose learning rate at a step depends on the horizon (rounds, or schedule_steps).
_HORIZON_SCHEDULES = tuple(name for name in SCHEDULES if name != "constant")
# A resumed run may be lengthened, re-paced, allowed to run on through NaNs or given another
# number of rounds per call (bit-identical results); any other change would make it another run.
_RESUMABLE_CHANGES = (
    "rounds", "eval_every", "checkpoint_every", "allow_nan", "rounds_per_call", "sweep",
)  # fmt: skip


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
    if old.get("server.optimizer") == "optax_" + str(new.get("server.optimizer")):
        hints.append(
            f"server.optimizer={new['server.optimizer']} follows Reddi et al.'s Algorithm 2 "
            f"since this run was written; pass --config.server.optimizer="
            f"{old['server.optimizer']} (optax's, as it ran) to resume it"
        )
    if old.get("weighting") == "examples" and new.get("weighting") == "uniform":
        hints.append(
            "weighting 'auto' (the default) is now the paper's uniform mean for scaffold and "
            "feddyn; pass --config.weighting=examples to resume this run"
        )
    return "".join(f" ({hint})" for hint in hints)


def upgraded(previous: dict) -> dict:
    """A flattened ``config.json`` written before Algorithm 2's FedOpt (without
    ``client.b1``), in today's terms: its server adam/yogi/adagrad were optax's (now
    ``optax_*``), and ``server.b1 = 0.9``, ``server.b2 = 0.99`` were the defaults that an
    unset field now means."""
    if "server.b1" not in previous or "client.b1" in previous:
        return previous
    old = dict(previous, **{"client.b1": None, "client.b2": None})
    if old["server.optimizer"] in ("adam", "yogi", "adagrad"):
        old["server.optimizer"] = "optax_" + old["server.optimizer"]
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
        if old.get(name) != new.get(name)
        and name not in _RESUMABLE_CHANGES
        and name != horizon_field
    )
    require(
        not changed,
        f"workdir {workdir} holds a run whose config differs in {', '.join(changed)}; "
        f"use a new --workdir{_hints(old, new)}",
    )
    for block in ("server", "client"):
        schedule = new.get(f"{block}.schedule")
        require(
            schedule not in _HORIZON_SCHEDULES or old["rounds"] == new["rounds"],
            f"rounds={new['rounds']}: the run in {workdir} decays its {block} {schedule} "
            f"learning rate over {old['rounds']} rounds and this config over {new['rounds']}, "
            "so it would resume mid-way through another schedule; use a new --workdir",
        )
    if new.get("optimizer.schedule") not in _HORIZON_SCHEDULES or new["algorithm"] != "centralized":
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
