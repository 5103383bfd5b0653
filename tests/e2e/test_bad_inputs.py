"""Bad inputs through the CLI entry point: each ends in one line naming the field, file or value,
with exit code 2, and nothing is lost; damaged caches and checkpoints are recovered from.

Every case runs ``python -m fedjax_sim`` in a subprocess; most are refused before any data is
loaded or anything compiled.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from records import metrics_without_wall_clock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAKESPEARE_SMOKE = "configs/fedavg_shakespeare.py:smoke"
DIGITS_SMOKE = "configs/fedavg_digits.py:smoke"
LEAF_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "shakespeare", "leaf")


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "fedjax_sim", "--quiet", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "FEDJAX_SIM_DEBUG": ""},
    )


def assert_one_line_error(result, pattern):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(f"error: {pattern}", lines[0]), lines[0]


@pytest.fixture(scope="module")
def broken_configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    (folder / "raises.py").write_text("def get_config(arg=None):\n    return 1 / 0\n")
    (folder / "syntax.py").write_text("def get_config(arg=None)\n    return None\n")
    return folder


@pytest.mark.parametrize(
    "args, pattern",
    [
        (
            ["--config", "configs/missing.py"],
            r"--config: no config file 'configs/missing.py'",
        ),
        (
            ["--config", "configs/fedavg_shakespeare.py:smoek"],
            r"--config configs/fedavg_shakespeare.py:smoek: unknown config variant 'smoek'; "
            r"allowed: smoke",
        ),
        (["--config.foo=1"], r"--config.foo: no such field; the fields of the config are .*"),
        (
            ["--config.client.learning_rat=0.1"],
            r"--config.client.learning_rat: no such field; nearest: client.learning_rate.*",
        ),
        (["--config.data=3"], r"--config.data is a group of fields; .*"),
        (["--config.rounds=abc"], r"flag --config.rounds=abc: .*"),
        (["--workdr=x"], r".*'workdr'.*workdir.*"),
        (
            ["--config.clients_per_round=50"],
            r"clients_per_round=50 exceeds the population of data.num_clients=12 clients",
        ),
        (["--config.model.hidden=0"], r"model.hidden must be an integer >= 1, got 0"),
        (
            ["--config.client.learning_rate=-1"],
            r"client.learning_rate must be > 0, got -1.0",
        ),
        (
            ["--config.xla_flags=--xla_no_such_flag=1"],
            r"xla_flags '--xla_no_such_flag=1': XLA refuses them: .*xla_no_such_flag.*",
        ),
        (
            ["--config", DIGITS_SMOKE, "--config.robust.aggregator=trimmed_mean"],
            r"robust.trim_fraction=0.1 trims floor\(0.1 x 3\) = 0 of the 3 clients a round: "
            r"the plain mean; trimming one from each end needs trim_fraction >= 1/3 = .*",
        ),
        (
            ["--config", DIGITS_SMOKE, "--config.robust.aggregator=krum",
             "--config.robust.krum_selected=4"],
            r"robust.krum_selected=4 exceeds the 3 clients a round; at most 3",
        ),
        (
            ["--config", DIGITS_SMOKE, "--config.robust.aggregator=krum",
             "--config.robust.byzantine=1"],
            r"robust.byzantine=1 is more than Krum tolerates with 3 clients a round \(it needs "
            r"clients > 2 x byzantine \+ 2\): at most 0",
        ),
        (
            ["--config", "configs/fedbn_cifar100.py:smoke", "--config.model.norm=group"],
            r"model.norm must be 'batch' for fedbn, got 'group': FedBN keeps the BatchNorm "
            r"layers local \(algorithm=fedavg for the other norms\)",
        ),
        (
            ["--config", DIGITS_SMOKE, "--config.sweep=client.learning_rate=0.1,0.10"],
            r"sweep: client.learning_rate lists the same value twice: '0.1' and '0.10' are "
            r"both 0.1",
        ),
        (
            ["--config", DIGITS_SMOKE, "--config", "/nonexistent.py"],
            r"--config: no config file '/nonexistent.py'",
        ),
        (
            ["--config", "/nonexistent.py", "--config", DIGITS_SMOKE],
            r"--config: no config file '/nonexistent.py'",
        ),
        (
            ["--config", "configs/centralized_cifar100.py:smoke", "--config.algorithm=fedavg"],
            r"algorithm='fedavg' needs a federated or distributed config .*; this config file "
            r"is for algorithm='centralized'",
        ),
        (
            ["--config", DIGITS_SMOKE, "--config.algorithm=centralized"],
            r"algorithm='centralized' needs a centralized config \(optimizer.\*, batch_size\), .*",
        ),
        (
            ["--config.algorithm=fedadam"],
            r"algorithm='fedadam' is fedavg with --config.server.optimizer=adam "
            r"\(configs/fedadam_shakespeare.py\)",
        ),
    ],
    ids=[
        "missing-config",
        "unknown-variant",
        "unknown-field",
        "misspelt-field",
        "group-as-value",
        "wrong-type",
        "unknown-flag",
        "more-clients-than-population",
        "zero-model-size",
        "negative-learning-rate",
        "unknown-xla-flag",
        "trimmed-mean-trimming-none",
        "krum-selecting-more-than-a-round",
        "krum-with-too-many-byzantine",
        "fedbn-without-batchnorm",
        "sweep-values-of-one-cell",
        "second-config-missing",
        "first-config-missing",
        "centralized-config-run-federated",
        "federated-config-run-centralized",
        "fedadam-is-fedavg-with-a-server-optimizer",
    ],
)  # fmt: skip
def test_bad_command_line(args, pattern, tmp_path):
    if args[0] != "--config":
        args = ["--config", SHAKESPEARE_SMOKE, *args]
    result = cli(*args, "--workdir", str(tmp_path / "run"))
    assert_one_line_error(result, pattern)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_krum_checked_against_the_clients_a_round_once_the_data_gives_them(tmp_path):
    # participation x K: the clients a round are known once the data is loaded (0.5 x 6)
    result = cli(
        "--config", DIGITS_SMOKE, "--workdir", str(tmp_path / "run"),
        "--config.clients_per_round=0", "--config.participation=0.5",
        "--config.robust.aggregator=krum", "--config.robust.byzantine=1",
    )  # fmt: skip
    assert_one_line_error(
        result, r"robust.byzantine=1 is more than Krum tolerates with 3 clients a round .*"
    )


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("raises.py", r"--config .*raises.py: the file fails to load: ZeroDivisionError: .*"),
        ("syntax.py", r"--config .*syntax.py: the file fails to load \(line 1\): SyntaxError: .*"),
    ],
)
def test_config_file_that_fails_to_load(name, pattern, broken_configs, tmp_path):
    result = cli("--config", str(broken_configs / name), "--workdir", str(tmp_path))
    assert_one_line_error(result, pattern)


def test_required_flags(tmp_path):
    assert_one_line_error(
        cli("--workdir", str(tmp_path)), r"--config FILE\[:variant\] is required.*"
    )
    assert_one_line_error(cli("--config", SHAKESPEARE_SMOKE), r"--workdir DIR is required.*")


def test_workdir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("results")
    result = cli("--config", SHAKESPEARE_SMOKE, "--workdir", str(tmp_path / "file"))
    assert_one_line_error(result, r"--workdir .*file is a file, not a directory")
    assert (tmp_path / "file").read_text() == "results"


def test_malformed_leaf_json(tmp_path):
    shutil.copytree(LEAF_FIXTURES, tmp_path / "leaf")
    broken = tmp_path / "leaf" / "train" / "all_data_1_keep_0_train_8.json"
    broken.write_text('{"users": ["a"],\n')
    result = cli(
        "--config",
        SHAKESPEARE_SMOKE,
        "--workdir",
        str(tmp_path / "run"),
        "--config.data.num_clients=0",
        "--config.clients_per_round=1",
        f"--config.data.leaf_train_dir={tmp_path / 'leaf' / 'train'}",
        f"--config.data.leaf_test_dir={tmp_path / 'leaf' / 'test'}",
    )
    assert_one_line_error(
        result, re.escape(str(broken)) + r" is not valid JSON \(.*line 2 column 1\); .*"
    )


@pytest.mark.slow
def test_damaged_shakespeare_cache_is_rebuilt(tmp_path):
    # A natural population with more clients per round than clients: the data is loaded (and
    # its cache checked) before the run is refused, without any compilation. The cache is the
    # test's own: the shared one may hold other tests' caches beside this one.
    args = ["--config", SHAKESPEARE_SMOKE, "--workdir", str(tmp_path / "run")]
    args += ["--config.data.num_clients=0", "--config.clients_per_round=5000"]
    built = tmp_path / "built"
    first = cli(*args, f"--config.data.cache_dir={built}")
    assert_one_line_error(first, r"clients_per_round=5000 exceeds the (\d+) clients of .*")
    cache = tmp_path / "cache"
    shutil.copytree(built, cache)
    (path,) = cache.glob("shakespeare_v*.npz")
    intact = path.read_bytes()
    path.write_bytes(intact[: len(intact) // 2])
    result = cli(*args, f"--config.data.cache_dir={cache}")
    assert result.returncode == 2
    assert f"Shakespeare cache {path} is damaged" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == first.stderr.strip()  # same data
    assert path.read_bytes() == intact  # rebuilt to the very same file contents


def test_divergence_stops_the_run(tmp_path):
    workdir = tmp_path / "run"
    result = cli(
        "--config",
        "configs/fedavg_cifar100.py:smoke",
        "--workdir",
        str(workdir),
        "--config.client.learning_rate=1e30",
    )
    assert_one_line_error(
        result,
        r"training diverged in round 1 \(train_loss=nan, .*non-finite parameters\); stopped, "
        r"no checkpoint yet; lower the learning rate, or set allow_nan=True to run on",
    )
    assert not (workdir / "metrics.jsonl").exists() and not (workdir / "params.msgpack").exists()
    assert "cifar100 (SYNTHETIC: random CIFAR-shaped images): 8 clients" in result.stdout
    with open(workdir / "dataset.json") as f:
        assert json.load(f)["synthetic"].startswith("random CIFAR-shaped images")


@pytest.fixture(scope="module")
def finished_run(shakespeare_cache, tmp_path_factory):
    """A 4-round smoke run with checkpoints at rounds 2 and 4, and its final parameters."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    args = ["--config", SHAKESPEARE_SMOKE, "--workdir", str(workdir)]
    args += [f"--config.data.cache_dir={shakespeare_cache}"]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    return workdir, args, result.stdout


def test_the_run_says_how_many_test_examples_it_evaluates(finished_run):
    workdir, _, stdout = finished_run
    evaluated = json.loads((workdir / "dataset.json").read_text())["test_examples"]
    assert f"evaluating on {evaluated:,} test examples" in stdout
    # without a terminal (--quiet, a log file): one line per evaluation, with its wall clock
    assert re.search(r"^round 2 \(\d+\.\d s\): .*test_accuracy=", stdout, re.M), stdout


def _damage_checkpoint(workdir, step):
    for path in (workdir / "checkpoints" / str(step)).rglob("*"):
        if path.is_file() and path.stat().st_size > 100:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_latest_checkpoint_falls_back_to_the_previous(finished_run, tmp_path):
    original, args, _ = finished_run
    workdir = tmp_path / "run"
    shutil.copytree(original, workdir)
    (workdir / "params.msgpack").unlink()
    _damage_checkpoint(workdir, 4)
    result = cli(*[str(workdir) if a == str(original) else a for a in args])
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"checkpoint of round 4 is damaged \(.* bytes, \d+ were written\)", result.stderr
    )
    assert "resuming from round 2" in result.stderr and "Traceback" not in result.stderr
    assert f"resuming from the checkpoint of round 2 in {workdir}" in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # the warning alone
    # Rounds 3 and 4 ran again, to the very same result.
    assert (workdir / "params.msgpack").read_bytes() == (original / "params.msgpack").read_bytes()
    assert metrics_without_wall_clock(workdir / "metrics.jsonl") == metrics_without_wall_clock(
        original / "metrics.jsonl"
    )
    assert (workdir / "checkpoints" / "damaged" / "4").is_dir()


def test_no_readable_checkpoint_is_a_one_line_error(finished_run, tmp_path):
    original, args, _ = finished_run
    workdir = tmp_path / "run"
    shutil.copytree(original, workdir)
    for step in (2, 4):
        _damage_checkpoint(workdir, step)
    result = cli(*[str(workdir) if a == str(original) else a for a in args])
    checkpoint = re.escape(str(workdir / "checkpoints" / "4"))
    assert_one_line_error(
        result,
        "checkpoint "
        + checkpoint
        + r" is damaged \(.*\) and no earlier checkpoint is readable; .*",
    )
    assert np.all([(workdir / "checkpoints" / str(step)).is_dir() for step in (2, 4)])


# The CLI on a disk that fills after the first checkpoint: files above 2 KB can no longer be
# written (RLIMIT_FSIZE), so orbax's background writes fail as on a full disk.
FULL_DISK_CLI = """
import resource, signal, sys
from fedjax_sim import __main__ as cli
from fedjax_sim.runtime import checkpoints
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
save = checkpoints.Checkpointer.save
def save_on_a_full_disk(self, *args, **kwargs):
    if self.manager.latest_step() is not None:
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, hard))
    return save(self, *args, **kwargs)
checkpoints.Checkpointer.save = save_on_a_full_disk
sys.argv = ["fedjax_sim", *sys.argv[1:]]
cli.run()
"""


def test_a_full_disk_is_one_line_and_keeps_the_earlier_checkpoints(tmp_path):
    workdir = tmp_path / "run"
    args = ["--quiet", "--config", DIGITS_SMOKE, "--workdir", str(workdir)]
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CLI, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env={**os.environ, "FEDJAX_SIM_DEBUG": ""},
    )  # fmt: skip
    checkpoints = workdir / "checkpoints"
    assert_one_line_error(
        result,
        f"cannot write the checkpoint of round 4 in {re.escape(str(checkpoints))} "
        r"\(File too large\); the checkpoint of round 2 is kept: free space \(or fix the "
        r"cause\) and run the same command to resume",
    )
    assert sorted(p.name for p in checkpoints.iterdir()) == ["2", "manifests"]  # no partial 4
    resumed = cli("--config", DIGITS_SMOKE, "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stderr
    assert (checkpoints / "4").is_dir() and (workdir / "params.msgpack").exists()
