"""A grid of scalar hyper-parameters, times ``num_seeds``, as ONE vectorized program.

  python -m fedjax_sim --config X.py --workdir DIR --config.sweep_vectorized=True \\
      --config.sweep='client.learning_rate=0.3,1;server.learning_rate=0.5,1' [--config.num_seeds=4]

The cells of ``config.sweep`` (`fedjax_sim.experiment.sweep`'s syntax) may vary only the
`VECTORIZABLE` fields: numbers that enter the round's arithmetic, never its shapes. Every cell x
seed is one run along a leading run axis (`fedjax_sim.runtime.simulate.simulate` with ``runs``); a
run's hyper-parameters travel with its key, so the round is traced once with them as arrays (the
algorithm is built inside the trace from the config with those arrays in place), and each run
computes what its cell would alone, up to float rounding.

Outputs are those of `fedjax_sim.experiment.sweep.run_sweep` (``DIR/cells/<cell>/`` with every file
of a run, ``seed_<s>/`` and mean +- std when ``num_seeds > 1``; ``DIR/sweep.json``), so the sweep
report draws them alike. The shared checkpoint lives in ``DIR/vectorized/``: a killed run resumes to
the same results. A cell whose metrics turn NaN/inf is recorded as diverged (from the first
evaluation showing it) while the others run on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np

from fedjax_sim.config import registry
from fedjax_sim.config.checks import ConfigError, config_record
from fedjax_sim.experiment import seeds as seed_runs
from fedjax_sim.runtime import ledger, multihost, outputs

# Numbers that only scale the round's arithmetic (each traced in
# tests/experiment/test_vector_sweep.py): the optimizers' learning rates and the fields
# each algorithm's registry entry declares.
VECTORIZABLE = ("client.learning_rate", "server.learning_rate", *registry.vectorizable_fields())


def with_values(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``values`` (field -> number or traced array) in place."""
    copy = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
    for field, value in values.items():
        *path, last = field.split(".")
        node = copy
        for key in path:
            node = node[key]
        node[last] = value
    return copy


def hyperparameter_round(config, task, num_clients, **prepared) -> Callable:
    """``(state, clients, (key, values)) -> (state, metrics)``: the round of ``config`` with
    the hyper-parameters ``values`` (field -> scalar array) in place of its own; ``prepared``
    as `fedjax_sim.config.build.build_algorithm` takes them."""
    from fedjax_sim.config.build import build_algorithm

    def round_fn(state, clients, key_and_values):
        key, values = key_and_values
        algorithm = build_algorithm(with_values(config, values), task, num_clients, **prepared)
        return algorithm.round_fn(state, clients, key)

    return round_fn


def check_vectorizable(config, cells) -> None:
    """Raises `ConfigError` unless every cell varies only `VECTORIZABLE` fields."""
    fields = sorted({field for _, overrides, _ in cells for field in overrides})
    other = [field for field in fields if field not in VECTORIZABLE]
    if other:
        raise ConfigError(
            f"sweep_vectorized: {', '.join(other)} cannot vary inside one program; the "
            f"vectorizable fields are {list(VECTORIZABLE)} (or drop sweep_vectorized to run "
            "the cells one after another)"
        )
    if config.finetune.steps and "client.learning_rate" in fields:
        raise ConfigError(
            "sweep_vectorized: finetune.steps > 0 fine-tunes at one client.learning_rate; "
            "sweep client.learning_rate without sweep_vectorized"
        )


def _first_divergence(history: list[dict]) -> int | None:
    for record in history:
        if not all(np.isfinite(v) for v in record.values() if isinstance(v, float)):
            return record["round"]
    return None


def run_vectorized_sweep(config, workdir: str, *, progress=True, log=print) -> dict:
    """Runs ``config.sweep``'s cells x ``config.num_seeds`` seeds as one program; returns the
    sweep.json object (as `fedjax_sim.experiment.sweep.run_sweep`).

    Raises:
      ConfigError: the sweep string, a cell's config, a field that cannot be vectorized, or a
        workdir holding another run.
    """
    from fedjax_sim.experiment.assembly import build_experiment, cost_model
    from fedjax_sim.experiment.run import check_workdir
    from fedjax_sim.experiment.sweep import cell_configs, parse_sweep, sweep_summary
    from fedjax_sim.runtime.simulate import simulate, stack_runs

    cells = cell_configs(config)
    check_vectorizable(config, cells)
    base = cells[0][2]
    home = os.path.join(workdir, "vectorized")
    check_workdir(home, config_record(config))
    experiment = build_experiment(base)
    if experiment.prepared:  # built once on the host from one cell's config, not per cell
        raise ConfigError(f"sweep_vectorized is not available for algorithm={base.algorithm}")
    seeds = [config.seed + i for i in range(config.num_seeds)]
    per_seed = [experiment.seeded(seed) for seed in seeds]
    sweep = _Sweep(
        workdir=workdir,
        cells=cells,
        seeds=seeds,
        runs=[(cell, s) for cell in range(len(cells)) for s in range(len(seeds))],
        title=f"{base.algorithm} on {base.data.name}",
        costs=cost_model(experiment),
        writer=multihost.is_writer(),
    )
    values = [{f: jnp.float32(v) for f, v in cells[c][1].items()} for c, _ in sweep.runs]
    keys = stack_runs([(per_seed[s][1], v) for (_, s), v in zip(sweep.runs, values, strict=True)])
    log(f"sweep_vectorized: {len(cells)} cells x {len(seeds)} seeds = {len(sweep.runs)} runs "
        "in one program")  # fmt: skip
    if sweep.writer:
        outputs.write_json_atomic(os.path.join(home, "config.json"), config_record(config))
    state, histories = simulate(
        hyperparameter_round(experiment.config, experiment.task, experiment.clients.num_clients),
        experiment.clients,
        config.rounds,
        state=stack_runs([per_seed[s][0] for _, s in sweep.runs]),
        key=keys,
        evaluate=[per_seed[s][2] for _, s in sweep.runs],
        eval_every=config.eval_every,
        checkpoint_dir=os.path.join(home, "checkpoints"),
        checkpoint_every=config.checkpoint_every,
        on_record=sweep.write,
        progress=progress,
        allow_nan=True,  # one cell's divergence is a result; the others run on
        rounds_per_call=config.rounds_per_call,
        runs=len(sweep.runs),
    )
    sweep.write(histories, multihost.local_copy(state))
    summary = sweep.summary(sweep_summary(config, parse_sweep(config.sweep, config)), histories)
    if sweep.writer:
        outputs.write_json_atomic(os.path.join(workdir, "sweep.json"), summary)
    return summary


def _diverged_text(round_number: int) -> str:
    return f"metrics not finite from the evaluation of round {round_number}"


class _Sweep(NamedTuple):
    """A vectorized sweep's layout: its ``cells`` (``(name, overrides, cell config)``), its
    ``seeds``, and ``runs``, the ``(cell, seed index)`` of each run along the run axis; with
    what its writers need (the ledger's ``costs``, the plots' ``title``, whether this process
    writes)."""

    workdir: str
    cells: list
    seeds: list[int]
    runs: list[tuple[int, int]]
    title: str
    costs: Any
    writer: bool

    def cell_histories(self, histories: list, cell: int) -> list:
        """The histories of cell ``cell``'s runs, one per seed."""
        return [histories[r] for r, (c, _) in enumerate(self.runs) if c == cell]

    def write(self, histories: list, final_state=None) -> None:
        """Every cell's files: its metrics so far, or with ``final_state`` all of a finished
        run's (config, parameters, plots, ``diverged.txt`` when its metrics turned NaN/inf).
        The histories gain the ledger's columns first."""
        for ledger_history in histories:
            ledger.annotate(ledger_history, self.costs, 1.0)
        if not self.writer:
            return
        for c, (name, _, cell_config) in enumerate(self.cells):
            folder = os.path.join(self.workdir, "cells", name)
            os.makedirs(folder, exist_ok=True)
            own = self.cell_histories(histories, c)
            if final_state is not None:
                self._write_results(folder, c, own, cell_config, final_state)
            elif len(self.seeds) > 1:
                seed_runs.write_seed_metrics(folder, self.seeds, own)
            else:
                outputs.write_metrics(folder, own[0])

    def _write_results(self, folder: str, cell: int, own: list, cell_config, final_state) -> None:
        from fedjax_sim.runtime.simulate import run_slice

        outputs.write_json_atomic(os.path.join(folder, "config.json"), config_record(cell_config))
        params = [run_slice(final_state.params, r)
                  for r, (c, _) in enumerate(self.runs) if c == cell]  # fmt: skip
        if len(self.seeds) > 1:
            seed_runs.write_seed_results(folder, self.seeds, own, params, self.title)
        else:
            outputs.write_metrics(folder, own[0])
            outputs.write_params(os.path.join(folder, "params.msgpack"), params[0])
            outputs.plot_curves(os.path.join(folder, "curves.png"), own[0], self.title)
            outputs.plot_ledger(os.path.join(folder, "ledger.png"), {self.title: own[0]})
        diverged = _first_divergence(seed_runs.mean_and_std(own))
        if diverged is not None:
            outputs.write_bytes_atomic(
                os.path.join(folder, "diverged.txt"), _diverged_text(diverged).encode()
            )

    def summary(self, summary: dict, histories: list) -> dict:
        """``summary`` (`fedjax_sim.experiment.sweep.sweep_summary`) with every cell's record:
        its last evaluation (the mean over seeds with several), or when it diverged."""
        for c, (name, overrides, _) in enumerate(self.cells):
            own = self.cell_histories(histories, c)
            mean = seed_runs.mean_and_std(own)
            diverged = _first_divergence(mean)
            record = {"name": name, "overrides": overrides, "finished": diverged is None}
            if diverged is None:
                record["last"] = mean[-1] if len(self.seeds) > 1 else own[0][-1]
            else:
                record["diverged"] = _diverged_text(diverged)
            summary["cells"].append(record)
        return summary
