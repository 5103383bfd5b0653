"""The sweep runner: the grid from one string, typed values, linked fields, every cell checked
before any runs, finished and diverged cells skipped on a rerun, and the report's tables."""

import json
import os
import subprocess
import sys

import pytest

from fedjax_sim.config.checks import ConfigError
from fedjax_sim.config.files import load_config
from fedjax_sim.experiment import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(spec="configs/fedavg_digits.py:smoke"):
    config = load_config(os.path.join(ROOT, spec))
    config.rounds, config.eval_every, config.checkpoint_every = 1, 1, 1
    return config


def test_the_grid_is_the_product_with_typed_and_linked_values():
    config = _config()
    dims = sweep.parse_sweep(
        "client.local_steps+rounds=4:30,8:15; client.learning_rate=0.1,1; "
        "selection.replace=true,False; robust.aggregator=median",
        config,
    )
    assert dims[0] == (("client.local_steps", "rounds"), [(4, 30), (8, 15)])
    assert dims[1][1] == [(0.1,), (1.0,)] and isinstance(dims[1][1][1][0], float)
    assert dims[2][1] == [(True,), (False,)]
    cells = sweep.sweep_cells(dims)
    assert len(cells) == 2 * 2 * 2 * 1
    name, overrides = cells[-1]
    assert overrides == {"client.local_steps": 8, "rounds": 15, "client.learning_rate": 1.0,
                         "selection.replace": False, "robust.aggregator": "median"}  # fmt: skip
    assert name.startswith("client.local_steps=8__rounds=15__")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("client.local_steps=4,x", "client.local_steps takes int"),
        ("client.local_steps+rounds=4:30,8", "takes 2 ':'-joined values"),
        ("client.local_step=4", "nearest: client.local_steps"),
        ("client.local_steps", "not 'field=v1,v2'"),
        ("robust.aggregator=mean,avg", "sweep cell robust.aggregator=avg: robust.aggregator"),
        ("", "empty"),
        (
            "client.learning_rate=0.1,0.10",
            "client.learning_rate lists the same value twice: '0.1' and '0.10' are both 0.1",
        ),
        (
            "client.local_steps+client.learning_rate=4:0.1,4:1e-1",
            "lists the same value twice: '4:0.1' and '4:1e-1' are both 4:0.1",
        ),
        ("rounds=1,2;rounds=3", "rounds is in two dimensions"),
        ("data.cache_dir=a/b,a_b", "two cells would both run in cells/data.cache_dir=a_b"),
        (
            "robust.aggregator=krum;robust.byzantine=0,1",
            "sweep cell robust.aggregator=krum__robust.byzantine=1: robust.byzantine=1 is more "
            "than Krum tolerates with 3 clients a round",
        ),
    ],
)
def test_bad_sweeps_are_one_line_errors_before_anything_runs(spec, message, tmp_path):
    config = _config()
    config.sweep = spec
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        sweep.run_sweep(config, str(tmp_path), progress=False)
    assert not os.path.exists(tmp_path / "sweep.json")


def test_a_sweep_runs_each_cell_once_records_divergence_and_reports(tmp_path, monkeypatch):
    config = _config()
    config.sweep = "client.learning_rate=0.05,1e30"  # the second diverges
    summary = sweep.run_sweep(config, str(tmp_path), progress=False, log=lambda line: None)
    cells = {c["overrides"]["client.learning_rate"]: c for c in summary["cells"]}
    assert cells[0.05]["finished"] and cells[0.05]["last"]["round"] == 1
    assert not cells[1e30]["finished"] and "diverged in round 1" in cells[1e30]["diverged"]
    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert [c["name"] for c in on_disk["cells"]] == [c["name"] for c in summary["cells"]]

    import fedjax_sim.experiment.run

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished or diverged cell ran again")

    monkeypatch.setattr(fedjax_sim.experiment.run, "run_experiment", must_not_run)
    again = sweep.run_sweep(config, str(tmp_path), progress=False, log=lambda line: None)
    assert again["cells"] == summary["cells"]

    sys.path.insert(0, os.path.join(ROOT, "experiments", "tools"))
    import matplotlib
    from report_sweep import write_report

    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # a notebook's own backend: the library's plots must leave it alone
    try:
        text = write_report(str(tmp_path), str(tmp_path / "report"), "test_accuracy", "round", 0.0)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(backend)
    assert "| client.learning_rate |" in text and "diverged" in text
    accuracy = cells[0.05]["last"]["test_accuracy"]
    assert f"| 0.050 | 1 | {accuracy:.3f} |" in text
    assert os.path.getsize(tmp_path / "report.png") > 0 and "![report](report.png)" in text


def _grid(tmp_path, *args):
    script = os.path.join(ROOT, "experiments", "course_grid", "course_grid.py")
    command = [sys.executable, script, "--workdir", str(tmp_path / "runs"),
               "--out", str(tmp_path / "grid"), *args]  # fmt: skip
    # HOME: the Shakespeare cache (~/.cache/fedjax_sim) built here, not in the user's
    env = dict(os.environ, HOME=str(tmp_path))
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("data", ["shakespeare", "cifar100"])
def test_every_study_of_the_course_grid_is_a_valid_sweep(data):
    sys.path.insert(0, os.path.join(ROOT, "experiments", "course_grid"))
    import course_grid

    for study in course_grid.GRIDS[data][-1]:
        for smoke in (False, True):
            config = course_grid.study_config(data, study, smoke)
            cells = sweep.cell_configs(config)  # every cell checked, or ConfigError
            assert len(cells) >= 2 or (smoke and len(cells) == 1), (study, smoke)
            if not smoke and study != "local_steps":
                assert {c.rounds for _, _, c in cells} == {course_grid.GRIDS[data][1]}, study


def test_the_course_grid_refuses_an_unknown_study_and_missing_data_in_one_line(tmp_path):
    result = _grid(tmp_path, "--data", "shakespeare", "--only", "local_steps,bogus")
    assert result.returncode == 2
    assert "--only: unknown studies ['bogus']; allowed: ['local_steps'," in result.stderr
    result = _grid(tmp_path, "--data", "cifar100", "--only", "heterogeneity")  # no archive here
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: study heterogeneity: ")


@pytest.mark.slow
@pytest.mark.parametrize("data", ["shakespeare", "cifar100"])
def test_the_course_grid_runs_and_reports_every_study_on_smoke(data, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "experiments", "course_grid"))
    import course_grid

    result = _grid(tmp_path, "--data", data, "--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "grid.md").read_text()
    for study in course_grid.GRIDS[data][-1]:
        assert f"## {study}" in text, study
        assert os.path.getsize(tmp_path / f"grid_{study}.png") > 0, study
        cells = json.loads((tmp_path / "runs" / study / "sweep.json").read_text())["cells"]
        assert cells and all(c["finished"] for c in cells), study
    if data == "shakespeare":  # J and rounds linked, under both splits
        assert "| natural | 2 | 4 |" in text and "| iid | 4 | 2 |" in text
