"""One experiment from a config run in a workdir: `simulate` over what
`fedjax_sim.experiment.assembly.build_experiment` builds, and the run's files.

The CLI, the experiment scripts and the notebooks all call `run_experiment` (or its parts), so
a run from a notebook is the same run as from the command line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import ml_collections
from absl import logging

from fedjax_sim.config import registry
from fedjax_sim.config.checks import ConfigError, check_config, config_record
from fedjax_sim.config.resume import check_resumable
from fedjax_sim.core.round import per_client_state_bytes
from fedjax_sim.experiment import seeds as seed_runs
from fedjax_sim.experiment.assembly import (
    Experiment,
    attack_of,
    bad_clients_of,
    build_experiment,
    cost_model,
    local_parameters,
)
from fedjax_sim.runtime import ledger, multihost, outputs
from fedjax_sim.runtime.host_memory import release_init_memory, trim_after_each_compile
from fedjax_sim.runtime.run_log import RunLog, closing
from fedjax_sim.runtime.simulate import simulate
from fedjax_sim.runtime.wandb_log import wandb_log_of


def check_workdir(workdir: str, resolved: dict) -> None:
    """Refuses a workdir that is not a writable directory, or that holds another run."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file, not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--workdir {workdir}: cannot create it: {error.strerror}") from error
    if not os.access(workdir, os.W_OK):
        raise ConfigError(f"--workdir {workdir} is not writable")
    config_path = os.path.join(workdir, "config.json")
    if os.path.exists(config_path):
        try:
            with open(config_path) as f:
                previous = json.load(f)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"{config_path} is unreadable ({error}); use a new --workdir"
            ) from error
        check_resumable(previous, resolved, workdir)


def run_experiment(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    free_init_memory: bool = False,
):
    """Runs (or resumes) the experiment of ``config`` in ``workdir``.

    Writes ``config.json``, ``dataset.json`` (statistics, and the `local_parameters` of
    algorithms that keep some), ``metrics.jsonl``, ``metrics.csv`` (with the cumulative
    `fedjax_sim.runtime.ledger` counters), ``curves.png``, ``ledger.png`` (accuracy against epochs,
    bytes and simulated time), ``params.msgpack`` (final parameters), ``variables.msgpack``
    (final parameters and model state, e.g. BatchNorm statistics: ``{"params", "state"}``) and
    orbax checkpoints under ``checkpoints/`` (`fedjax_sim.experiment.reopen.load_run` reopens
    them); running again on the same ``workdir`` resumes from the last checkpoint
    (`fedjax_sim.config.resume.check_resumable` says which config changes it accepts).

    Args:
      config: the experiment (checked by `check_config`).
      workdir: the run's directory.
      progress: show a progress bar.
      log: receives one line describing the data before training (default: absl logging).
      free_init_memory: once the initial state is built, clear JAX's compilation caches and
        trim the heap (`release_init_memory`), and from then on trim it after every compilation
        (`trim_after_each_compile`, process-wide): a lower peak for a process that runs one
        experiment (the CLI), while a process running several (a sweep) would recompile.

    Returns:
      ``(state, history)`` as `fedjax_sim.runtime.simulate.simulate`.

    Raises:
      ConfigError, DataError: bad config values, workdir or data (one-line messages).
      DivergenceError: training metrics or parameters became NaN/inf (unless ``allow_nan``).
    """
    check_config(config)
    resolved = config_record(config)
    check_workdir(workdir, resolved)
    experiment = build_experiment(config)
    if free_init_memory:  # the eager init's executables, before the round compiles
        release_init_memory()
        trim_after_each_compile()
    summary = run_summary(experiment)
    writer = multihost.is_writer()
    (log if log and writer else logging.info)(_data_line(summary))
    if writer:
        outputs.write_json_atomic(os.path.join(workdir, "config.json"), resolved)
        outputs.write_json_atomic(os.path.join(workdir, "dataset.json"), summary)

    costs = cost_model(experiment)
    syncs_per_round = 0.0 if registry.get(config.algorithm).family == "centralized" else 1.0

    if config.num_seeds > 1:
        return seed_runs.run_seeds(
            config, workdir, experiment, costs, syncs_per_round, progress, resolved
        )

    # a bar where a person watches (a terminal, a notebook); else a line per evaluation
    bar = progress and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    run_log = RunLog(workdir, line=log if writer and not bar else None, tensorboard=writer)
    wandb = wandb_log_of(config.wandb.to_dict(), workdir, resolved) if writer else None

    def on_record(history):
        ledger.annotate(history, costs, syncs_per_round)
        run_log.update(history)
        if writer:
            outputs.write_metrics(workdir, history)
        if wandb:
            wandb.update(history)

    def on_resume(round_number):
        if writer and log:
            log(f"resuming from the checkpoint of round {round_number} in {workdir}")

    with closing([run_log, wandb]):
        state, history = _simulate_experiment(experiment, workdir, on_record, on_resume, bar)
    ledger.annotate(history, costs, syncs_per_round)
    variables = multihost.local_copy({"params": state.params, "state": state.model_state})
    if writer:  # only process 0 writes; every process ran the same rounds
        _write_results(experiment, workdir, variables, history)
    return state, history


def run_summary(experiment: Experiment) -> dict:
    """``dataset.json``: the data's statistics, the per-client state's size, the attack's
    bad clients, what the algorithm's host step describes, the parameters kept local, and
    whether the data are synthetic."""
    config = experiment.config
    summary = outputs.dataset_summary(experiment.dataset)
    summary["per_client_state_bytes"] = per_client_state_bytes(experiment.initial_state)
    if attack_of(config) != "none":
        bad = bad_clients_of(config, experiment.dataset.num_clients)
        summary["attack"] = {
            "name": config.robust.attack,
            "bad_fraction": config.robust.bad_fraction,
            "bad_clients": [int(k) for k in bad],
            "bad_client_names": [experiment.dataset.client_ids[k] for k in bad],
        }
    host_step = registry.get(config.algorithm).host_step
    if host_step is not None:
        summary.update(host_step.describe(experiment.prepared))
    local = local_parameters(experiment.initial_state)
    if local:
        summary["local_parameters"] = local
    if config.data.name == "cifar100" and config.data.source == "synthetic":
        summary["synthetic"] = "random CIFAR-shaped images (data.source=synthetic), not CIFAR-100"
    return summary


def _data_line(summary: dict) -> str:
    """The line a run starts with: what it trains and evaluates on."""
    state_bytes, local = summary["per_client_state_bytes"], summary.get("local_parameters")
    return (
        f"{summary['name']}"
        + (" (SYNTHETIC: random CIFAR-shaped images)" if "synthetic" in summary else "")
        + f": {summary['clients']} clients, {summary['train_examples']:,} "
        f"training examples; evaluating on {summary['test_examples']:,} test examples"
        + (f"; per-client state {state_bytes / 1e6:,.1f} MB" if state_bytes else "")
        + (f"; {len(local)} parameter leaves stay local (dataset.json)" if local else "")
    )


def _write_results(experiment: Experiment, workdir: str, variables, history: list[dict]):
    """The final files: metrics, ``params.msgpack``, ``variables.msgpack`` (``variables``:
    the final ``{"params", "state"}``) and the plots."""
    config = experiment.config
    outputs.write_metrics(workdir, history)
    outputs.write_params(os.path.join(workdir, "params.msgpack"), variables["params"])
    outputs.write_params(os.path.join(workdir, "variables.msgpack"), variables)
    title = f"{config.algorithm} on {config.data.name}"
    outputs.plot_curves(os.path.join(workdir, "curves.png"), history, title=title)
    outputs.plot_ledger(os.path.join(workdir, "ledger.png"), {title: history})


def _simulate_experiment(experiment, workdir: str, on_record, on_resume, progress: bool):
    """`simulate` over the experiment's rounds, checkpoints in ``workdir/checkpoints``."""
    config = experiment.config
    return simulate(
        experiment.algorithm.round_fn,
        experiment.clients,
        config.rounds,
        state=experiment.initial_state,
        key=experiment.key,
        evaluate=experiment.evaluate,
        eval_every=config.eval_every,
        checkpoint_dir=os.path.join(workdir, "checkpoints"),
        checkpoint_every=config.checkpoint_every,
        on_record=on_record,
        on_resume=on_resume,
        progress=progress,
        allow_nan=config.allow_nan,
        rounds_per_call=config.rounds_per_call,
    )
