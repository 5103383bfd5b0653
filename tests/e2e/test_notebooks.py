"""The notebooks run top to bottom against the current library (code cells executed in order)
on their CPU smoke settings, as CI runs them, and produce what they promise: every run to its
last round, every sweep cell finished, their plots."""

import ast
import json
import os

import matplotlib
import pytest

from fedjax_sim import load_config
from fedjax_sim.experiment.sweep import cell_configs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "colab")) if f.endswith(".ipynb"))
STUDIES = ("personalization", "fedseq", "robustness", "architectures")
NOTE_MARK = "<!-- outputs-note -->"  # experiments/tools/run_notebooks.py's note on the outputs


def _rounds(name: str) -> int:
    return load_config(os.path.join(ROOT, "configs", f"{name}.py:smoke")).rounds


def _check(name, namespace, tmp_path):
    if name == "fedavg_shakespeare.ipynb":
        assert namespace["history"][-1]["round"] == namespace["config"].rounds
        pictures = ["curves.png"]
    elif name == "federated_track.ipynb":
        assert set(namespace["summaries"]) == set(STUDIES)
        for study, summary in namespace["summaries"].items():
            assert summary["cells"] and all(c["finished"] for c in summary["cells"]), study
        pictures = [f"{study}.png" for study in STUDIES]
        for study, arguments in namespace["studies"].items():  # the real sweeps are valid too
            real = namespace["study_config"](*arguments, smoke=False)
            assert len(cell_configs(real)) > 1, study
    elif name == "distributed_track.ipynb":
        histories = namespace["histories"]
        assert len(histories) == 3
        for run, history in histories.items():
            assert history[-1]["round"] == _rounds(run), run
        pictures = ["ledger.png"]
    else:
        raise AssertionError(f"{name}: say in this test what the notebook must produce")
    for picture in pictures:
        assert os.path.getsize(tmp_path / picture) > 0, picture


@pytest.mark.filterwarnings("ignore:FigureCanvasAgg is non-interactive")
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_its_smoke_settings(name, tmp_path, monkeypatch, shakespeare_cache):
    with open(os.path.join(ROOT, "colab", name)) as f:
        cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEDJAX_SIM_ROOT", ROOT)
    monkeypatch.setenv("FEDJAX_SIM_SMOKE", "1")
    matplotlib.use("Agg")  # no display here; plt.show() is then a no-op
    namespace = {}
    for cell in cells:
        source = "".join(line for line in cell["source"] if not line.lstrip().startswith("!"))
        if "build_experiment(config)" in source:  # keep the test's data cache hermetic
            source = f"config.data.cache_dir = {shakespeare_cache!r}\n" + source
        exec(compile(source, f"{name}:cell", "exec"), namespace)
    _check(name, namespace, tmp_path)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_in_colab_from_the_projects_repository(name):
    """Its badge opens this notebook from the repository of pyproject.toml's [project.urls],
    and its setup cell clones that repository and installs the tested versions."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        repository = tomllib.load(f)["project"]["urls"]["Repository"]
    with open(os.path.join(ROOT, "colab", name)) as f:
        cells = json.load(f)["cells"]
    path = repository.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{path}/blob/main/colab/{name}"
    assert badge in "".join(cells[0]["source"])
    setup = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    assert f'REPO = "{repository}"' in setup and "constraints.txt" in setup


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_saved_with_a_real_runs_outputs_and_says_where_they_came_from(name):
    """Saved by experiments/tools/run_notebooks.py: every cell run once, top to bottom, in one
    kernel, on the real settings, and the note above them names the machine they ran on."""
    with open(os.path.join(ROOT, "colab", name)) as f:
        cells = json.load(f)["cells"]
    notes = [c for c in cells if c["cell_type"] == "markdown" and NOTE_MARK in "".join(c["source"])]
    assert len(notes) == 1, "run experiments/tools/run_notebooks.py to save the outputs"
    note = "".join(notes[0]["source"])
    code = [c for c in cells if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    printed = ["".join(o.get("text", "")) for c in code for o in c["outputs"]]
    device = next(line for text in printed for line in text.splitlines() if "device(s)" in line)
    assert device.endswith("smoke=False"), device  # the real settings, not CI's smoke ones
    if device.startswith("cpu:"):
        assert "on a CPU" in note and "no GPU" in note
    else:
        assert "on a CPU" not in note
    for cell in code[1:]:  # a cell that does more than define saved what it printed or drew
        source = "".join(cell["source"])
        defines = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign)
        assert cell["outputs"] or all(isinstance(n, defines) for n in ast.parse(source).body)
    assert any("image/png" in o.get("data", {}) for c in code for o in c["outputs"])
