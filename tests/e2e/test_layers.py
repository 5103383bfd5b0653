"""The package's layers import downward only (STYLE.md item 15), read from the source (``ast``),
nothing imported; and the module paths kept for config files written before the move still load.

Layers, lowest first: ``data`` and ``models``; ``core`` (the compiled round and its parts);
``algorithms`` and ``runtime``, siblings that never import each other; ``config``;
``experiment``; ``__main__`` (the CLI) with ``__init__`` (the public names). A module imports
only its own layer and those below it; every import counts, a function-local one too.
``ml_collections`` (configs) is imported only by ``config``, ``experiment`` and ``__main__``.
"""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

from fedjax_sim.config import defaults, files, presets

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fedjax_sim"
RANKS = {
    "data": 0,
    "models": 0,
    "core": 1,
    "algorithms": 2,
    "runtime": 2,
    "config": 3,
    "experiment": 4,
    "__init__": 5,
    "__main__": 5,
}
# Top-level modules kept at their paths from before the move, for config files: config's.
OLD_PATHS = {"config_presets": "config", "config_defaults": "config"}
ML_COLLECTIONS_LAYERS = ("config", "experiment", "__main__")


def layer_of(module: str) -> str:
    """The layer of ``fedjax_sim[.X...]``; a module no layer holds fails the test."""
    parts = module.split(".")
    assert parts[0] == "fedjax_sim", module
    if len(parts) == 1 or parts[1] == "__init__":
        return "__init__"
    name = OLD_PATHS.get(parts[1], parts[1])
    assert name in RANKS, f"{module}: in no layer; give it one in RANKS (tests/e2e/test_layers.py)"
    return name


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import in ``source``, the module ``module``'s;
    ``from P import name`` names ``P.name`` where that is a module, else ``P``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package up
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if _exists(full) else base))
    return sorted(found)


def violations(source: str, module: str, shown_as: str, is_package: bool = False) -> list[str]:
    """One line per import of ``source`` (module ``module``, file ``shown_as``) that breaks the
    layers or the ``ml_collections`` rule."""
    own = layer_of(module)
    found = []
    for line, imported in imports(source, module, is_package):
        where = f"{shown_as}:{line} imports {imported}"
        if imported == "ml_collections" or imported.startswith("ml_collections."):
            if own not in ML_COLLECTIONS_LAYERS:
                found.append(f"{where}: only {', '.join(ML_COLLECTIONS_LAYERS)} read configs")
            continue
        if imported != "fedjax_sim" and not imported.startswith("fedjax_sim."):
            continue
        other = layer_of(imported)
        if other != own and RANKS[other] >= RANKS[own]:
            how = "sideways" if RANKS[other] == RANKS[own] else "upward"
            found.append(f"{where}: {own} may not import {other} ({how})")
    return found


def package_modules() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer():
    modules = [_module_name(path) for path in package_modules()]
    assert len(modules) > 60  # the walk found the package
    for module in modules:
        layer_of(module)


def test_layers_import_downward_only():
    found, seen = [], 0
    for path in package_modules():
        source = path.read_text(encoding="utf-8")
        module = _module_name(path)
        seen += len(imports(source, module, path.name == "__init__.py"))
        shown_as = str(path.relative_to(ROOT))
        found += violations(source, module, shown_as, path.name == "__init__.py")
    assert seen > 200  # the imports were read
    assert not found, "imports against the layers:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "module, source, expected",
    [
        ("fedjax_sim.core.x", "from fedjax_sim.runtime.simulate import simulate\n",
         "core/x.py:1 imports fedjax_sim.runtime.simulate: core may not import runtime (upward)"),
        ("fedjax_sim.runtime.x", "def f():\n    from fedjax_sim.algorithms import fedavg\n",
         "runtime/x.py:2 imports fedjax_sim.algorithms.fedavg: runtime may not import algorithms"
         " (sideways)"),
        ("fedjax_sim.core.x", "from fedjax_sim import simulate\n",
         "core/x.py:1 imports fedjax_sim: core may not import __init__ (upward)"),
        ("fedjax_sim.algorithms.x", "from ..config import checks\n",
         "algorithms/x.py:1 imports fedjax_sim.config.checks: algorithms may not import config"),
        ("fedjax_sim.runtime.x", "import ml_collections\n",
         "runtime/x.py:1 imports ml_collections: only config, experiment, __main__ read configs"),
    ],
)  # fmt: skip
def test_a_bad_import_is_named_by_file_line_and_module(module, source, expected):
    shown_as = module.removeprefix("fedjax_sim.").replace(".", "/") + ".py"
    assert [line[: len(expected)] for line in violations(source, module, shown_as)] == [expected]


@pytest.mark.parametrize(
    "module, source",
    [
        ("fedjax_sim.algorithms.x", "from fedjax_sim.core import aggregation\n"),
        ("fedjax_sim.experiment.x", "from fedjax_sim.experiment.run import run_experiment\n"),
        ("fedjax_sim.config.x", "import ml_collections\nfrom fedjax_sim.runtime import ledger\n"),
        ("fedjax_sim.__main__", "from fedjax_sim.experiment import sweep\n"),
    ],
)
def test_a_downward_or_same_layer_import_passes(module, source):
    assert violations(source, module, "x.py") == []


def _public_names(module) -> set[str]:
    tree = ast.parse(pathlib.Path(module.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("old, new", [("config_presets", presets), ("config_defaults", defaults)])
def test_old_config_module_paths_re_export_every_public_name(old, new):
    kept = importlib.import_module(f"fedjax_sim.{old}")
    assert set(kept.__all__) == _public_names(new)
    assert all(getattr(kept, name) is getattr(new, name) for name in kept.__all__)


@pytest.mark.parametrize("spec", ["", ":smoke"])
def test_a_config_file_importing_the_old_paths_still_loads(spec, tmp_path):
    source = (ROOT / "configs" / "fedavg_shakespeare_to50.py").read_text(encoding="utf-8")
    old = source.replace("fedjax_sim.config.presets", "fedjax_sim.config_presets")
    old = old.replace("fedjax_sim.config.defaults", "fedjax_sim.config_defaults")
    assert "from fedjax_sim.config_presets import" in old
    assert "from fedjax_sim.config_defaults import" in old
    (tmp_path / "old_config.py").write_text(old, encoding="utf-8")
    loaded = files.load_config(f"{tmp_path / 'old_config.py'}{spec}")
    current = files.load_config(f"{ROOT / 'configs' / 'fedavg_shakespeare_to50.py'}{spec}")
    assert loaded.to_dict() == current.to_dict()
