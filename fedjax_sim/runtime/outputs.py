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


def plot_curves(path: str, history: list[dict], title: str = "") -> None:
    """Test accuracy and train/test loss against rounds, as a PNG; a metric whose records also
    hold ``<metric>_std`` (means over seeds) gets a +-1 std band."""
    rounds = [r["round"] for r in history]
    fig, (ax_acc, ax_loss) = new_figure(1, 2, figsize=(10, 4))

    def draw(ax, name):
        if not any(name in r for r in history):
            return
        mean = np.array([r.get(name, np.nan) for r in history])
        (line,) = ax.plot(rounds, mean, label=name)
        if any(f"{name}_std" in r for r in history):
            std = np.array([r.get(f"{name}_std", np.nan) for r in history])
            ax.fill_between(rounds, mean - std, mean + std, color=line.get_color(), alpha=0.2)

    for name in ("test_accuracy", "train_accuracy", "client_accuracy_p10"):
        draw(ax_acc, name)
    for name in ("test_loss", "train_loss"):
        draw(ax_loss, name)
    for ax, label in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_png(fig, path)


LEDGER_AXES = (
    ("ledger_epochs", "epochs", "linear"),
    ("ledger_bytes_total", "bytes communicated (total)", "log"),
    ("ledger_time_s", "simulated wall clock (s)", "log"),
)


def plot_ledger(path: str, runs: dict[str, list[dict]], metric: str = "test_accuracy") -> None:
    """``metric`` of each run (label -> history with `fedjax_sim.runtime.ledger` fields) against
    epochs, bytes communicated and simulated time, side by side, as a PNG."""
    fig, axes = new_figure(1, len(LEDGER_AXES), figsize=(5 * len(LEDGER_AXES), 4))
    for ax, (field, label, scale) in zip(axes, LEDGER_AXES, strict=True):
        for name, history in runs.items():
            points = [(r[field], r[metric]) for r in history if field in r and metric in r]
            if points and (scale == "linear" or max(p[0] for p in points) > 0):
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker=".", label=name)
                if scale == "log" and min(xs) > 0:
                    ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    save_png(fig, path)


def new_figure(rows: int, cols: int, **subplots):
    """``(figure, axes)`` of a figure outside pyplot: drawing it neither needs a display nor
    changes the backend, so a notebook's inline plots keep working around the library's."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=subplots.pop("figsize", None))
    return fig, fig.subplots(rows, cols, **subplots)


def save_png(fig, path: str) -> None:
    """Writes the matplotlib figure ``fig`` to ``path`` as a PNG, atomically."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes_atomic(path, buffer.getvalue())
