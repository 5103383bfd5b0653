"""A vectorized grid of hyper-parameters: each cell equals its run alone; what cannot vary."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_experiment import smoke_config

from fedjax_sim.config.build import build_algorithm
from fedjax_sim.config.checks import ConfigError
from fedjax_sim.experiment import assembly
from fedjax_sim.experiment import run as experiment_lib
from fedjax_sim.experiment.vector_sweep import (
    hyperparameter_round,
    run_vectorized_sweep,
    with_values,
)

COMPARED = ("train_loss", "test_accuracy", "test_loss", "client_accuracy_mean")


def test_each_cell_equals_its_run_alone_and_a_diverging_cell_is_recorded(
    shakespeare_cache, tmp_path
):
    config = smoke_config(
        "fedavg_digits", shakespeare_cache, rounds=3, eval_every=1, sweep_vectorized=True,
        sweep="client.learning_rate=0.05,50;server.learning_rate=1,0.5",
    )  # fmt: skip
    summary = run_vectorized_sweep(config, str(tmp_path / "grid"), progress=False, log=print)
    cells = {cell["name"]: cell for cell in summary["cells"]}
    assert len(cells) == 4
    for name in ("client.learning_rate=50.0__server.learning_rate=1.0",
                 "client.learning_rate=50.0__server.learning_rate=0.5"):  # fmt: skip
        assert not cells[name]["finished"] and "not finite" in cells[name]["diverged"]
    for server_lr in (1.0, 0.5):
        name = f"client.learning_rate=0.05__server.learning_rate={server_lr}"
        assert cells[name]["finished"]
        alone = smoke_config(
            "fedavg_digits",
            shakespeare_cache,
            rounds=3,
            eval_every=1,
            **{"client.learning_rate": 0.05, "server.learning_rate": server_lr},
        )
        _, history = experiment_lib.run_experiment(alone, str(tmp_path / name), progress=False)
        with open(tmp_path / "grid" / "cells" / name / "metrics.jsonl") as f:
            vectorized = [json.loads(line) for line in f]
        assert len(vectorized) == len(history) == 3
        for ours, theirs in zip(vectorized, history, strict=True):
            for metric in COMPARED:
                np.testing.assert_allclose(ours[metric], theirs[metric], rtol=1e-5, atol=1e-6)
    first, second = (cells[f"client.learning_rate=0.05__server.learning_rate={lr}"]["last"]
                     for lr in (1.0, 0.5))  # fmt: skip
    assert first["test_loss"] != second["test_loss"]


@pytest.mark.parametrize(
    "algorithm, field, value",
    [("fedprox", "fedprox.mu", 0.5), ("feddyn", "feddyn.alpha", 0.1),
     ("ditto", "personal.ditto_lambda", 0.5), ("apfl", "personal.apfl_alpha", 0.3)],
)  # fmt: skip
def test_each_vectorizable_field_traces_to_the_plain_round(algorithm, field, value,
                                                           shakespeare_cache):  # fmt: skip
    config = smoke_config("fedavg_digits", shakespeare_cache, algorithm=algorithm)
    built = assembly.build_experiment(with_values(config, {field: value}))
    traced = hyperparameter_round(config, built.task, built.clients.num_clients)
    state, metrics = jax.jit(traced)(
        built.initial_state, built.clients, (built.key, {field: jnp.float32(value)})
    )
    plain = build_algorithm(with_values(config, {field: value}), built.task,
                            built.clients.num_clients)  # fmt: skip
    want_state, want_metrics = jax.jit(plain.round_fn)(
        built.initial_state, built.clients, built.key
    )
    for ours, theirs in zip(jax.tree.leaves(state.params), jax.tree.leaves(want_state.params),
                            strict=True):  # fmt: skip
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["train_loss"], want_metrics["train_loss"], rtol=1e-6)


def test_only_scalar_hyperparameters_vectorize(shakespeare_cache, tmp_path):
    config = smoke_config("fedavg_digits", shakespeare_cache, sweep_vectorized=True,
                          sweep="client.local_steps=1,2")  # fmt: skip
    with pytest.raises(
        ConfigError,
        match=r"sweep_vectorized: client.local_steps cannot vary "
        r"inside one program; the vectorizable fields are \['client.learning_rate'",
    ):
        run_vectorized_sweep(config, str(tmp_path), progress=False)
