"""The algorithm registry (`fedjax_sim.config.registry`): every entry's smoke config checks and
builds (and, marked slow, runs two rounds, and runs a vectorized sweep over each field it
declares vectorizable), every numeric field of its group is refused out of range by name, and
no module outside `fedjax_sim.algorithms` and the registry branches on an algorithm's name."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from fedjax_sim.config import registry
from fedjax_sim.config.build import build_algorithm
from fedjax_sim.config.checks import ConfigError, check_config
from fedjax_sim.config.files import load_config, with_overrides
from fedjax_sim.data import cifar100, digits
from fedjax_sim.data.shakespeare import LEAF_VOCABULARY
from fedjax_sim.experiment.assembly import build_task
from fedjax_sim.experiment.run import run_experiment
from fedjax_sim.experiment.vector_sweep import run_vectorized_sweep

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMES = list(registry.ALGORITHMS)
# (module, algorithm name) comparisons of config.algorithm that remain outside the registry,
# each a count; shrink it as they move into the entries.
ALLOWED: dict[tuple[str, str], int] = {}
_SHAPES = {
    "cifar100": ((cifar100.IMAGE_SIDE,) * 2 + (3,), 100),
    "digits": ((digits.IMAGE_SIDE,) * 2 + (1,), 10),
    "shakespeare": (None, len(LEAF_VOCABULARY)),
}


def smoke_config(name: str):
    entry = registry.ALGORITHMS[name]
    config = load_config(str(ROOT / entry.smoke))
    config.lock()
    config.algorithm = name
    return config


@pytest.mark.parametrize("name", NAMES)
def test_smoke_config_checks_and_builds(name):
    config = smoke_config(name)
    check_config(config)
    shape, num_classes = _SHAPES[config.data.name]
    task = build_task(config, num_classes, shape)
    num_clients = config.data.num_clients or 20
    superclients = np.arange(num_clients).reshape(num_clients, 1)
    algorithm = build_algorithm(config, task, num_clients, superclients=superclients)
    assert callable(algorithm.round_fn)


def _numeric_fields(name: str):
    entry = registry.ALGORITHMS[name]
    if entry.group is None:
        return []
    group = entry.defaults()
    return [
        key
        for key, value in group.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


@pytest.mark.parametrize(
    "name,field", [(n, f) for n in NAMES for f in _numeric_fields(n)] or [("none", "none")]
)
def test_group_field_out_of_range_is_refused_by_name(name, field):
    config = smoke_config(name)
    group = registry.ALGORITHMS[name].group
    config[group][field] = -1.0 if isinstance(config[group][field], float) else -1
    with pytest.raises(ConfigError, match=rf"{group}\.{field}"):
        check_config(config)


def test_every_group_has_defaults_and_bounds():
    for entry in registry.ALGORITHMS.values():
        assert (entry.group is None) == (entry.defaults is None), entry.name
        if entry.group is not None and entry.family != "centralized":
            assert entry.check_group is not None, entry.name


def _is_algorithm(node) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "algorithm"
    if isinstance(node, ast.Name):
        return node.id == "algorithm"
    if isinstance(node, ast.Subscript):
        key = node.slice
        return isinstance(key, ast.Constant) and key.value == "algorithm"
    return False


def _names_in(node) -> list[str]:
    if isinstance(node, ast.Constant) and node.value in registry.ALGORITHMS:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for item in node.elts for n in _names_in(item)]
    return []


def algorithm_comparisons() -> dict[tuple[str, str], int]:
    """``{(module, name): count}`` of comparisons of an ``algorithm`` with a registered name
    (``== "name"``, ``in ("name", ...)``) outside `fedjax_sim.algorithms` and the registry."""
    found: dict[tuple[str, str], int] = {}
    for path in sorted((ROOT / "fedjax_sim").rglob("*.py")):
        module = path.relative_to(ROOT).as_posix()
        if module.startswith(("fedjax_sim/algorithms/", "fedjax_sim/config/registry/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            if not any(_is_algorithm(o) for o in operands):
                continue
            for operand in operands:
                for name in _names_in(operand):
                    found[(module, name)] = found.get((module, name), 0) + 1
    return found


def test_no_module_outside_the_registry_branches_on_an_algorithm_name():
    found = algorithm_comparisons()
    assert found == ALLOWED, (
        f"config.algorithm compared with a name outside the registry: {found} (allowed: "
        f"{ALLOWED}; shrink the allow-list when one moves into the registry)"
    )


def test_the_scan_finds_a_comparison(tmp_path):
    tree = ast.parse('if config.algorithm in ("fedavg", "x") or algorithm == "gossip": pass')
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert [_names_in(c.comparators[0]) for c in compares] == [["fedavg"], ["gossip"]]
    assert all(_is_algorithm(c.left) for c in compares)


def _short(name: str, shakespeare_cache: str, **fields):
    config = smoke_config(name)
    config.rounds, config.eval_every, config.checkpoint_every = 2, 1, 1
    if config.data.name == "shakespeare":
        config.data.cache_dir = shakespeare_cache
    return with_overrides(config, fields)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_smoke_config_runs(name, shakespeare_cache, tmp_path):
    config = _short(name, shakespeare_cache)
    _, history = run_experiment(config, str(tmp_path / "run"), progress=False)
    assert len(history) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,field", [(n, f) for n, e in registry.ALGORITHMS.items() for f in e.vectorizable]
)
def test_declared_vectorizable_field_runs_as_one_sweep(name, field, shakespeare_cache, tmp_path):
    group, key = field.split(".")
    default = registry.ALGORITHMS[name].defaults()[key]
    config = _short(
        name, shakespeare_cache, sweep_vectorized=True, sweep=f"{field}={default},{default / 2}"
    )
    summary = run_vectorized_sweep(config, str(tmp_path / "grid"), progress=False, log=print)
    assert len(summary["cells"]) == 2
    assert all(cell["finished"] for cell in summary["cells"])
