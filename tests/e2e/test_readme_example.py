"""The README's Python API example and the docs' "Writing an algorithm" example run as printed
(the first smoke-sized, the second on a tiny population)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETUP = """
import numpy as np
from fedjax_sim import make_task
from fedjax_sim.data.client_data import client_data_from_indices
task = make_task("mlp", 3, features=4)
rng = np.random.default_rng(0)
examples = {"x": rng.normal(size=(40, 4)).astype(np.float32),
            "y": rng.integers(0, 3, 40).astype(np.int32)}
clients = client_data_from_indices(examples, np.array_split(np.arange(40), 20))
"""


def _python_block(path, heading):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    section = text[text.index(heading) :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_python_api_example_runs_smoke_sized(shakespeare_cache, capsys):
    code = _python_block("README.md", "## The Python API")
    smaller = {  # the main job's data and algorithm; 2 rounds of a narrow LSTM
        "rounds=150": "rounds=2",
        "eval_every=50": "eval_every=1",
        '"/tmp/shakespeare"': repr(shakespeare_cache),
        'make_task("lstm", num_classes=80)': 'make_task("lstm", num_classes=80, hidden=8)',
    }
    for printed, smoke in smaller.items():
        assert code.count(printed) == 1, printed
        code = code.replace(printed, smoke)
    namespace = {}
    exec(code, namespace)
    assert namespace["clients"].num_clients == 100
    assert [record["round"] for record in namespace["history"]] == [1, 2]
    accuracy = namespace["history"][-1]["test_accuracy"]
    assert 0 <= accuracy <= 1
    assert f"round 2: test accuracy {accuracy:.3f}" in capsys.readouterr().out


def test_writing_an_algorithm_example_runs():
    code = _python_block("docs/concepts.md", "## Writing an algorithm")
    namespace = {}
    exec(SETUP + code, namespace)
    jax = namespace["jax"]
    algorithm = namespace["algorithm"]
    state = algorithm.init(namespace["task"].model.init(jax.random.key(0)))
    before = jax.tree.map(lambda x: x.copy(), state.params)
    state, metrics = jax.jit(algorithm.round_fn)(state, namespace["clients"], jax.random.key(1))
    assert float(metrics["train_examples"]) == 10 * 4 * 10  # 10 clients x 4 steps x B=10
    moved = jax.tree.map(lambda a, b: bool((a != b).any()), state.params, before)
    assert all(jax.tree.leaves(moved))
