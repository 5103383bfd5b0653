"""Plots that cannot mislead: each run keeps one colour in every panel (read back from the
figure's artists), a run with nothing to draw on a panel is left out of it, labels carry full
field names, a one-dimensional sweep shares one axes, rounds get whole-number ticks."""

import numpy as np

from fedjax_sim.experiment.sweep_report import sweep_figure
from fedjax_sim.runtime.outputs import LEDGER_AXES, curves_figure, ledger_figure


def _history(rounds, accuracy, bytes_per_round, seconds_per_round=1.0):
    return [
        {"round": r, "test_accuracy": a, "ledger_epochs": 0.5 * r,
         "ledger_bytes_total": bytes_per_round * r, "ledger_time_s": seconds_per_round * r}
        for r, a in zip(rounds, accuracy, strict=True)
    ]  # fmt: skip


def _colours_by_label(ax) -> dict:
    return {line.get_label(): line.get_color() for line in ax.lines}


def test_each_run_keeps_its_colour_in_every_ledger_panel():
    runs = {
        "large batch (centralized)": _history([1, 2, 3], [0.2, 0.4, 0.5], 0.0),
        "localsgd": _history([1, 2, 3], [0.3, 0.5, 0.6], 1e6),
        "diloco": _history([1, 2, 3], [0.25, 0.45, 0.65], 2e5),
    }
    fig = ledger_figure(runs)
    axes = fig.axes
    assert [ax.get_xlabel() for ax in axes] == [label for _, label, _ in LEDGER_AXES]
    seen = {}
    for ax in axes:
        for label, colour in _colours_by_label(ax).items():
            assert seen.setdefault(label, colour) == colour, (label, ax.get_xlabel())
    assert len(set(seen.values())) == len(runs)  # one colour per run, none shared
    bytes_panel = axes[[f for f, _, _ in LEDGER_AXES].index("ledger_bytes_total")]
    assert "large batch (centralized)" not in _colours_by_label(bytes_panel)  # 0 bytes
    assert bytes_panel.get_xscale() == "log"
    legend_labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert sorted(legend_labels) == sorted(runs)


def test_curves_draw_the_personal_models_where_the_run_has_them():
    history = [
        {"round": r, "test_accuracy": 0.1, "test_loss": 2.0, "personal_test_accuracy": 0.55,
         "personal_test_loss": 1.0}
        for r in (2, 4, 6)
    ]  # fmt: skip
    accuracy, loss = curves_figure(history).axes
    assert set(_colours_by_label(accuracy)) == {"test_accuracy", "personal_test_accuracy"}
    assert set(_colours_by_label(loss)) == {"test_loss", "personal_test_loss"}
    assert (_colours_by_label(accuracy)["personal_test_accuracy"]
            != _colours_by_label(accuracy)["test_accuracy"])  # fmt: skip
    accuracy.figure.canvas.draw()
    ticks = [t for t in accuracy.get_xticks() if 2 <= t <= 6]
    assert ticks and all(float(t).is_integer() for t in ticks)


def _summary(dimensions):
    cells = []
    for values in _product([d["values"] for d in dimensions]):
        overrides = {f: v for d, vs in zip(dimensions, values, strict=True)
                     for f, v in zip(d["fields"], vs, strict=True)}  # fmt: skip
        cells.append({"name": "_".join(f"{v}" for v in overrides.values()), "overrides": overrides})
    return {"dimensions": dimensions, "cells": cells}


def _product(lists):
    if not lists:
        return [[]]
    return [[head, *tail] for head in lists[0] for tail in _product(lists[1:])]


def _histories(summary):
    rng = np.random.default_rng(0)
    return {c["name"]: [{"round": r, "test_accuracy": float(rng.uniform())} for r in (1, 2, 3)]
            for c in summary["cells"]}  # fmt: skip


def test_a_one_dimensional_sweep_is_one_axes_with_full_field_names():
    summary = _summary([{"fields": ["client.optimizer"], "values": [["sgd"], ["adam"]]}])
    fig = sweep_figure(summary, _histories(summary))
    assert len(fig.axes) == 1
    labels = set(_colours_by_label(fig.axes[0]))
    assert labels == {"client.optimizer=sgd", "client.optimizer=adam"}
    assert fig.axes[0].get_legend() is not None


def test_a_grid_of_two_learning_rates_names_both_fields_in_full():
    summary = _summary([
        {"fields": ["client.learning_rate"], "values": [[0.1], [0.3]]},
        {"fields": ["server.learning_rate"], "values": [[1.0], [3.0]]},
    ])  # fmt: skip
    fig = sweep_figure(summary, _histories(summary))
    *panels, final = fig.axes
    assert [ax.get_title() for ax in panels] == [
        "client.learning_rate=0.100", "client.learning_rate=0.300"]  # fmt: skip
    for ax in panels:
        assert set(_colours_by_label(ax)) == {"server.learning_rate=1.000",
                                              "server.learning_rate=3.000"}  # fmt: skip
    assert final.get_xlabel() == "server.learning_rate"
    assert set(_colours_by_label(final)) == {"client.learning_rate=0.100",
                                             "client.learning_rate=0.300"}  # fmt: skip
