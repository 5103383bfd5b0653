"""The outputs of ``num_seeds`` runs of one experiment: each seed's files, their mean and spread.

`run_experiment` trains the seeds together (`fedjax_sim.simulate.simulate` with ``runs``); this
module writes what a researcher reports: every seed's own metrics, curves and parameters in
``seed_<s>/`` (the files of a run alone), and in the workdir itself the records averaged over
seeds with their standard deviation (``<metric>_std``), drawn as mean curves with a band.
"""

from __future__ import annotations

import os

import numpy as np

from fedjax_sim import outputs


def seed_dir(workdir: str, seed: int) -> str:
    return os.path.join(workdir, f"seed_{seed}")


def mean_and_std(histories: list[list[dict]]) -> list[dict]:
    """One record per evaluation: every metric's mean over the runs, its population standard
    deviation as ``<metric>_std``, and ``seeds`` (how many). The runs are in lockstep, so their
    i-th records share ``round``."""
    summary = []
    for records in zip(*histories, strict=True):
        record = {"round": records[0]["round"], "seeds": len(records)}
        for name in records[0]:
            if name == "round":
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
