"""A grid of runs from one config: ``--config.sweep='field=v1,v2;other=a,b'``, resumable per cell.

The sweep string has dimensions separated by ``;``; the grid is their Cartesian product, in the
order written. A dimension is one field and its values (``client.local_steps=4,8,16``) or
several fields that move together, joined by ``+``, with their values joined by ``:``
(``client.local_steps+rounds=4:300,8:150,16:75``: J x rounds constant). Values are read as the
field's type (int, float, bool, str; ``None`` as none).

`run_sweep` runs each cell with `fedjax_sim.experiment.run.run_experiment` in
``WORKDIR/cells/<cell name>`` and writes ``WORKDIR/sweep.json`` (atomically) after every cell:
the dimensions, each cell's overrides, whether it finished, and its last record. A cell that
diverges (NaN/inf, unless its ``allow_nan``) is recorded as such with its round and the sweep
goes on. Running the same command again skips finished and diverged cells and resumes an
interrupted one from its last checkpoint, so a killed sweep ends with the same results as an
uninterrupted one.
"""

from __future__ import annotations

import ast
import copy
import itertools
import json
import os
from collections.abc import Callable

import ml_collections

from fedjax_sim.config.checks import ConfigError, check_config
from fedjax_sim.config.files import check_field_name, with_overrides
from fedjax_sim.runtime import outputs
from fedjax_sim.runtime.simulate import DivergenceError


def _field_value(config, name: str):
    node = config
    for key in name.split("."):
        node = node[key]
    return node


def _parse_value(text: str, current, field: str):
    text = text.strip()
    if text.lower() == "none":
        return None
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"sweep: {field} takes True or False, got {text!r}")
        return text.lower() == "true"
    try:
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
    except ValueError as error:
        raise ConfigError(
            f"sweep: {field} takes {type(current).__name__} values, got {text!r}"
        ) from error
    if isinstance(current, str):
        return text
    try:  # a placeholder field (None by default): a Python literal, else a string
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_sweep(spec: str, config: ml_collections.ConfigDict) -> list[tuple[tuple, list]]:
    """The dimensions of ``spec``: ``[(fields, [values_tuple, ...]), ...]``.

    Raises:
      ConfigError: a malformed dimension, an unknown field or one in two dimensions, a value
        of the wrong type or arity, or two values that parse to the same cell (``0.1,0.10``);
        one line naming it.
    """
    dimensions, seen = [], set()
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        names, sep, values = part.partition("=")
        if not sep or not values.strip():
            raise ConfigError(
                f"sweep: {part!r} is not 'field=v1,v2' (dimensions are separated by ';')"
            )
        fields = tuple(n.strip() for n in names.split("+"))
        for field in fields:
            if field == "sweep":
                raise ConfigError("sweep: a sweep cannot set sweep")
            check_field_name(config, field)
            if field in seen:
                raise ConfigError(f"sweep: {field} is in two dimensions; give its values once")
            seen.add(field)
        rows, texts = [], []
        for value in values.split(","):
            items = value.split(":")
            if len(items) != len(fields):
                raise ConfigError(
                    f"sweep: {'+'.join(fields)} takes {len(fields)} ':'-joined values per "
                    f"cell, got {value.strip()!r}"
                )
            row = tuple(
                _parse_value(item, _field_value(config, f), f)
                for item, f in zip(items, fields, strict=True)
            )
            if row in rows:
                raise ConfigError(
                    f"sweep: {'+'.join(fields)} lists the same value twice: "
                    f"{texts[rows.index(row)]!r} and {value.strip()!r} are both "
                    f"{':'.join(map(repr, row))}"
                )
            rows.append(row)
            texts.append(value.strip())
        dimensions.append((fields, rows))
    if not dimensions:
        raise ConfigError("sweep: empty; e.g. --config.sweep='client.local_steps=4,8,16'")
    return dimensions


def sweep_cells(dimensions) -> list[tuple[str, dict]]:
    """``[(cell name, overrides), ...]``: the grid's cells in order; a cell's name is its
    ``field=value`` pairs joined by ``__`` (the directory it runs in).

    Raises:
      ConfigError: two cells with the same name (values that differ only by ``/`` and ``_``).
    """
    cells = []
    for combination in itertools.product(*(rows for _, rows in dimensions)):
        overrides = {}
        for (fields, _), row in zip(dimensions, combination, strict=True):
            overrides.update(zip(fields, row, strict=True))
        name = "__".join(f"{k}={v}" for k, v in overrides.items()).replace("/", "_")
        if any(name == other for other, _ in cells):
            raise ConfigError(f"sweep: two cells would both run in cells/{name}")
        cells.append((name, overrides))
    return cells


def cell_configs(config: ml_collections.ConfigDict) -> list[tuple[str, dict, object]]:
    """``[(name, overrides, cell config), ...]`` of ``config.sweep``, every cell checked
    (`check_config`) before anything runs, so a bad cell stops the sweep at once."""
    dimensions = parse_sweep(config.sweep, config)
    cells = []
    for name, overrides in sweep_cells(dimensions):
        cell = copy.deepcopy(config)
        cell.sweep, cell.sweep_vectorized = "", False
        with_overrides(cell, overrides)
        try:
            check_config(cell)
        except ConfigError as error:
            raise ConfigError(f"sweep cell {name}: {error}") from error
        cells.append((name, overrides, cell))
    return cells


DIVERGED = "diverged.txt"  # a cell that stopped on NaN/inf: its message; rerunning skips it


def _diverged(cell_dir: str) -> str | None:
    path = os.path.join(cell_dir, DIVERGED)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


def finished_history(cell_dir: str, rounds: int) -> list[dict] | None:
    """The records of a cell whose run reached ``rounds`` (params written), else None."""
    path = os.path.join(cell_dir, "metrics.jsonl")
    if not os.path.exists(os.path.join(cell_dir, "params.msgpack")) or not os.path.exists(path):
        return None
    with open(path) as f:
        history = [json.loads(line) for line in f if line.strip()]
    return history if history and history[-1].get("round") == rounds else None


def sweep_summary(config: ml_collections.ConfigDict, dimensions) -> dict:
    """sweep.json's head: the sweep string and its dimensions; ``cells`` still empty."""
    return {
        "sweep": config.sweep,
        "dimensions": [
            {"fields": list(f), "values": [list(r) for r in rows]} for f, rows in dimensions
        ],  # fmt: skip
        "cells": [],
    }


def run_sweep(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs every cell of ``config.sweep`` not yet finished; returns the sweep.json object.

    Raises:
      ConfigError: the sweep string or a cell's config (before any cell runs).
    """
    from fedjax_sim.experiment.run import run_experiment  # the experiment imports JAX models

    cells = cell_configs(config)
    summary = sweep_summary(config, parse_sweep(config.sweep, config))
    os.makedirs(workdir, exist_ok=True)
    for index, (name, overrides, cell) in enumerate(cells):
        cell_dir = os.path.join(workdir, "cells", name)
        history, diverged = finished_history(cell_dir, cell.rounds), _diverged(cell_dir)
        if history is None and diverged is None:
            log(f"sweep cell {index + 1}/{len(cells)}: {name}")
            try:
                _, history = run_experiment(cell, cell_dir, progress=progress, log=log)
            except DivergenceError as error:  # a result of the grid, not a failure of it
                diverged = str(error).splitlines()[0]
                outputs.write_bytes_atomic(os.path.join(cell_dir, DIVERGED), diverged.encode())
                log(f"sweep cell {name}: {diverged}")
        record = {"name": name, "overrides": overrides, "finished": history is not None}
        if history is not None:
            record["last"] = history[-1]
        else:
            record["diverged"] = diverged
        summary["cells"].append(record)
        pending = [{"name": n, "overrides": o, "finished": False} for n, o, _ in cells[index + 1 :]]
        outputs.write_json_atomic(os.path.join(workdir, "sweep.json"),
                                  {**summary, "cells": summary["cells"] + pending})  # fmt: skip
    return summary


def load_sweep(workdir: str) -> tuple[dict, dict[str, list[dict]]]:
    """``(sweep.json, {cell name: its records})`` of a sweep's workdir (finished cells and
    the records written so far of the others)."""
    path = os.path.join(workdir, "sweep.json")
    if not os.path.exists(path):
        raise ConfigError(f"{workdir} holds no sweep.json: run the sweep there first")
    with open(path) as f:
        summary = json.load(f)
    histories = {}
    for cell in summary["cells"]:
        metrics = os.path.join(workdir, "cells", cell["name"], "metrics.jsonl")
        if os.path.exists(metrics):
            with open(metrics) as f:
                histories[cell["name"]] = [json.loads(line) for line in f if line.strip()]
    return summary, histories
