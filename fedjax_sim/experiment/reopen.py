"""A run reopened from its workdir: its config, its model with its state, its metrics, and its
evaluation on the test split, for a finished run or any checkpoint it kept.

`load_run` rebuilds the experiment from the workdir's ``config.json`` (data, task, algorithm:
the same code the run used) and restores a checkpoint into it, so ``run.evaluate()`` is the
run's own evaluation (global model, per-client and personalized or fine-tuned models where the
run has them) and equals the metrics the run recorded at that round.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

from fedjax_sim.config.checks import ConfigError
from fedjax_sim.config.files import load_config
from fedjax_sim.experiment.assembly import Experiment, build_experiment
from fedjax_sim.runtime import multihost, outputs
from fedjax_sim.runtime.checkpoints import Checkpointer


@dataclasses.dataclass(frozen=True)
class Run:
    """A run as its workdir holds it at one checkpoint.

    Attributes:
      workdir: the run's directory.
      config: its config, as ``config.json`` recorded it.
      round: the round of the restored checkpoint.
      state: the algorithm's whole state at that round (server optimizer and per-client state
        included), as the next round would take it.
      variables: the global model, ``{"params", "state"}`` (``state``: e.g. BatchNorm
        statistics; empty for models without any).
      history: the metrics records up to that round, as ``metrics.jsonl`` holds them.
      dataset: ``dataset.json``: the data's statistics and what the run kept local.
      experiment: the rebuilt `fedjax_sim.experiment.assembly.Experiment` (data, task, algorithm).
    """

    workdir: str
    config: ml_collections.ConfigDict
    round: int
    state: Any
    variables: dict
    history: list[dict]
    dataset: dict
    experiment: Experiment

    def evaluate(self) -> dict:
        """The run's evaluation of this state on the test split: ``test_accuracy``,
        ``test_loss``, per-client accuracy and, where the run has them, ``personal_*`` and
        ``finetuned_*`` metrics (the same function the run called)."""
        return {
            name: float(value) if hasattr(value, "__float__") else value
            for name, value in self.experiment.evaluate(self.state).items()
        }


def load_run(workdir: str, round_number: int | None = None) -> Run:
    """Reopens the run in ``workdir`` at its last checkpoint, or at ``round_number``.

    Raises:
      ConfigError: ``workdir`` holds no run (no ``config.json``), holds the runs of
        ``num_seeds`` seeds (reopen one ``seed_<s>/`` run's config instead), or no
        checkpoint.
      CheckpointError: ``round_number`` is not a kept checkpoint, or none is readable.
    """
    config_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(config_path):
        raise ConfigError(f"--workdir {workdir}: no run there (no config.json)")
    config = load_config(config_path)
    if config.get("num_seeds", 1) > 1:
        raise ConfigError(
            f"--workdir {workdir} holds the runs of num_seeds={config.num_seeds} seeds in one "
            "program, which keep no checkpoint of each seed's model; rerun one seed "
            "(--config.num_seeds=1 --config.seed=S) to reopen it"
        )
    experiment = build_experiment(config)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), every=0)
    restored = checkpointer.restore(experiment.initial_state, round_number)
    if restored is None:
        raise ConfigError(f"--workdir {workdir}: the run kept no checkpoint to reopen")
    state, history, _ = restored
    with open(os.path.join(workdir, "dataset.json")) as f:
        dataset = json.load(f)
    variables = multihost.local_copy({"params": state.params, "state": state.model_state})
    return Run(workdir, config, int(state.round), state, variables, history, dataset,
               experiment)  # fmt: skip


def evaluate_run(workdir: str, round_number: int | None = None) -> dict:
    """Evaluates the run in ``workdir`` at its last (or ``round_number``'s) checkpoint and
    writes the metrics, with their ``round``, to ``evaluations/round_<N>.json`` there.

    Returns:
      The metrics, ``round`` first.
    """
    run = load_run(workdir, round_number)
    metrics = {"round": run.round, **run.evaluate()}
    if multihost.is_writer():
        path = os.path.join(workdir, "evaluations", f"round_{run.round}.json")
        outputs.write_json_atomic(path, metrics)
    return metrics
