"""Seeds as one vectorized program: each run equals itself alone, resume, outputs, mean +- std."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_experiment import smoke_config

from fedjax_sim.config.checks import ConfigError, check_config
from fedjax_sim.experiment import run as experiment_lib
from fedjax_sim.experiment import seeds as seed_runs
from fedjax_sim.runtime.simulate import run_slice, simulate, stack_runs
from tests.records import metrics_without_wall_clock
from tests.runtime.test_simulate import ROUND, initial_state
from tests.wandb_records import wandb_runs


def evaluate_times(factor):
    return lambda state: {"scaled": float(factor * jnp.sum(state.params["w"]))}


def test_runs_equal_each_run_alone_with_their_own_evaluation():
    keys = [jax.random.key(3), jax.random.key(8)]
    starts = [initial_state(), initial_state().replace(params={"w": -jnp.ones(3)})]
    evaluates = [evaluate_times(1.0), evaluate_times(10.0)]
    stacked, histories = simulate(
        ROUND, None, 4, state=stack_runs(starts), key=stack_runs(keys), evaluate=evaluates,
        eval_every=2, progress=False, runs=2,
    )  # fmt: skip
    assert stacked.params["w"].shape == (2, 3)
    for r in range(2):
        alone, history = simulate(
            ROUND, None, 4, state=starts[r], key=keys[r], evaluate=evaluates[r], eval_every=2,
            progress=False,
        )  # fmt: skip
        np.testing.assert_array_equal(run_slice(stacked, r).params["w"], alone.params["w"])
        assert histories[r] == history
    assert histories[0] != histories[1]
    assert [h["round"] for h in histories[1]] == [2, 4]


@pytest.mark.parametrize("rounds_per_call", [1, 3])
def test_runs_resume_after_a_crash_to_the_same_result(tmp_path, rounds_per_call):
    keys = stack_runs([jax.random.key(0), jax.random.key(1)])
    start = stack_runs([initial_state(), initial_state()])
    common = dict(key=keys, eval_every=1, checkpoint_every=2, progress=False, runs=2,
                  rounds_per_call=rounds_per_call)  # fmt: skip
    straight, straight_histories = simulate(
        ROUND, None, 6, state=start, checkpoint_dir=str(tmp_path / "a"), **common
    )

    def crash_after_round_3(histories):
        if histories[0][-1]["round"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(ROUND, None, 6, state=start, checkpoint_dir=str(tmp_path / "b"),
                 on_record=crash_after_round_3, **common)  # fmt: skip
    resumed, histories = simulate(
        ROUND, None, 6, state=start, checkpoint_dir=str(tmp_path / "b"), **common
    )
    np.testing.assert_array_equal(resumed.params["w"], straight.params["w"])
    assert histories == straight_histories
    assert [len(h) for h in histories] == [6, 6]


def test_divergence_names_the_run():
    def round_fn(state, clients, key):  # run 1 (its w starts at inf) diverges in round 1
        w = state.params["w"] * 0.5
        return state.replace(params={"w": w}, round=state.round + 1), {"norm": jnp.sum(w)}

    start = stack_runs(
        [initial_state(), initial_state().replace(params={"w": jnp.full(3, jnp.inf)})]
    )
    with pytest.raises(ValueError, match=r"round 1 \(run 1: norm=inf, non-finite parameters\)"):
        simulate(round_fn, None, 2, state=start, key=stack_runs([jax.random.key(0)] * 2),
                 progress=False, runs=2)  # fmt: skip


def test_mean_and_std_by_hand():
    histories = [
        [{"round": 5, "acc": 0.2, "loss": 1.0}, {"round": 10, "acc": 0.4, "loss": 0.5}],
        [{"round": 5, "acc": 0.4, "loss": 3.0}, {"round": 10, "acc": 0.6, "loss": 0.5}],
    ]
    summary = seed_runs.mean_and_std(histories)
    assert [r["round"] for r in summary] == [5, 10]
    assert summary[0]["seeds"] == 2
    np.testing.assert_allclose(
        [summary[0][k] for k in ("acc", "acc_std", "loss", "loss_std")], [0.3, 0.1, 2.0, 1.0]
    )
    np.testing.assert_allclose([summary[1]["acc"], summary[1]["loss_std"]], [0.5, 0.0])


def read_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_num_seeds_runs_equal_each_seed_alone_and_resume(shakespeare_cache, tmp_path, monkeypatch):
    overrides = dict(rounds=4, eval_every=1, checkpoint_every=2, seed=3)
    config = smoke_config("fedavg_digits", shakespeare_cache, num_seeds=2, **overrides)
    _, histories = experiment_lib.run_experiment(config, str(tmp_path / "both"), progress=False)
    names = {"metrics.jsonl", "metrics.csv", "curves.png", "ledger.png", "params.msgpack"}
    for seed in (3, 4):
        folder = tmp_path / "both" / f"seed_{seed}"
        assert names <= set(os.listdir(folder))
        alone = smoke_config("fedavg_digits", shakespeare_cache, **{**overrides, "seed": seed})
        _, history = experiment_lib.run_experiment(alone, str(tmp_path / f"alone{seed}"),
                                                   progress=False)  # fmt: skip
        vectorized = read_records(folder / "metrics.jsonl")
        assert [r["round"] for r in vectorized] == [1, 2, 3, 4]
        for ours, theirs in zip(vectorized, history, strict=True):
            for name in ("train_loss", "test_accuracy", "test_loss", "client_accuracy_mean"):
                np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6)
    summary = read_records(tmp_path / "both" / "metrics.jsonl")
    accuracies = [[h[-1]["test_accuracy"] for h in histories]]
    np.testing.assert_allclose(summary[-1]["test_accuracy"], np.mean(accuracies))
    np.testing.assert_allclose(summary[-1]["test_accuracy_std"], np.std(accuracies))
    assert summary[-1]["seeds"] == 2 and histories[0] != histories[1]

    # A run killed after round 3 (checkpoint at 2) resumes to the same files.
    write = seed_runs.write_seed_metrics

    def crash_after_round_3(workdir, seeds, histories):
        write(workdir, seeds, histories)
        if histories[0][-1]["round"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(seed_runs, "write_seed_metrics", crash_after_round_3)
    config.wandb.project, config.wandb.mode = "seeds", "offline"  # may change on resume
    with pytest.raises(KeyboardInterrupt):
        experiment_lib.run_experiment(config, str(tmp_path / "crashed"), progress=False)
    monkeypatch.setattr(seed_runs, "write_seed_metrics", write)
    experiment_lib.run_experiment(config, str(tmp_path / "crashed"), progress=False)
    assert (tmp_path / "crashed" / "seed_4" / "params.msgpack").read_bytes() == (
        tmp_path / "both" / "seed_4" / "params.msgpack"
    ).read_bytes()
    for name in ("metrics.jsonl", "seed_3/metrics.jsonl", "seed_4/metrics.jsonl"):
        crashed = metrics_without_wall_clock(tmp_path / "crashed" / name)
        assert crashed == metrics_without_wall_clock(tmp_path / "both" / name)
    # each seed is one W&B run (its id kept across the resume), every round logged once
    for seed in (3, 4):
        folder = tmp_path / "crashed" / f"seed_{seed}"
        runs = wandb_runs(str(folder))
        assert len(runs) == 2 and runs[0]["id"] == runs[1]["id"]
        logged = [(step, items["test_accuracy"]) for run in runs for step, items in run["history"]]
        recorded = read_records(folder / "metrics.jsonl")
        assert logged == [(r["round"], r["test_accuracy"]) for r in recorded]
        assert all("wall_s" in r for r in recorded)
        assert (folder / "tensorboard").is_dir()


def test_num_seeds_is_checked(shakespeare_cache):
    with pytest.raises(ConfigError, match="num_seeds must be"):
        check_config(smoke_config("fedavg_digits", shakespeare_cache, num_seeds=0))
    with pytest.raises(ConfigError, match="num_seeds > 1 is not available for algorithm=fedseq"):
        check_config(smoke_config("fedseq_digits", shakespeare_cache, num_seeds=2))
