"""End to end: every config's smoke variant, resume after a crash, determinism, config errors."""

import json
import os
import re

import flax.serialization
import jax
import ml_collections
import numpy as np
import pytest
from records import metrics_without_wall_clock

from fedjax_sim.config import build as algorithm_configs
from fedjax_sim.config import checks as config_checks
from fedjax_sim.config import fields as config_fields
from fedjax_sim.config.checks import ConfigError, check_config
from fedjax_sim.config.files import load_config, with_overrides
from fedjax_sim.config.registry import centralized as centralized_entry
from fedjax_sim.core.tasks import make_task
from fedjax_sim.data.dataset import DataError
from fedjax_sim.experiment import assembly
from fedjax_sim.experiment import run as experiment_lib
from fedjax_sim.runtime.simulate import simulate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    name[:-3] for name in os.listdir(os.path.join(ROOT, "configs")) if name.endswith(".py")
)


def smoke_config(name, cache_dir, **overrides):
    config = load_config(os.path.join(ROOT, "configs", f"{name}.py:smoke"))
    config.data.cache_dir = cache_dir
    return with_overrides(config, overrides)


def read_params(workdir):
    with open(os.path.join(workdir, "params.msgpack"), "rb") as f:
        return f.read()


# FedBN's ResNet-20 smoke run compiles for 90 s; FedBN is tested in test_stateful_rounds
SMOKED = [pytest.param(n, marks=pytest.mark.slow) if n == "fedbn_cifar100" else n for n in CONFIGS]


@pytest.mark.parametrize("name", SMOKED)
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
        fairness = {f"client_accuracy_{s}" for s in ("mean", "std", "p10", "min")}
        assert fairness <= set(records[-1])
    if config.algorithm == "fedseq":  # every client in exactly one recorded superclient
        groups = json.loads((tmp_path / "dataset.json").read_text())["superclients"]
        assert sorted(sum(groups, [])) == list(range(config.data.num_clients))
        assert max(len(g) for g in groups) <= config.fedseq.max_clients
    if config.algorithm in ("fedbn", "fedper", "lg_fedavg", "fedrep", "ditto", "apfl"):
        assert {"personal_test_accuracy", "personal_accuracy_min"} <= set(records[-1])
    assert records == history
    params = flax.serialization.msgpack_restore(read_params(tmp_path))
    assert params  # a non-empty parameter tree came back


def test_dataset_json_lists_the_parameters_that_stay_local(shakespeare_cache, tmp_path):
    config = smoke_config("personalized_digits", shakespeare_cache, algorithm="fedper",
                          rounds=2, **{"finetune.steps": 0})  # fmt: skip
    lines = []
    experiment_lib.run_experiment(config, str(tmp_path), progress=False, log=lines.append)
    local = json.loads((tmp_path / "dataset.json").read_text())["local_parameters"]
    params = flax.serialization.msgpack_restore(read_params(tmp_path))
    head = list(params)[-1]  # FedPer's head: the output layer
    assert sorted(local) == sorted(f"{head}/{leaf}" for leaf in params[head])
    assert f"{len(local)} parameter leaves stay local (dataset.json)" in lines[0]


# one per family: federated, LocalSGD, post-local SGD (crosses its switch at round 2: the
# crash is after round 3), DiLoCo (per-worker Adam state), large batch (accumulation, LARS),
# asynchronous SGD (pulled models, clocks), adaptive H with the noise-scale batch (their
# server state, in one run), A2CiD2 (x~, per-worker step counts), Ditto (every client's
# personal model: its personal_* metrics each round, and the fine-tuned ones)
# The main job, Ditto's and FedSeq's per-client state in the default run; every distributed
# config's resume among the slow tests
RESUMED = ["fedavg_shakespeare", "personalized_digits", "fedseq_digits"] + [
    pytest.param(name, marks=pytest.mark.slow)
    for name in ("localsgd_digits", "postlocal_digits", "diloco_digits", "largebatch_digits",
                 "async_digits", "adaptive_steps_digits", "a2cid2_digits")
]  # fmt: skip
ALSO = {"adaptive_steps_digits": {"localsgd.batch_schedule": "noise_scale",
                                  "localsgd.initial_batch_size": 4},
        # FedSeq: the paper's confidence estimate and a new member order every round
        "fedseq_digits": {"fedseq.estimate": "confidence", "fedseq.order": "shuffle"}}  # fmt: skip


@pytest.mark.parametrize("name", RESUMED)
def test_resume_after_crash_gives_the_same_result(name, shakespeare_cache, tmp_path):
    """A run that dies after round 3 (checkpoint at 2) resumes to the uninterrupted result."""
    overrides = {"rounds": 5, "eval_every": 1, "checkpoint_every": 2, **ALSO.get(name, {})}
    straight = smoke_config(name, shakespeare_cache, **overrides)
    experiment_lib.run_experiment(straight, str(tmp_path / "straight"), progress=False)

    crashed_dir = str(tmp_path / "crashed")
    config = smoke_config(name, shakespeare_cache, **overrides)
    built = assembly.build_experiment(config)

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
    straight_metrics = metrics_without_wall_clock(tmp_path / "straight" / "metrics.jsonl")
    assert straight_metrics == metrics_without_wall_clock(tmp_path / "crashed" / "metrics.jsonl")


def test_same_seed_is_bit_identical_and_another_seed_differs(shakespeare_cache, tmp_path):
    runs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = smoke_config("centralized_shakespeare", shakespeare_cache, seed=seed)
        experiment_lib.run_experiment(config, str(tmp_path / label), progress=False)
        runs[label] = read_params(tmp_path / label)
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def _same_dataset(a, b) -> bool:
    arrays = lambda d: [*d.train.values(), *d.test.values(), *d.train_client_indices]  # noqa: E731
    return a.client_ids == b.client_ids and all(
        x.shape == y.shape and np.array_equal(x, y)
        for x, y in zip(arrays(a), arrays(b), strict=True)
    )


@pytest.mark.parametrize(
    "name", ["fedavg_shakespeare", "fedavg_cifar100", "centralized_shakespeare"]
)
def test_seed_changes_training_and_data_seed_changes_data(name, shakespeare_cache):
    # The client subset, split, partition, synthetic images and evaluation subsample all follow
    # data.seed; the top-level seed (a seed sweep) must leave them alone.
    built = {
        label: assembly.build_experiment(smoke_config(name, shakespeare_cache, **overrides))
        for label, overrides in (("base", {}), ("seed", {"seed": 1}), ("data", {"data.seed": 1}))
    }
    assert _same_dataset(built["base"].dataset, built["seed"].dataset)
    assert not _same_dataset(built["base"].dataset, built["data"].dataset)
    initial = {
        label: np.concatenate([np.ravel(p) for p in jax.tree.leaves(b.initial_state.params)])
        for label, b in built.items()
    }
    assert not np.array_equal(initial["base"], initial["seed"])
    assert np.array_equal(initial["base"], initial["data"])


def test_lengthening_keeps_the_runs_schedule(shakespeare_cache, tmp_path):
    # A finished cosine run (learning rate 0 at its end) must not resume into a new cosine.
    short = {"rounds": 3, "eval_every": 3, "checkpoint_every": 3}
    config = smoke_config("centralized_shakespeare", shakespeare_cache, **short)
    experiment_lib.run_experiment(config, str(tmp_path), progress=False)
    finished = read_params(tmp_path)
    longer = smoke_config("centralized_shakespeare", shakespeare_cache, **{**short, "rounds": 6})
    with pytest.raises(ConfigError, match=r"rounds=6: .* over 3 steps .*schedule_steps=3 "):
        experiment_lib.run_experiment(longer, str(tmp_path), progress=False)
    kept = smoke_config(
        "centralized_shakespeare",
        shakespeare_cache,
        **{**short, "rounds": 6, "optimizer.schedule_steps": 3},
    )
    _, history = experiment_lib.run_experiment(kept, str(tmp_path), progress=False)
    assert [r["round"] for r in history] == [3, 6]
    # Past its horizon the cosine schedule's learning rate is 0: SGD (momentum and weight
    # decay included) leaves the parameters where the finished run left them.
    assert read_params(tmp_path) == finished
    changed = smoke_config("centralized_shakespeare", shakespeare_cache, rounds=6, seed=5)
    with pytest.raises(ConfigError, match="seed"):
        experiment_lib.run_experiment(changed, str(tmp_path), progress=False)


def test_resume_refuses_a_new_horizon_for_every_decaying_schedule(shakespeare_cache):
    from fedjax_sim.config.resume import check_resumable

    def resolved(name, **overrides):
        config = smoke_config(name, shakespeare_cache, **overrides)
        return json.loads(config.to_json_best_effort())

    for schedule in ("cosine", "warmup_cosine", "poly", "warmup_poly"):
        old = resolved("centralized_shakespeare", **{"optimizer.schedule": schedule})
        longer = resolved("centralized_shakespeare", rounds=12, **{"optimizer.schedule": schedule})
        with pytest.raises(ConfigError, match="schedule_steps=6"):
            check_resumable(old, longer, "w")
    old = resolved("localsgd_digits", **{"server.schedule": "cosine"})
    longer = resolved("localsgd_digits", rounds=8, **{"server.schedule": "cosine"})
    with pytest.raises(ConfigError, match=r"rounds=8: .* server cosine learning rate over 4"):
        check_resumable(old, longer, "w")
    constant = resolved("localsgd_digits")
    check_resumable(constant, resolved("localsgd_digits", rounds=8), "w")  # may lengthen


def test_resume_may_change_how_convolutions_are_computed(shakespeare_cache):
    from fedjax_sim.config.resume import check_resumable

    def resolved(**overrides):
        return json.loads(
            smoke_config("fedavg_digits", shakespeare_cache, **overrides).to_json_best_effort()
        )

    auto = resolved()
    check_resumable(auto, resolved(**{"model.conv": "loop_friendly"}), "w")  # as auto ran before
    with pytest.raises(ConfigError, match="differs in model.name"):
        check_resumable(auto, resolved(**{"model.name": "resnet20"}), "w")


def test_resume_compares_changed_defaults_by_what_they_do(shakespeare_cache):
    from fedjax_sim.config.resume import check_resumable

    def resolved(name, **overrides):
        config = smoke_config(name, shakespeare_cache, **overrides)
        return json.loads(config.to_json_best_effort())

    def written_before(config, **old):  # a config.json of the previous defaults
        config = json.loads(json.dumps(config))
        for field, value in old.items():
            block, name = field.split(".")
            if value is None:
                del config[block][name]
            else:
                config[block][name] = value
        return config

    # exclude_bias_and_norm: old False = new None where None means False (not lars/lamb)
    sgd = resolved("centralized_shakespeare")
    check_resumable(written_before(sgd, **{"optimizer.exclude_bias_and_norm": False}), sgd, "w")
    lars = resolved("centralized_shakespeare", **{"optimizer.name": "lars"})
    old_lars = written_before(lars, **{"optimizer.exclude_bias_and_norm": False})
    with pytest.raises(ConfigError, match=r"pass --config.optimizer.exclude_bias_and_norm=False "):
        check_resumable(old_lars, lars, "w")
    kept = resolved(
        "centralized_shakespeare",
        **{"optimizer.name": "lars", "optimizer.exclude_bias_and_norm": False},
    )
    check_resumable(old_lars, kept, "w")
    # fields an old config.json lacks, and sync_momentum's None: the same run where nothing
    # changes; post-local SGD's new semantics refused with the flags that keep the old ones
    before = {
        "asynchronous.rule": None,
        "asynchronous.mixing": None,
        "localsgd.before_switch": None,
        "localsgd.sync_momentum": "reset",
    }
    for name in ("localsgd_digits", "async_digits", "fedavg_shakespeare"):
        new = resolved(name, **{"localsgd.sync_momentum": None})
        check_resumable(written_before(new, **before), new, "w")
    post_local = resolved("postlocal_digits")
    with pytest.raises(
        ConfigError,
        match=r"pass --config.localsgd.sync_momentum=reset "
        r"--config.localsgd.before_switch=models to resume it as it ran",
    ):
        check_resumable(written_before(post_local, **before), post_local, "w")
    same = resolved(
        "postlocal_digits",
        **{"localsgd.sync_momentum": "reset", "localsgd.before_switch": "models"},
    )
    check_resumable(written_before(post_local, **before), same, "w")


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
        (
            "fedavg_cifar100",
            {"server.optimizer": "adam", "server.momentum": 0.9},
            "server.momentum",
        ),
        ("fedavg_cifar100", {"server.eps": 1e-3}, "server.eps"),  # sgd has no eps
        ("fedavg_cifar100", {"server.b1": 0.9}, "server.b1"),  # nor moment decays
        ("fedavg_cifar100", {"server.optimizer": "adagrad", "server.b2": 0.9}, "server.b2"),
        ("fedavg_cifar100", {"weighting": "mean"}, "weighting"),
        ("fedavg_shakespeare", {"clients_per_round": 13}, "data.num_clients=12"),
        ("fedavg_shakespeare", {"model.hidden": 0}, "model.hidden"),
        ("fedavg_shakespeare", {"data.leaf_train_dir": "somewhere"}, "data.leaf_test_dir"),
        ("fedavg_shakespeare", {"data.num_clients": 5000}, "data.num_clients=5000"),
        ("fedavg_shakespeare", {"client_axis": "chunked"}, "chunk_size"),
        ("centralized_cifar100", {"optimizer.schedule": "step"}, "optimizer.schedule"),
        (
            "centralized_cifar100",
            {"optimizer.schedule": "warmup_cosine", "optimizer.warmup_steps": 4},
            "optimizer.warmup_steps",
        ),
        ("centralized_cifar100", {"data.source": "auto"}, "CIFAR-100 not found"),
        (
            "async_digits",
            {"speed.model": "given", "speed.durations": "1,2,3"},
            "speed.durations gives 3 durations for 2 workers",
        ),
    ],
)
def test_bad_config_values_name_the_field(name, overrides, field, shakespeare_cache, tmp_path):
    overrides.setdefault("data.data_dir", str(tmp_path / "nowhere"))
    config = smoke_config(name, shakespeare_cache, **overrides)
    with pytest.raises((ConfigError, DataError)) as error:
        assembly.build_experiment(config)
    message = str(error.value)
    assert field in message and "\n" not in message


def _numeric_fields(config, prefix=""):
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _numeric_fields(value, f"{prefix}{key}.")
        elif value is None and config.get_type(key) in (int, float):  # a typed placeholder
            yield f"{prefix}{key}", config.get_type(key)(0)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("name", CONFIGS)
def test_every_numeric_field_is_checked(name, shakespeare_cache):
    # No field of any config may reach the code unchecked: each set to -1 (every numeric field
    # of ours is >= 0) must be refused by check_config with the field's name.
    fields = list(_numeric_fields(smoke_config(name, shakespeare_cache)))
    assert len(fields) >= 20
    for field, value in fields:
        config = smoke_config(name, shakespeare_cache, **{field: type(value)(-1)})
        with pytest.raises(ConfigError, match=re.escape(field)):
            check_config(config)


@pytest.mark.parametrize(
    "name, field, value, allowed",
    [
        ("async_digits", "speed.model", "gamma", "fixed"),
        ("async_digits", "asynchronous.staleness_scaling", "hinge", "polynomial"),
        ("async_digits", "localsgd.sync_momentum", "average", "keep"),  # not for asyncsgd
        ("async_digits", "asynchronous.rule", "mix", "fedasync"),
        ("async_digits", "asynchronous.mixing", 1.5, "(0, 1]"),
        ("async_digits", "speed.model", "given", "needs speed.durations"),
        ("localsgd_digits", "speed.durations", "1,2,x", "speed.model='given'"),
        ("postlocal_digits", "localsgd.before_switch", "parameters", "models"),
        ("localsgd_digits", "client.b1", 0.9, "has none"),  # sgd has no moment decays
        ("diloco_digits", "client.b2", 1.0, "[0, 1)"),
        ("a2cid2_digits", "gossip.graph", "torus", "random_pairs"),
        ("a2cid2_digits", "speed.model", "lognormal", "straggler"),
        ("adaptive_steps_digits", "localsgd.schedule", "cyclic", "adaptive"),
        ("adaptive_batch_digits", "localsgd.batch_schedule", "linear", "noise_scale"),
        ("adaptive_batch_digits", "localsgd.initial_batch_size", 64, "client.batch_size"),
        ("fedavg_shakespeare", "robust.aggregator", "geomedian", "krum"),
        ("scaffold_shakespeare", "robust.aggregator", "median", "fedprox"),
        ("fedavg_shakespeare", "robust.trim_fraction", 0.5, "[0, 0.5)"),
        ("fedavg_shakespeare", "robust.attack", "backdoor", "label_flip"),
        ("fedavg_shakespeare", "robust.bad_fraction", 1.5, "[0, 1]"),
        ("localsgd_digits", "robust.attack", "sign_flip", "fedavg"),  # no federated update
        ("personalized_digits", "algorithm", "fedbabu_", "fedbabu"),
        ("personalized_digits", "personal.apfl_alpha", 1.5, "[0, 1]"),
        ("fedavg_shakespeare", "data.test_per_client", 10, "shakespeare"),
        ("fedseq_digits", "fedseq.grouper", "alphabetical", "kmeans"),
        ("fedseq_digits", "fedseq.order", "reverse", "shuffle"),
        ("fedseq_digits", "model_state", "local", "recompute"),
        ("fedseq_digits", "selection.name", "skewed", "uniform"),
    ],
)
def test_distributed_choices_are_checked(name, field, value, allowed, shakespeare_cache):
    config = smoke_config(name, shakespeare_cache, **{field: value})
    with pytest.raises(ConfigError, match=re.escape(field) + ".*" + re.escape(allowed)):
        check_config(config)


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
    small = assembly.subsample_test(dataset, 12, seed=0)
    assert [len(i) for i in small.test_client_indices] == [3, 4, 4]  # cap 12 // 3 clients
    for before, after in zip(test_idx, small.test_client_indices, strict=True):
        assert set(small.test["y"][after]) <= set(before)  # still the client's own examples
    assert len(small.test["y"]) == 11
    assert assembly.subsample_test(dataset, 0, seed=0) is dataset


def test_auto_choices_per_backend_and_model():
    from fedjax_sim.config.build import execution_for
    from fedjax_sim.core.engine import (
        client_mesh_for,
        resolve_client_axis,
        resolve_unroll,
        steps_in_program,
    )
    from fedjax_sim.models import registry as models

    cnn, lstm = models.get("cnn")(conv="loop_friendly"), models.get("lstm")(hidden=4)
    assert resolve_client_axis("auto", cnn, backend="cpu") == "map"
    assert resolve_client_axis("auto", models.get("cnn")(conv="xla"), "cpu") == "sequential"
    assert resolve_client_axis("auto", lstm, backend="cpu") == "map"
    assert resolve_client_axis("auto", models.get("mlp")(), backend="cpu") == "vmap"
    assert resolve_client_axis("auto", models.get("resnet20")(), "cpu") == "map"  # loop-friendly
    assert resolve_unroll(models.get("resnet20")(), "cpu") == 1
    assert resolve_client_axis("auto", cnn, backend="gpu") == "vmap"
    assert resolve_client_axis("chunked", cnn, backend="cpu") == "chunked"
    assert resolve_unroll(cnn, backend="cpu") is True and resolve_unroll(lstm, "cpu") == 1
    assert resolve_unroll(cnn, backend="gpu") == 1
    # long loops stay rolled: 64 fully unrolled CNN steps would compile for minutes
    assert resolve_unroll(cnn, "cpu", num_steps=16) is True
    assert resolve_unroll(cnn, "cpu", num_steps=17) == 1
    with pytest.raises(ValueError, match="client_axis"):
        resolve_client_axis("pmap", cnn)
    # "sequential" writes C x J steps into the program: past 16 copies the clients loop
    xla_cnn = models.get("cnn")(conv="xla")
    assert resolve_client_axis("auto", xla_cnn, "cpu", clients=4, steps_in_program=2) == (
        "sequential"
    )
    assert resolve_client_axis("auto", xla_cnn, "cpu", clients=10, steps_in_program=8) == "map"
    assert resolve_client_axis("auto", xla_cnn, "cpu", clients=17) == "map"
    assert resolve_client_axis("sequential", xla_cnn, "cpu", clients=10, steps_in_program=8) == (
        "sequential"
    )
    assert resolve_client_axis("auto", lstm, "cpu", clients=100, steps_in_program=8) == "map"
    assert [steps_in_program(u, 8) for u in (True, 1, 4, 16)] == [8, 1, 4, 8]
    config = load_config(os.path.join(ROOT, "configs", "fedavg_digits.py"))
    config.model.conv = "xla"  # 10 clients a round, 8 unrolled steps: 80 copies
    execution = execution_for(config, make_task("cnn", 10, conv="xla"), num_clients=20)
    assert (execution.client_axis, execution.unroll) == ("map", True)
    config.clients_per_round, config.client.local_steps = 4, 2
    execution = execution_for(config, make_task("cnn", 10, conv="xla"), num_clients=20)
    assert execution.client_axis == "sequential"
    assert client_mesh_for(0, clients_per_round=4) is None  # this process has one device
    with pytest.raises(ValueError, match="client_devices must divide clients_per_round=4"):
        client_mesh_for(2, clients_per_round=4)


def test_optimizer_fields_reach_the_optimizers(shakespeare_cache, monkeypatch):
    calls = {}

    def spy_on(module, name):
        build = getattr(module, name)

        def spy(optimizer, learning_rate, **kwargs):
            calls[kwargs["field"]] = dict(kwargs, name=optimizer, learning_rate=learning_rate)
            return build(optimizer, learning_rate, **kwargs)

        monkeypatch.setattr(module, name, spy)

    spy_on(config_fields, "make_optimizer")
    spy_on(config_fields, "server_optimizer")
    spy_on(centralized_entry, "make_optimizer")  # the centralized entry's builder
    task = make_task("lstm", 80, hidden=8)
    federated = {"server.optimizer": "adam", "server.eps": 1e-3, "client.optimizer": "adam",
                 "client.b1": 0.8, "client.b2": 0.95}  # fmt: skip
    config = smoke_config("fedavg_shakespeare", shakespeare_cache, **federated)
    algorithm_configs.build_algorithm(config, task, num_clients=12)
    assert calls["server"]["name"] == "adam" and calls["server"]["eps"] == 1e-3
    assert calls["client"]["name"] == "adam" and calls["client"]["momentum"] == 0.0
    assert (calls["client"]["b1"], calls["client"]["b2"]) == (0.8, 0.95)
    config = smoke_config("diloco_digits", shakespeare_cache, **{"client.b2": 0.95})
    algorithm_configs.build_algorithm(config, make_task("cnn", 10), num_clients=2)
    assert calls["client"]["name"] == "adam" and calls["client"]["b2"] == 0.95
    for server in ("adam", "yogi", "sgd"):  # unset: server_optimizer's own default
        config = smoke_config(
            "fedavg_shakespeare", shakespeare_cache, **{"server.optimizer": server}
        )
        algorithm_configs.build_algorithm(config, task, num_clients=12)
        assert calls["server"]["eps"] is None and calls["server"]["b1"] is None, server
    centralized = {"optimizer.schedule": "warmup_cosine", "optimizer.schedule_steps": 50}
    config = smoke_config(
        "centralized_shakespeare", shakespeare_cache, **centralized, **{"optimizer.warmup_steps": 5}
    )
    algorithm_configs.build_algorithm(config, task, num_clients=1)
    assert calls["optimizer"]["total_steps"] == 50 and calls["optimizer"]["warmup_steps"] == 5


def _before_fedopt(name: str) -> dict:
    """``config.json`` of ``configs/NAME.py:smoke`` as written before FedOpt followed Reddi et
    al.'s Algorithm 2 (a fixture made by that code), with this machine's data paths."""
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures",
                           f"config_before_fedopt_{name}.json")) as f:  # fmt: skip
        old = json.load(f)
    old["data"] = config_checks.config_record(load_config(f"configs/{name}.py:smoke"))["data"]
    return old


def test_workdirs_written_before_algorithm2_resume_as_they_ran():
    from fedjax_sim.config.resume import check_resumable

    def now(name, **overrides):
        config = load_config(f"configs/{name}.py:smoke")
        config = with_overrides(config, overrides)
        return config_checks.config_record(config)

    check_resumable(_before_fedopt("fedavg_shakespeare"), now("fedavg_shakespeare"), "w")
    fedadam = _before_fedopt("fedadam_shakespeare")
    with pytest.raises(ConfigError, match="server.optimizer=optax_adam .*to resume it"):
        check_resumable(fedadam, now("fedadam_shakespeare"), "w")
    resumed = now("fedadam_shakespeare", **{"server.optimizer": "optax_adam"})
    check_resumable(fedadam, resumed, "w")  # the optimizer it ran, under its new name
    scaffold = _before_fedopt("scaffold_shakespeare")
    with pytest.raises(ConfigError, match="weighting=examples to resume"):
        check_resumable(scaffold, now("scaffold_shakespeare"), "w")
    check_resumable(scaffold, now("scaffold_shakespeare", weighting="examples"), "w")
    lars = dict(_before_fedopt("fedavg_shakespeare"))
    lars["client"] = dict(lars["client"], optimizer="lars")  # optax's trust ratio, then
    with pytest.raises(ConfigError, match="client.optimizer=optax_lars .*to resume it"):
        check_resumable(lars, now("fedavg_shakespeare", **{"client.optimizer": "lars"}), "w")
    check_resumable(lars, now("fedavg_shakespeare", **{"client.optimizer": "optax_lars"}), "w")


def test_resume_ignores_a_group_that_came_with_another_algorithm():
    from fedjax_sim.config.resume import check_resumable

    def before_group(name, group):
        now = config_checks.config_record(load_config(f"configs/{name}.py:smoke"))
        return {k: v for k, v in now.items() if k != group}, now

    check_resumable(*before_group("fedavg_shakespeare", "fedprox"), "w")
    check_resumable(*before_group("fedprox_shakespeare", "feddyn"), "w")
    check_resumable(*before_group("fedavg_shakespeare", "asynchronous"), "w")  # resumed fields
    # its own group, though, is compared: a run without it would not have been this run
    with pytest.raises(ConfigError, match="differs in fedprox.mu"):
        check_resumable(*before_group("fedprox_shakespeare", "fedprox"), "w")
    # and a group the record has is compared whoever owns it
    prox = config_checks.config_record(load_config("configs/fedprox_shakespeare.py:smoke"))
    changed = dict(prox, feddyn={"alpha": 0.5})
    with pytest.raises(ConfigError, match="differs in feddyn.alpha"):
        check_resumable(prox, changed, "w")
