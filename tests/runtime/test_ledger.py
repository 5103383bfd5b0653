"""The ledger's counts by hand: bytes of a tiny model per topology, sums (not means) over the
rounds of each record, FLOPs from XLA's cost analysis, and a run's ledger end to end."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.core.tasks import Task
from fedjax_sim.models.model import stateless, variables
from fedjax_sim.runtime import ledger

PARAMS = {"w": jnp.zeros((2, 1), jnp.float32), "b": jnp.zeros(1, jnp.float32)}  # 3 x 4 bytes


def test_parameter_bytes_by_count_and_dtype():
    assert ledger.parameter_bytes(PARAMS) == 12
    assert ledger.parameter_bytes({"h": jnp.zeros(5, jnp.bfloat16)}) == 10


def test_sync_bytes_and_seconds_by_hand():
    server = ledger.CostModel(1.0, 12, workers=2, train_examples=10, topology="server",
                              bandwidth_bytes_per_s=4.0, latency_s=0.5)  # fmt: skip
    # each worker receives the model (12 B) and sends its update (12 B): 48 B on the wire
    assert server.sync_bytes() == (12.0, 12.0, 48.0)
    assert server.sync_seconds() == pytest.approx(2 * (0.5 + 12 / 4))
    ring = ledger.CostModel(1.0, 12, workers=4, train_examples=10, topology="allreduce",
                            bandwidth_bytes_per_s=4.0, latency_s=0.5)  # fmt: skip
    # ring all-reduce: each of 4 workers sends (and receives) 2 * 3/4 * 12 = 18 B
    assert ring.sync_bytes() == (18.0, 18.0, 72.0)
    assert ring.sync_seconds() == pytest.approx(2 * 3 * (0.5 + 12 / (4 * 4.0)))
    scaffold = ledger.CostModel(1.0, 12, workers=2, train_examples=10, copies=2)
    assert scaffold.sync_bytes() == (24.0, 24.0, 96.0)
    with pytest.raises(ValueError, match="ledger.topology must be one of"):
        ledger.CostModel(1.0, 12, workers=2, train_examples=10, topology="mesh")


def test_counters_are_summed_over_the_rounds_of_each_record():
    cost = ledger.CostModel(flops_per_example=10.0, parameter_bytes=12, workers=2,
                            train_examples=8, worker_flops_per_s=20.0,
                            bandwidth_bytes_per_s=12.0, latency_s=0.0)  # fmt: skip
    # record 1 covers rounds 1-2 (mean 4 examples), record 2 rounds 3-5 (mean 6)
    history = [{"round": 2, "train_examples": 4.0}, {"round": 5, "train_examples": 6.0}]
    ledger.annotate(history, cost, default_syncs=1.0)
    first, last = history
    assert first["ledger_samples"] == 8 and last["ledger_samples"] == 8 + 18
    assert last["ledger_epochs"] == pytest.approx(26 / 8)
    assert last["ledger_flops"] == 260.0
    assert last["ledger_syncs"] == 5
    assert last["ledger_bytes_sent_per_worker"] == 5 * 12
    assert last["ledger_bytes_total"] == 5 * 48
    # compute: 26 samples over 2 workers x 10 FLOPs at 20 FLOP/s; 5 syncs of 2 x 1 s
    assert last["ledger_time_s"] == pytest.approx(26 / 2 * 10 / 20 + 5 * 2.0)
    again = [dict(r) for r in history]
    assert ledger.annotate(again, cost, 1.0) == history  # idempotent (resumed histories)
    # a round that reports its syncs (centralized: 0) overrides the default
    quiet = ledger.annotate([{"round": 3, "train_examples": 2.0, "syncs": 0.0}], cost, 1.0)
    assert quiet[0]["ledger_syncs"] == 0 and quiet[0]["ledger_bytes_total"] == 0


def test_flops_per_example_of_a_dense_layer():
    # XLA counts a [B, 64] x [64, 32] matmul as 2 * 64 * 32 FLOPs per example; the backward
    # pass adds the weight gradient (the same again); the input needs no gradient.
    def init(rng):
        return {"w": jax.random.normal(rng, (64, 32))}

    task = Task(stateless(init, lambda p, x: x @ p["w"], (64,), "dense"), lambda x, r: x, 32)
    batch = {"x": np.ones((8, 64), np.float32), "y": np.zeros(8, np.int32)}
    flops = ledger.training_flops_per_example(task, variables(init(jax.random.key(0))), batch)
    assert 2 * (2 * 64 * 32) <= flops < 2 * (2 * 64 * 32) * 1.2


def test_a_runs_ledger_counts_its_syncs_and_bytes(tmp_path):
    from fedjax_sim.config import files as config_files
    from fedjax_sim.experiment.run import run_experiment

    config = config_files.load_config("configs/localsgd_digits.py:smoke")
    state, history = run_experiment(config, str(tmp_path), progress=False, log=lambda s: None)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    workers, rounds = config.data.num_clients, config.rounds
    size = ledger.parameter_bytes(state.params)
    share = 2 * (workers - 1) / workers * size  # ring all-reduce per worker and sync
    assert last["ledger_syncs"] == rounds
    assert last["ledger_bytes_sent_per_worker"] == pytest.approx(rounds * share)
    assert last["ledger_bytes_total"] == pytest.approx(rounds * share * workers)
    samples = rounds * workers * config.client.batch_size * config.client.local_steps
    assert last["ledger_samples"] == samples
    assert math.isclose(last["ledger_epochs"], samples / 1438)
    assert (tmp_path / "ledger.png").stat().st_size > 0


def test_compare_runs_puts_several_runs_on_one_plot(tmp_path):
    import importlib.util

    script = "experiments/tools/compare_runs.py"
    spec = importlib.util.spec_from_file_location("compare_runs", script)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    for name, accuracy in (("a", 0.5), ("b", 0.7)):
        run = tmp_path / name
        run.mkdir()
        records = [{"round": r, "test_accuracy": accuracy * r / 2, "ledger_epochs": r,
                    "ledger_bytes_total": 100.0 * r, "ledger_time_s": 0.1 * r}
                   for r in (1, 2)]  # fmt: skip
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records))
    assert compare.read_history(str(tmp_path / "b"))[-1]["test_accuracy"] == 0.7
    compare.main([str(tmp_path / "a"), str(tmp_path / "b" / "metrics.jsonl"),
                  "--out", str(tmp_path / "both.png")])  # fmt: skip
    assert (tmp_path / "both.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path / "a"), "--labels", "x", "y", "--out", "z.png"])
