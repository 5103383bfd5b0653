"""The stated dependency floors are the versions CI installs and tests (constraints.txt)."""

import importlib.metadata
import os
import re
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _floors():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project["optional-dependencies"]
    requirements = project["dependencies"] + extras["test"] + extras["docs"]
    requirement = re.compile(r"([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?>=([0-9.]+)")  # name[extras]>=v
    floors = dict(requirement.fullmatch(r).groups() for r in requirements)
    return {_normalized(name): version for name, version in floors.items()}, project


def test_floors_are_the_pinned_versions_ci_installs():
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        pins = dict(
            line.strip().split("==") for line in f if line.strip() and not line.startswith("#")
        )
    pins = {_normalized(name): version for name, version in pins.items()}
    floors, project = _floors()
    assert floors == {name: pins[name] for name in floors}
    python_floor = tuple(int(p) for p in project["requires-python"].removeprefix(">=").split("."))
    assert python_floor == (3, 11)  # jax, jaxlib, flax, chex and orbax at the floors need 3.11


def test_installed_versions_meet_the_floors():
    floors, _ = _floors()
    for name, floor in floors.items():
        installed = importlib.metadata.version(name)
        as_tuple = lambda v: tuple(int(p) for p in re.findall(r"\d+", v)[:3])  # noqa: E731
        assert as_tuple(installed) >= as_tuple(floor), (name, installed, floor)
    assert sys.version_info >= (3, 11)
