"""``num_seeds`` runs of one experiment: trained together, each seed's files, their mean and spread.

`run_seeds` trains the seeds as one vectorized program (`fedjax_sim.runtime.simulate.simulate` with
``runs``) and writes what a researcher reports: every seed's own metrics, curves and parameters
in ``seed_<s>/`` (the files of a run alone), and in the workdir itself the records averaged over
seeds with their standard deviation (``<metric>_std``), drawn as mean curves with a band.
"""

from __future__ import annotations

import os

import numpy as np

from fedjax_sim.runtime import ledger, multihost, outputs
from fedjax_sim.runtime.run_log import WALL, RunLog, closing
from fedjax_sim.runtime.simulate import run_slice, simulate, stack_runs
from fedjax_sim.runtime.wandb_log import wandb_log_of


def seed_dir(workdir: str, seed: int) -> str:
    return os.path.join(workdir, f"seed_{seed}")


def mean_and_std(histories: list[list[dict]]) -> list[dict]:
    """One record per evaluation: every metric's mean over the runs, its population standard
    deviation as ``<metric>_std``, ``seeds`` (how many) and their ``wall_s``. The runs are in
    lockstep, so their i-th records share ``round``."""
    summary = []
    for records in zip(*histories, strict=True):
        record = {"round": records[0]["round"], "seeds": len(records)}
        for name in records[0]:
            if name == "round":
                continue
            if name == WALL:  # the seeds ran together: one clock
                record[WALL] = max(r[WALL] for r in records)
                continue
            values = np.array([r[name] for r in records], np.float64)
            record[name] = float(values.mean())
            record[f"{name}_std"] = float(values.std())
        summary.append(record)
    return summary


def write_seed_metrics(workdir: str, seeds: list[int], histories: list[list[dict]]) -> None:
    """Each seed's ``metrics.jsonl``/``.csv`` in ``seed_<s>/`` and their mean +- std in
    ``workdir`` (atomic writes)."""
    for seed, history in zip(seeds, histories, strict=True):
        os.makedirs(seed_dir(workdir, seed), exist_ok=True)
        outputs.write_metrics(seed_dir(workdir, seed), history)
    outputs.write_metrics(workdir, mean_and_std(histories))


def write_seed_results(
    workdir: str, seeds: list[int], histories: list[list[dict]], params: list, title: str
) -> None:
    """The final files: metrics (as `write_seed_metrics`), each seed's ``params.msgpack``,
    ``curves.png`` and ``ledger.png``, and the workdir's ``curves.png`` (means with a +-1 std
    band) and ``ledger.png`` (every seed)."""
    write_seed_metrics(workdir, seeds, histories)
    for seed, history, seed_params in zip(seeds, histories, params, strict=True):
        folder = seed_dir(workdir, seed)
        outputs.write_params(os.path.join(folder, "params.msgpack"), seed_params)
        outputs.plot_curves(os.path.join(folder, "curves.png"), history, f"{title}, seed {seed}")
        outputs.plot_ledger(os.path.join(folder, "ledger.png"), {title: history})
    outputs.plot_curves(
        os.path.join(workdir, "curves.png"),
        mean_and_std(histories),
        f"{title}, mean and std of {len(seeds)} seeds",
    )
    outputs.plot_ledger(
        os.path.join(workdir, "ledger.png"),
        {f"seed {s}": h for s, h in zip(seeds, histories, strict=True)},
    )


def run_seeds(config, workdir, experiment, costs, syncs_per_round, progress, record):
    """`fedjax_sim.experiment.run.run_experiment` for ``num_seeds > 1``: the seeds' runs as one
    vectorized `simulate` of ``experiment`` (its `Experiment.seeded` parts), with the ledger's
    ``costs``; writes every output file, and each seed's TensorBoard events (and W&B run, as
    ``config.wandb`` says) in its folder; ``record`` is the run's ``config.json``. Returns
    ``(stacked state, [history of each seed])``."""
    seeds = [config.seed + i for i in range(config.num_seeds)]
    states, keys, evaluates = zip(*(experiment.seeded(seed) for seed in seeds), strict=True)
    writer = multihost.is_writer()
    logs = [RunLog(seed_dir(workdir, s), tensorboard=writer) for s in seeds]
    wandbs = [wandb_log_of(config.wandb.to_dict(), seed_dir(workdir, s), record, seed=s)
              if writer else None for s in seeds]  # fmt: skip

    def on_record(histories):
        for history, log in zip(histories, logs, strict=True):
            ledger.annotate(history, costs, syncs_per_round)
            log.update(history)
        for history, wandb in zip(histories, wandbs, strict=True):
            if wandb:
                wandb.update(history)
        if writer:
            write_seed_metrics(workdir, seeds, histories)

    with closing([*logs, *wandbs]):
        state, histories = _simulate_seeds(config, workdir, experiment, states, keys, evaluates,
                                           on_record, progress)  # fmt: skip
    for history in histories:
        ledger.annotate(history, costs, syncs_per_round)
    if writer:
        params = multihost.local_copy(state.params)
        write_seed_results(
            workdir, seeds, histories, [run_slice(params, r) for r in range(len(seeds))],
            title=f"{config.algorithm} on {config.data.name}",
        )  # fmt: skip
    return state, histories


def _simulate_seeds(config, workdir, experiment, states, keys, evaluates, on_record, progress):
    return simulate(
        experiment.algorithm.round_fn,
        experiment.clients,
        config.rounds,
        state=stack_runs(states),
        key=stack_runs(keys),
        evaluate=evaluates,
        eval_every=config.eval_every,
        checkpoint_dir=os.path.join(workdir, "checkpoints"),
        checkpoint_every=config.checkpoint_every,
        on_record=on_record,
        progress=progress,
        allow_nan=config.allow_nan,
        rounds_per_call=config.rounds_per_call,
        runs=len(states),
    )
