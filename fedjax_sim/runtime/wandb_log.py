"""Optional Weights & Biases logging of a run's records (``pip install 'fedjax-sim[wandb]'``).

Off unless a project is named (``--config.wandb.project=NAME``). The W&B run's id is kept in
``workdir/wandb.json`` with the last round it logged, so that a resumed run continues the
same W&B run and does not log again the rounds that the killed run had logged (the resumed
run recomputes them bit for bit; W&B drops steps that do not increase).
"""

from __future__ import annotations

import dataclasses
import json
import os

from fedjax_sim.runtime import outputs
from fedjax_sim.runtime.run_log import is_number

STATE_FILE = "wandb.json"
MODES = ("online", "offline")


@dataclasses.dataclass(frozen=True)
class WandbSettings:
    """Where a run's records go in W&B; ``project`` "" turns logging off.

    ``name`` "" names the W&B run after the workdir's folder; ``tags`` are comma-separated;
    ``mode`` "offline" writes ``workdir/wandb`` for a later ``wandb sync``.
    """

    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    tags: str = ""
    mode: str = "online"


class WandbError(ValueError):
    """W&B is missing or would not start a run (one line saying what to do)."""


class WandbLog:
    """Logs the numeric fields of each new record at its round as W&B's step.

    Args:
      settings: the config's ``wandb`` group.
      workdir: the run's directory (the id file, and W&B's own files in ``workdir/wandb``).
      config: the run's resolved config record (``config.json``), shown as the W&B config.

    Raises:
      WandbError: ``wandb`` is not installed, or ``wandb.init`` failed (e.g. not logged in).
    """

    def __init__(self, settings: WandbSettings, workdir: str, config: dict):
        try:
            import wandb
        except ImportError as error:
            raise WandbError(
                f"wandb.project={settings.project!r} needs the wandb package: pip install "
                "'fedjax-sim[wandb]' (or set wandb.project='' to log without it)"
            ) from error
        os.makedirs(workdir, exist_ok=True)
        self._path = os.path.join(workdir, STATE_FILE)
        kept = _read_state(self._path)
        self._logged = kept.get("round", 0)
        try:
            self._run = wandb.init(
                project=settings.project, entity=settings.entity or None,
                name=settings.name or os.path.basename(os.path.abspath(workdir)),
                group=settings.group or None, mode=settings.mode, dir=workdir, id=kept.get("id"),
                resume="allow", config=config, tags=_tags(settings.tags) or None,
                reinit="create_new",  # a num_seeds run logs its seeds as runs side by side
                settings=wandb.Settings(console="off"),  # leave the progress bar alone
            )  # fmt: skip
        except Exception as error:  # wandb raises its own kinds (UsageError, CommError, ...)
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise WandbError(
                f"Weights & Biases would not start the run ({type(error).__name__}: "
                f"{first_line}): run `wandb login`, or set wandb.mode=offline"
            ) from error
        self._id = self._run.id  # W&B's new id, or the resumed run's
        outputs.write_json_atomic(self._path, {"id": self._id, "round": self._logged})

    def update(self, history: list[dict]) -> None:
        """Logs the records of rounds after the last logged one; idempotent."""
        pending = [r for r in history if r["round"] > self._logged]
        for record in pending:
            numbers = {k: v for k, v in record.items() if k != "round" and is_number(v)}
            self._run.log(numbers, step=record["round"])
        if pending:
            self._logged = pending[-1]["round"]
            outputs.write_json_atomic(self._path, {"id": self._id, "round": self._logged})

    def close(self, failed: bool = False) -> None:
        """Finishes the W&B run (exit code 1 when the run stopped on an error)."""
        if self._run is not None:
            run, self._run = self._run, None
            run.finish(exit_code=1 if failed else 0)


def wandb_log_of(group: dict, workdir: str, record: dict, seed: int | None = None):
    """The run's `WandbLog` when ``group`` (the config's ``wandb`` fields) names a project,
    else None. A seed of a ``num_seeds`` run logs as its own W&B run, ``<name>-seed<s>``
    (grouped under the workdir's name unless ``group`` says), from ``workdir`` = its
    ``seed_<s>`` folder."""
    settings = WandbSettings(**group)
    if not settings.project:
        return None
    if seed is not None:
        parent = os.path.basename(os.path.dirname(os.path.abspath(workdir)))
        settings = dataclasses.replace(
            settings, name=f"{settings.name or parent}-seed{seed}", group=settings.group or parent
        )
    return WandbLog(settings, workdir, record)


def _read_state(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        return json.load(file)


def _tags(text: str) -> list[str]:
    return [tag.strip() for tag in text.split(",") if tag.strip()]
