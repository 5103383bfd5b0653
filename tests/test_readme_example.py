"""The README's "Writing an algorithm" example runs as printed, on a tiny population."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def test_writing_an_algorithm_example_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("### Writing an algorithm") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
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
