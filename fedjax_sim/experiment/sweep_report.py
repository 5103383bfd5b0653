"""Tables and plots of a sweep (`fedjax_sim.experiment.sweep`): every cell on shared axes.

`experiments/tools/report_sweep.py` is the command line; notebooks call these directly.
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np

from fedjax_sim.runtime import outputs

SUMMARY_FIELDS = (
    ("test_accuracy", "test acc"),
    ("client_accuracy_mean", "client mean"),
    ("client_accuracy_p10", "worst 10%"),
    ("client_accuracy_min", "worst client"),
    ("personal_accuracy_mean", "personal mean"),
    ("personal_accuracy_p10", "personal worst 10%"),
    ("finetuned_accuracy_mean", "fine-tuned mean"),
    ("ledger_epochs", "epochs"),
)


def rounds_to_target(history: list[dict], target: float, metric: str = "test_accuracy"):
    """The first evaluated round whose ``metric`` is at least ``target``, else None."""
    for record in history:
        if record.get(metric) is not None and record[metric] >= target:
            return record["round"]
    return None


def _format(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _evaluated(history: list[dict], field: str):
    values = [r[field] for r in history if field in r]
    return values[-1] if values else None


def cells_table(summary: dict, histories: dict, target: float | None = None) -> str:
    """Markdown: one row per cell, its swept values then its last evaluation (and the rounds
    to reach ``target`` test accuracy, when given)."""
    fields = [f for d in summary["dimensions"] for f in d["fields"]]
    present = [(k, label) for k, label in SUMMARY_FIELDS
               if any(_evaluated(h, k) is not None for h in histories.values())]  # fmt: skip
    done = "rounds run" if "rounds" in fields else "rounds"  # a swept horizon is a field too
    header = [*fields, done, *(label for _, label in present)]
    if target is not None:
        header.append(f"rounds to {target:g}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in summary["cells"]:
        history = histories.get(cell["name"], [])
        row = [_format(cell["overrides"][f]) for f in fields]
        if cell.get("diverged"):
            row.append("diverged" + (f" after {history[-1]['round']}" if history else ""))
        else:
            row.append(_format(history[-1]["round"] if history else None))
        row += [_format(_evaluated(history, k)) for k, _ in present]
        if target is not None:
            row.append(_format(rounds_to_target(history, target)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def pivot_table(summary: dict, histories: dict, metric: str = "test_accuracy") -> str:
    """Markdown: the last ``metric`` with the first dimension down and the last across (one
    table per combination of any dimensions between them)."""
    dims = summary["dimensions"]
    if len(dims) < 2:
        return ""
    first, last, middle = dims[0], dims[-1], dims[1:-1]
    by_overrides = {_key(c["overrides"]): c for c in summary["cells"]}
    blocks = []
    for middle_values in itertools.product(*(d["values"] for d in middle)):
        title = ", ".join(_label(d["fields"], v) for d, v in zip(middle, middle_values,
                                                                 strict=True))  # fmt: skip
        header = ["/".join(first["fields"]), *(_label(last["fields"], v) for v in last["values"])]
        lines = ([f"**{title}**", ""] if title else []) + [
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
        for row_value in first["values"]:
            row = [_format(row_value[0] if len(row_value) == 1 else tuple(row_value))]
            for col_value in last["values"]:
                overrides = {}
                for d, v in zip([first, *middle, last], [row_value, *middle_values, col_value],
                                strict=True):  # fmt: skip
                    overrides.update(zip(d["fields"], v, strict=True))
                cell = by_overrides.get(_key(overrides), {})
                value = _evaluated(histories.get(cell.get("name"), []), metric)
                row.append("diverged" if cell.get("diverged") else _format(value))
            lines.append("| " + " | ".join(row) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _key(overrides: dict) -> tuple:
    return tuple(sorted((k, json_safe(v)) for k, v in overrides.items()))


def json_safe(value):
    return tuple(value) if isinstance(value, list) else value


def _label(fields, values) -> str:
    return ", ".join(f"{f}={_format(v)}" for f, v in zip(fields, values, strict=True))


def _cell_lines(ax, cells: list[dict], histories: dict, hidden: list[str], metric: str,
                x: str, colors: dict) -> None:  # fmt: skip
    """One line per cell, labelled with its swept fields (full names) but ``hidden``."""
    for cell in cells:
        points = [(r[x], r[metric]) for r in histories.get(cell["name"], [])
                  if metric in r and x in r]  # fmt: skip
        if points:
            rest = {k: v for k, v in cell["overrides"].items() if k not in hidden}
            label = _label(rest, rest.values()) or cell["name"]
            ax.plot(*zip(*points, strict=True), marker=".", color=colors[cell["name"]],
                    label=label)  # fmt: skip


def _final_against_last(ax, summary: dict, histories: dict, metric: str) -> None:
    """The final ``metric`` against the last dimension's value, a line per combination of
    the other dimensions."""
    last_fields = summary["dimensions"][-1]["fields"]
    groups = {}
    for cell in summary["cells"]:
        rest = tuple((k, json_safe(v)) for k, v in cell["overrides"].items()
                     if k not in last_fields)  # fmt: skip
        value = _evaluated(histories.get(cell["name"], []), metric)
        groups.setdefault(rest, []).append((cell["overrides"][last_fields[0]], value))
    for index, (rest, points) in enumerate(groups.items()):
        points = [(a, np.nan if b is None else b) for a, b in points]
        label = _label([k for k, _ in rest], [v for _, v in rest]) or metric
        ax.plot(*zip(*points, strict=True), marker="o", color=f"C{index % 10}", label=label)
    outputs.style_axes(ax, last_fields[0], f"final {metric}")


def sweep_figure(summary: dict, histories: dict, metric: str = "test_accuracy",
                 x: str = "round"):  # fmt: skip
    """``metric`` against ``x`` for every cell: a one-dimensional sweep on one axes, a
    larger one with a panel per value of the first dimension (shared axes); with a numeric
    last dimension, a last panel draws the final ``metric`` against it. Labels carry the full
    field names; each cell keeps one colour."""
    dims = summary["dimensions"]
    first = dims[0]
    last_values = [v[0] for v in dims[-1]["values"]]
    numeric_last = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       for v in last_values)  # fmt: skip
    groups = [None] if len(dims) == 1 else first["values"]
    panels = len(groups) + numeric_last
    fig, axes = outputs.new_figure(1, panels, figsize=(5 * panels, 4.2), squeeze=False,
                                   sharey=True)  # fmt: skip
    axes = axes[0]
    colors = {cell["name"]: f"C{i % 10}" for i, cell in enumerate(summary["cells"])}
    for ax, value in zip(axes, groups, strict=False):
        cells = [
            c
            for c in summary["cells"]
            if value is None or [c["overrides"][f] for f in first["fields"]] == list(value)
        ]
        hidden = [] if value is None else first["fields"]
        _cell_lines(ax, cells, histories, hidden, metric, x, colors)
        if value is not None:
            ax.set_title(_label(first["fields"], value), fontsize="medium")
        outputs.style_axes(ax, x, metric)
    if numeric_last:
        _final_against_last(axes[-1], summary, histories, metric)
    return fig


def plot_sweep(path: str, summary: dict, histories: dict, metric: str = "test_accuracy",
               x: str = "round") -> None:  # fmt: skip
    """`sweep_figure` as a PNG at ``path``."""
    outputs.save_png(sweep_figure(summary, histories, metric, x), path)


def sweep_section(png_path: str, summary: dict, histories: dict, metric: str = "test_accuracy",
                  x: str = "round", target: float | None = None) -> str:  # fmt: skip
    """One sweep's part of a report: draws `plot_sweep` at ``png_path`` and returns the
    Markdown of `cells_table` followed by the plot's image link (relative to the report)."""
    plot_sweep(png_path, summary, histories, metric, x)
    name = os.path.basename(png_path)
    return f"{cells_table(summary, histories, target)}\n\n![{name[:-4]}]({name})"
