"""Config files by path (``configs/X.py[:variant]``) and the names of their fields.

The CLI, the tests and the notebooks load configs through `load_config`, so a config that fails
to load fails the same way, with one line, everywhere.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os

import ml_collections

from fedjax_sim.config.checks import ConfigError


def load_config(spec: str) -> ml_collections.ConfigDict:
    """``get_config(variant)`` of the config file ``spec`` = ``"path.py[:variant]"``, or the
    config a run recorded, ``spec`` = its ``config.json`` (`config_of_record`).

    Raises:
      ConfigError: no such file, the file fails to import or has no ``get_config``, or the
        variant is unknown; one line that names the file.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no config file {path!r}")
    if path.endswith(".json") and not arg:
        return config_of_record(path)
    module_spec = importlib.util.spec_from_file_location("fedjax_sim_config", path)
    if module_spec is None:
        raise ConfigError(f"--config {path}: not a Python config file (*.py)")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        config = module.get_config(arg or None)
    except ConfigError as error:
        raise ConfigError(f"--config {spec}: {error}") from error
    except Exception as error:  # whatever the file raises: report it, not a traceback
        where = f" (line {error.lineno})" if isinstance(error, SyntaxError) else ""
        reason = str(error).splitlines()[0] if str(error) else ""
        raise ConfigError(
            f"--config {spec}: the file fails to load{where}: {type(error).__name__}: {reason}"
        ) from error
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"--config {spec}: get_config() returned {type(config).__name__}")
    return config


def config_of_record(path: str) -> ml_collections.ConfigDict:
    """The config of a run's ``config.json``: the fields as that run resolved and recorded
    them (``weighting`` as it ran), so running it again in a new workdir repeats the run.

    Raises:
      ConfigError: the file is not JSON, or not a config's record.
    """
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--config {path}: not a run's config.json ({error})") from error
    if not isinstance(record, dict) or "algorithm" not in record:
        raise ConfigError(f"--config {path}: not a run's config.json (no 'algorithm' field)")
    return ml_collections.ConfigDict(record)


def with_overrides(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    """``config`` with each dotted field of ``overrides`` (``{"client.batch_size": 16}``) set,
    as ``--config.<field>=<value>`` would set it; returns ``config`` (changed in place).

    Raises:
      ConfigError: a name that is not a field of ``config`` (`check_field_name`).
    """
    for name, value in overrides.items():
        check_field_name(config, name)
        node = config
        *groups, leaf = name.split(".")
        for group in groups:
            node = node[group]
        node[leaf] = value
    return config


def field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Dotted names of every field, groups (``data``) and their leaves (``data.alpha``)."""
    names = []
    for key, value in config.items():
        names.append(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            names.extend(field_names(value, f"{prefix}{key}."))
    return names


def check_field_name(config: ml_collections.ConfigDict, name: str) -> None:
    """Raises `ConfigError` unless ``name`` (e.g. ``"client.learning_rate"``) is a value field.

    The message lists the nearest field names, so a typo shows its correction.
    """
    node = config
    for depth, key in enumerate(name.split(".")):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            nearest = difflib.get_close_matches(name, field_names(config), n=3, cutoff=0.6)
            if nearest:
                raise ConfigError(f"--config.{name}: no such field; nearest: {', '.join(nearest)}")
            # No look-alike: list what the deepest existing group holds.
            group = ".".join(name.split(".")[:depth])
            siblings = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            raise ConfigError(
                f"--config.{name}: no such field; the fields of {group or 'the config'} are "
                + ", ".join(f"{group}.{key}" if group else key for key in siblings)
            )
        node = node[key]
    if isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(
            f"--config.{name} is a group of fields; set one of them, e.g. "
            f"--config.{name}.{next(iter(node.keys()))}=..."
        )
