"""A finished run reopened from its workdir (`fedjax_sim.experiment.reopen`): its config, its
model WITH its state, and its evaluation equal to what the run recorded; and every golden
``config.json`` loads back as the config that wrote it."""

import json
import os
import subprocess
import sys

import flax.serialization
import jax
import numpy as np
import pytest

from fedjax_sim.config.checks import ConfigError, check_config, config_record
from fedjax_sim.config.files import load_config, with_overrides
from fedjax_sim.experiment.reopen import evaluate_run, load_run
from fedjax_sim.experiment.run import run_experiment
from fedjax_sim.runtime.checkpoints import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "fixtures", "golden_configs.json")


def test_every_golden_config_json_loads_back_as_the_config_that_wrote_it(tmp_path):
    with open(GOLDEN) as f:
        records = json.load(f)
    for name, record in records.items():
        path = tmp_path / "config.json"
        path.write_text(json.dumps(record))
        config = load_config(str(path))
        check_config(config)
        assert config_record(config) == record, name


def test_a_file_that_is_not_a_runs_config_is_one_line(tmp_path):
    (tmp_path / "other.json").write_text('{"rounds": 3}')
    with pytest.raises(ConfigError, match=r"not a run's config.json \(no 'algorithm' field\)"):
        load_config(str(tmp_path / "other.json"))


def _final_metrics(history: list[dict]) -> dict:
    last = history[-1]
    return {k: v for k, v in last.items() if k.startswith(("test_", "client_", "personal_"))}


def _check_reopened(workdir: str, history: list[dict]) -> None:
    run = load_run(workdir)
    assert run.round == history[-1]["round"]
    recorded = _final_metrics(history)
    evaluated = run.evaluate()
    assert recorded and {k: evaluated[k] for k in recorded} == pytest.approx(recorded, abs=1e-6)
    with open(os.path.join(workdir, "variables.msgpack"), "rb") as f:
        saved = flax.serialization.msgpack_restore(f.read())
    for got, want in zip(jax.tree.leaves(saved), jax.tree.leaves(run.variables), strict=True):
        np.testing.assert_array_equal(got, np.asarray(want))


def test_a_digits_run_reopens_to_its_recorded_metrics(tmp_path):
    config = with_overrides(load_config("configs/fedavg_digits.py:smoke"), {"rounds": 2})
    workdir = str(tmp_path / "run")
    _, history = run_experiment(config, workdir, progress=False, log=lambda line: None)
    _check_reopened(workdir, history)
    metrics = evaluate_run(workdir)
    with open(os.path.join(workdir, "evaluations", f"round_{metrics['round']}.json")) as f:
        assert json.load(f) == pytest.approx(metrics)
    with pytest.raises(CheckpointError, match=r"--round=99: no checkpoint of that round .*"):
        load_run(workdir, 99)


@pytest.mark.slow
def test_a_resnet20_batchnorm_run_reopens_with_its_statistics(tmp_path):
    """The case params.msgpack alone got wrong: without the BatchNorm statistics the model
    evaluates to another accuracy; reopened, it evaluates to the run's own last metrics."""
    workdir = str(tmp_path / "run")
    result = subprocess.run(
        [sys.executable, "-m", "fedjax_sim", "--quiet", "--workdir", workdir,
         "--config", "configs/fedavg_cifar100.py:smoke", "--config.model.name=resnet20",
         "--config.model.norm=batch"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f]
    _check_reopened(workdir, history)
    run = load_run(workdir)
    assert jax.tree.leaves(run.variables["state"])  # BatchNorm statistics were kept
    fresh = run.experiment.initial_state.model_state
    without = run.state.replace(model_state=fresh)
    evaluated = run.experiment.evaluate(without)
    assert evaluated["test_loss"] != pytest.approx(history[-1]["test_loss"], abs=1e-4)
    printed = subprocess.run(
        [sys.executable, "-m", "fedjax_sim", "evaluate", "--workdir", workdir],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert f"test_accuracy={history[-1]['test_accuracy']:.4f}" in printed.stdout
