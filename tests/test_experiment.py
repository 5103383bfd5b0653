"""End to end: every config's smoke variant, resume after a crash, determinism, config errors."""

import importlib.util
import json
import os
import subprocess
import sys

import flax.serialization
import jax
import numpy as np
import pytest

from fedjax_sim import experiment as experiment_lib
from fedjax_sim.config_checks import ConfigError
from fedjax_sim.data.dataset import DataError
from fedjax_sim.simulate import Checkpointer, simulate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [
    "fedavg_shakespeare",
    "centralized_shakespeare",
    "fedavg_cifar100",
    "centralized_cifar100",
]


def load_config(name, arg="smoke"):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def smoke_config(name, cache_dir, **overrides):
    config = load_config(name)
    config.data.cache_dir = cache_dir
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def read_params(workdir):
    with open(os.path.join(workdir, "params.msgpack"), "rb") as f:
        return f.read()


@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_config_runs_end_to_end(name, shakespeare_cache, tmp_path):
    config = smoke_config(name, shakespeare_cache)
    _, history = experiment_lib.run_experiment(config, str(tmp_path), progress=False)
    for filename in (
        "config.json",
        "dataset.json",
        "metrics.jsonl",
        "metrics.csv",
        "curves.png",
        "params.msgpack",
    ):
        assert os.path.getsize(tmp_path / filename) > 0, filename
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(
        range(config.eval_every, config.rounds + 1, config.eval_every)
    )
    for record in records:
        assert {"round", "test_accuracy", "test_loss", "train_loss"} <= set(record)
        assert np.isfinite(record["train_loss"]) and 0 <= record["test_accuracy"] <= 1
    if config.algorithm == "fedavg":
        assert {"client_accuracy_mean", "client_accuracy_std", "client_accuracy_p10"} <= set(
            records[-1]
        )
    assert records == history
    params = flax.serialization.msgpack_restore(read_params(tmp_path))
    assert params  # a non-empty parameter tree came back


def test_resume_after_crash_gives_the_same_result(shakespeare_cache, tmp_path):
    """A run that dies after round 3 (checkpoint at 2) resumes to the uninterrupted result."""
    overrides = {"rounds": 5, "eval_every": 1, "checkpoint_every": 2}
    straight = smoke_config("fedavg_shakespeare", shakespeare_cache, **overrides)
    experiment_lib.run_experiment(straight, str(tmp_path / "straight"), progress=False)

    crashed_dir = str(tmp_path / "crashed")
    config = smoke_config("fedavg_shakespeare", shakespeare_cache, **overrides)
    built = experiment_lib.build_experiment(config)

    def crash_after_round_3(history):
        if history[-1]["round"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(
            built.algorithm.round_fn,
            built.clients,
            config.rounds,
            state=built.initial_state,
            key=built.key,
            evaluate=built.evaluate,
            eval_every=1,
            checkpoint_dir=os.path.join(crashed_dir, "checkpoints"),
            checkpoint_every=2,
            on_record=crash_after_round_3,
            progress=False,
        )
    experiment_lib.run_experiment(config, crashed_dir, progress=False)

    assert read_params(tmp_path / "straight") == read_params(crashed_dir)
    straight_metrics = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert straight_metrics == (tmp_path / "crashed" / "metrics.jsonl").read_text()


def test_checkpoint_keeps_typed_prng_keys(tmp_path):
    # Per-client keys in an algorithm's state must come back as keys, equal to those saved.
    state = {"keys": jax.random.split(jax.random.key(3), 4), "w": np.arange(3.0, dtype=np.float32)}
    checkpointer = Checkpointer(str(tmp_path), every=1)
    checkpointer.save(1, state, [{"round": 1}], [])
    template = {"keys": jax.random.split(jax.random.key(0), 4), "w": np.zeros(3, np.float32)}
    restored, history, pending = checkpointer.restore(template)
    assert jax.dtypes.issubdtype(restored["keys"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.key_data(restored["keys"]), jax.random.key_data(state["keys"])
    )
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert history == [{"round": 1}] and pending == []


def test_same_seed_is_bit_identical_and_another_seed_differs(shakespeare_cache, tmp_path):
    runs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = smoke_config("centralized_shakespeare", shakespeare_cache, seed=seed)
        experiment_lib.run_experiment(config, str(tmp_path / label), progress=False)
        runs[label] = read_params(tmp_path / label)
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_lengthening_a_finished_run_resumes_it(shakespeare_cache, tmp_path):
    config = smoke_config(
        "centralized_shakespeare", shakespeare_cache, rounds=3, eval_every=3, checkpoint_every=3
    )
    experiment_lib.run_experiment(config, str(tmp_path), progress=False)
    config = smoke_config(
        "centralized_shakespeare", shakespeare_cache, rounds=6, eval_every=3, checkpoint_every=3
    )
    _, history = experiment_lib.run_experiment(config, str(tmp_path), progress=False)
    assert [r["round"] for r in history] == [3, 6]
    changed = smoke_config("centralized_shakespeare", shakespeare_cache, rounds=6, seed=5)
    with pytest.raises(ConfigError, match="seed"):
        experiment_lib.run_experiment(changed, str(tmp_path), progress=False)


@pytest.mark.parametrize(
    "name, overrides, field",
    [
        ("fedavg_cifar100", {"data.alpha": 0.0}, "data.alpha"),
        ("fedavg_cifar100", {"data.alpha": -1.0}, "data.alpha"),
        ("fedavg_shakespeare", {"clients_per_round": 0, "participation": 1.5}, "participation"),
        ("fedavg_shakespeare", {"clients_per_round": 0, "participation": 0.0}, "participation"),
        ("fedavg_shakespeare", {"model.name": "resnet"}, "model.name"),
        ("fedavg_cifar100", {"data.partition": "zipf"}, "data.partition"),
        ("fedavg_cifar100", {"client_axis": "pmap"}, "client_axis"),
        ("fedavg_cifar100", {"model.conv": "fft"}, "model.conv"),
        ("fedavg_shakespeare", {"memory_budget_gb": -1.0}, "memory_budget_gb"),
        ("fedavg_shakespeare", {"client_devices": -1}, "client_devices"),
        ("fedavg_cifar100", {"client.optimizer": "adamax"}, "client.optimizer"),
        ("centralized_cifar100", {"data.source": "auto"}, "CIFAR-100 not found"),
    ],
)
def test_bad_config_values_name_the_field(name, overrides, field, shakespeare_cache, tmp_path):
    overrides.setdefault("data.data_dir", str(tmp_path / "nowhere"))
    config = smoke_config(name, shakespeare_cache, **overrides)
    with pytest.raises((ConfigError, DataError, ValueError)) as error:
        experiment_lib.build_experiment(config)
    message = str(error.value)
    assert field in message and "\n" not in message


def test_cli_prints_one_line_errors(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedjax_sim",
            "--config",
            "configs/fedavg_cifar100.py:smoke",
            "--workdir",
            str(tmp_path),
            "--config.data.alpha=-0.5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: data.alpha must be > 0 for the dirichlet partition, got -0.5"
    ]


def test_subsample_test_keeps_every_clients_own_examples():
    from fedjax_sim.data.dataset import FederatedDataset

    x = np.arange(30).astype(np.float32)[:, None]
    test_idx = (np.arange(0, 3), np.arange(3, 20), np.arange(20, 30))
    dataset = FederatedDataset(
        name="toy",
        train={"x": x, "y": np.zeros(30, np.int32)},
        test={"x": x, "y": np.arange(30, dtype=np.int32)},
        train_client_indices=test_idx,
        test_client_indices=test_idx,
        client_ids=("a", "b", "c"),
        num_classes=30,
    )
    small = experiment_lib.subsample_test(dataset, 12, seed=0)
    assert [len(i) for i in small.test_client_indices] == [3, 4, 4]  # cap 12 // 3 clients
    for before, after in zip(test_idx, small.test_client_indices, strict=True):
        assert set(small.test["y"][after]) <= set(before)  # still the client's own examples
    assert len(small.test["y"]) == 11
    assert experiment_lib.subsample_test(dataset, 0, seed=0) is dataset


def test_auto_choices_per_backend_and_model(monkeypatch):
    from fedjax_sim.engine import (
        apply_xla_flags,
        client_mesh_for,
        resolve_client_axis,
        resolve_unroll,
    )

    assert resolve_client_axis("auto", "cnn", backend="cpu") == "map"
    assert resolve_client_axis("auto", "cnn", backend="cpu", conv="xla") == "sequential"
    assert resolve_client_axis("auto", "lstm", backend="cpu") == "map"
    assert resolve_client_axis("auto", "mlp", backend="cpu") == "vmap"
    assert resolve_client_axis("auto", "cnn", backend="gpu") == "vmap"
    assert resolve_client_axis("chunked", "cnn", backend="cpu") == "chunked"
    assert resolve_unroll("cnn", backend="cpu") is True and resolve_unroll("lstm", "cpu") == 1
    with pytest.raises(ValueError, match="client_axis"):
        resolve_client_axis("pmap", "cnn")
    monkeypatch.setenv(
        "XLA_FLAGS",
        "--xla_cpu_experimental_ynn_fusion_type= --xla_force_host_platform_device_count=1",
    )
    assert apply_xla_flags("auto", "cnn") == ""  # already there: the user's setting wins
    assert apply_xla_flags("auto", "lstm") == ""
    assert client_mesh_for(0, clients_per_round=4) is None  # this process has one device
    with pytest.raises(ValueError, match="client_devices must divide clients_per_round=4"):
        client_mesh_for(2, clients_per_round=4)
    monkeypatch.setenv("XLA_FLAGS", "")
    jax.numpy.zeros(1).block_until_ready()  # the backend is running now
    with pytest.raises(RuntimeError, match="xla_flags"):
        apply_xla_flags("auto", "cnn")
