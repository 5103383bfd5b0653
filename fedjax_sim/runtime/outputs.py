"""Files a run leaves in its workdir, each written atomically (temp file, then rename)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile

import flax.serialization
import numpy as np

from fedjax_sim.data.dataset import FederatedDataset


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old or the new file, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_metrics(workdir: str, history: list[dict]) -> None:
    """``metrics.jsonl`` (one JSON object per evaluation) and the same table as ``metrics.csv``."""
    lines = "".join(json.dumps(record, sort_keys=True) + "\n" for record in history)
    write_bytes_atomic(os.path.join(workdir, "metrics.jsonl"), lines.encode())
    columns = sorted(
        {name for record in history for name in record}, key=lambda name: (name != "round", name)
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_bytes_atomic(os.path.join(workdir, "metrics.csv"), buffer.getvalue().encode())


def write_params(path: str, params) -> None:
    """The parameters as flax msgpack (``flax.serialization.msgpack_restore`` reads them)."""
    write_bytes_atomic(
        path, flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(params))
    )


def dataset_summary(dataset: FederatedDataset) -> dict:
    sizes = dataset.client_sizes()
    return {
        "name": dataset.name,
        "clients": int(dataset.num_clients),
        "train_examples": int(sizes.sum()),
        "test_examples": int(len(dataset.test["y"])),
        "examples_per_client": {
            "mean": float(sizes.mean()),
            "std": float(sizes.std()),
            "min": int(sizes.min()),
            "median": float(np.median(sizes)),
            "max": int(sizes.max()),
        },
    }


CURVES = (
    ("accuracy", ("test_accuracy", "train_accuracy", "client_accuracy_p10",
                  "personal_test_accuracy", "finetuned_test_accuracy")),
    ("loss", ("test_loss", "train_loss", "personal_test_loss", "finetuned_test_loss")),
)  # fmt: skip


def curves_figure(history: list[dict], title: str = ""):
    """Accuracy (test, train, the worst 10% of clients and, where the run has them, the
    personalized and fine-tuned models' test accuracy) and losses against rounds; a metric whose
    records also hold ``<metric>_std`` (means over seeds) gets a +-1 std band. One colour per
    metric in both panels."""
    fig, axes = new_figure(1, len(CURVES), figsize=(11, 4.2))
    names = [name for _, group in CURVES for name in group]
    for ax, (label, group) in zip(axes, CURVES, strict=True):
        for name in group:
            points = [(r["round"], r[name], r.get(f"{name}_std")) for r in history if name in r]
            if not points:
                continue
            rounds, mean, std = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            color = f"C{names.index(name)}"
            ax.plot(rounds, mean, color=color, label=name)
            if any(f"{name}_std" in r for r in history):
                ax.fill_between(rounds, mean - std, mean + std, color=color, alpha=0.2)
        style_axes(ax, "round", label)
    fig.suptitle(title)
    return fig


def plot_curves(path: str, history: list[dict], title: str = "") -> None:
    """`curves_figure` as a PNG at ``path``."""
    save_png(curves_figure(history, title), path)


LEDGER_AXES = (
    ("ledger_epochs", "epochs", "linear"),
    ("ledger_bytes_total", "bytes communicated (total)", "log"),
    ("ledger_time_s", "simulated wall clock (s)", "log"),
)


def ledger_figure(runs: dict[str, list[dict]], metric: str = "test_accuracy"):
    """``metric`` of each run (label -> history with `fedjax_sim.runtime.ledger` fields)
    against epochs, bytes communicated and simulated time, side by side. Each run keeps its
    colour in every panel; a run with nothing to draw on a log axis (a centralized run sends
    no bytes) is left out of that panel, never drawn in another run's colour."""
    fig, axes = new_figure(1, len(LEDGER_AXES), figsize=(5.5 * len(LEDGER_AXES), 4.2))
    for ax, (field, label, scale) in zip(axes, LEDGER_AXES, strict=True):
        for index, (name, history) in enumerate(runs.items()):
            points = [(r[field], r[metric]) for r in history if field in r and metric in r]
            if scale == "log":
                points = [p for p in points if p[0] > 0]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", color=f"C{index % 10}",
                        label=name)  # fmt: skip
        if scale == "log" and ax.lines:
            ax.set_xscale("log")
        style_axes(ax, label, metric, legend=False)
    handles = [line for ax in axes for line in ax.lines]
    unique = {line.get_label(): line for line in handles}
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncols=min(4, len(unique)),
               fontsize="medium", frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(unique) - 1) // 4), 1, 1))
    return fig


def plot_ledger(path: str, runs: dict[str, list[dict]], metric: str = "test_accuracy") -> None:
    """`ledger_figure` as a PNG at ``path``."""
    save_png(ledger_figure(runs, metric), path, layout=False)


def style_axes(ax, xlabel: str, ylabel: str, legend: bool = True) -> None:
    """Labels, a light grid, whole-number ticks on a round (or step) axis, at most a few
    labelled ticks per decade on a log axis, and a legend readable at the figure's size."""
    from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if xlabel in ("round", "rounds", "step"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_xscale() == "log":
        # 1, 2, 5 per decade, written short (200k, 1M): scientific labels overlap
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=12))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_locator(LogLocator(subs="auto", numticks=12))
        ax.tick_params(axis="x", which="minor", labelbottom=False)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def new_figure(rows: int, cols: int, **subplots):
    """``(figure, axes)`` of a figure outside pyplot: drawing it neither needs a display nor
    changes the backend, so a notebook's inline plots keep working around the library's."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=subplots.pop("figsize", None))
    return fig, fig.subplots(rows, cols, **subplots)


def save_png(fig, path: str, layout: bool = True) -> None:
    """Writes the matplotlib figure ``fig`` to ``path`` as a PNG, atomically (laid out tight
    first unless ``layout`` is False: the figure was laid out already)."""
    if layout:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes_atomic(path, buffer.getvalue())
