"""Golden config records: the ``config.json`` of every config file x every algorithm it accepts.

Issue 30 moves the package's modules into subpackages; the CLI and every config field name must
not move, so that old workdirs resume. ``tests/fixtures/golden_configs.json`` holds, keyed by
``"configs/X.py[:variant]|<algorithm>"``, the record `run_experiment` writes to ``config.json``
(`fedjax_sim.config.checks.config_record`) for each config file, default and every variant, with
``config.algorithm`` set to each algorithm, as ``--config.algorithm=<algorithm>`` sets it, that
`fedjax_sim.config.checks.check_config` accepts. The test rebuilds them and compares each
record, serialized with sorted keys, byte for byte; a pair that appears or disappears fails
too. Paths under the home directory are recorded as ``~/...``: the configs are built with
``$HOME`` set to a placeholder that the record then names ``~``.

Regenerate the fixture only for an intended change to the records, and say so in the commit
(a changed record is a workdir that no longer resumes unchanged):

  PYTHONPATH=. python tests/config/test_golden_configs.py --regenerate
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib

import pytest

from fedjax_sim.config.checks import (
    DISTRIBUTED_ALGORITHMS,
    FEDERATED_ALGORITHMS,
    ConfigError,
    check_config,
    config_record,
)
from fedjax_sim.config.defaults import VARIANTS
from fedjax_sim.config.files import load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "golden_configs.json"
ALGORITHMS = (*FEDERATED_ALGORITHMS, *DISTRIBUTED_ALGORITHMS, "centralized")
# $HOME while the configs are built; records name it "~". Never created: building and checking
# a config reads no file.
_HOME = "/golden-config-home"
_SHOWN = 20  # mismatching pairs listed in a failure


def config_specs() -> list[str]:
    """``configs/X.py`` and ``configs/X.py:<variant>`` for every config file."""
    paths = sorted((ROOT / "configs").glob("*.py"))
    return [f"configs/{p.name}{f':{v}' if v else ''}" for p in paths for v in (None, *VARIANTS)]


@contextlib.contextmanager
def _home(path: str):
    previous = os.environ.get("HOME")
    os.environ["HOME"] = path
    try:
        yield
    finally:
        if previous is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = previous


def _tilde(value):
    """``value`` with every string under `_HOME` written ``~/...``."""
    if isinstance(value, dict):
        return {key: _tilde(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tilde(item) for item in value]
    if isinstance(value, str) and (value == _HOME or value.startswith(_HOME + "/")):
        return "~" + value[len(_HOME) :]
    return value


def serialize(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


def accepted_config(spec: str, algorithm: str):
    """The config of ``spec`` run as ``algorithm``, or None when `check_config` refuses it."""
    config = load_config(str(ROOT / spec))
    config.lock()  # as the CLI's config flag: an override sets an existing field
    config.algorithm = algorithm
    try:
        check_config(config)
    except ConfigError:
        return None
    return config


def golden_records() -> dict[str, str]:
    """``{"<spec>|<algorithm>": serialized record}`` for every accepted pair."""
    records = {}
    with _home(_HOME):
        for spec in config_specs():
            for algorithm in ALGORITHMS:
                config = accepted_config(spec, algorithm)
                if config is not None:
                    records[f"{spec}|{algorithm}"] = serialize(_tilde(config_record(config)))
    return records


def fixture_text(records: dict[str, str]) -> str:
    """The fixture file: one JSON object, a line per pair, so a diff names the pairs."""
    lines = [f"{json.dumps(key)}: {records[key]}" for key in sorted(records)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _leaves(value, prefix: str = "") -> dict[str, str]:
    """Dotted field name -> serialized value, for every leaf of a record."""
    if isinstance(value, dict) and value:
        leaves = {}
        for key, item in value.items():
            leaves.update(_leaves(item, f"{prefix}{key}."))
        return leaves
    return {prefix.rstrip("."): json.dumps(value, sort_keys=True)}


def first_difference(expected: str, actual: str) -> str:
    """The first field (by name) where two serialized records differ, with both values."""
    old, new = _leaves(json.loads(expected)), _leaves(json.loads(actual))
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) != new.get(name):
            return f"{name}: {old.get(name, '<absent>')} -> {new.get(name, '<absent>')}"
    return "same fields and values, different bytes"


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    with open(FIXTURE) as f:
        return {key: serialize(record) for key, record in json.load(f).items()}


@pytest.fixture(scope="module")
def actual() -> dict[str, str]:
    return golden_records()


def _listed(lines: list[str]) -> str:
    more = f"\n  ... and {len(lines) - _SHOWN} more" if len(lines) > _SHOWN else ""
    return "".join(f"\n  {line}" for line in lines[:_SHOWN]) + more


def test_accepted_pairs_are_the_golden_ones(expected, actual):
    gone, new = sorted(expected.keys() - actual.keys()), sorted(actual.keys() - expected.keys())
    problems = [f"no longer accepted: {key}" for key in gone]
    problems += [f"newly accepted: {key}" for key in new]
    assert not problems, (
        f"{len(gone)} config|algorithm pairs disappeared, {len(new)} appeared (regenerate only if "
        f"intended, see the module docstring):{_listed(problems)}"
    )


def test_records_are_byte_identical(expected, actual):
    changed = [
        f"{key}: {first_difference(expected[key], actual[key])}"
        for key in sorted(expected.keys() & actual.keys())
        if expected[key] != actual[key]
    ]
    assert not changed, (
        f"{len(changed)} config.json records changed (old workdirs of these pairs would not "
        f"resume unchanged):{_listed(changed)}"
    )


def test_a_difference_names_the_field():
    old = serialize({"client": {"batch_size": 16, "b1": None}, "rounds": 60})
    new = serialize({"client": {"batch_size": 16.0, "b1": None}, "rounds": 60})
    assert first_difference(old, new) == "client.batch_size: 16 -> 16.0"
    assert first_difference(old, serialize({"rounds": 60})) == "client.b1: null -> <absent>"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true", help=f"rewrite {FIXTURE}")
    if not parser.parse_args().regenerate:
        parser.error("nothing to do: pass --regenerate (the check is pytest's)")
    records = golden_records()
    FIXTURE.write_text(fixture_text(records))
    specs = {key.split("|")[0] for key in records}
    print(f"wrote {len(records)} config|algorithm records of {len(specs)} configs to {FIXTURE}")


if __name__ == "__main__":
    main()
