r"""FedAvg, FedProx, SCAFFOLD, FedDyn and the FedOpt family on the main job's Shakespeare setting.

  python experiments/shakespeare/shakespeare_algorithms.py --runs runs/algorithms \
      --out experiments/shakespeare/shakespeare_algorithms [--smoke]

Every run is the CLI on the 100 clients of configs/fedavg_shakespeare.py (10 per round, J=4,
B=10, client SGD lr 1, 150 rounds, evaluation every 15 rounds on 1,989 test samples), one
algorithm setting each, untuned (the values below); runs that exist are resumed (so a finished
one is only read back). Writes OUT.md (final test accuracy, loss, per-client mean and 10th
percentile, wall time) and OUT.png (test accuracy and the per-client 10th percentile against
rounds). ``--smoke`` runs the smoke variants instead (seconds each), for testing the script.
``--only FedAdam,SCAFFOLD`` reruns the rows whose names start with those; the other rows are
read from their recorded metrics (``OUT/<run>.jsonl``) and wall times (``OUT/walls.json``),
which every run refreshes; ``--report-only`` reruns nothing and redraws from those. A wall
time recorded as a string (``"807*"``) was measured with other work on the machine; the table
says so under it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedjax_sim.experiment.script import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (config file, overrides)
RUNS = {
    "FedAvg": ("fedavg_shakespeare", {}),
    "FedAvg, 15 rounds per call": ("fedavg_shakespeare", {"rounds_per_call": 15}),
    "FedProx (mu 0.01)": ("fedprox_shakespeare", {}),
    "SCAFFOLD (option II)": ("scaffold_shakespeare", {}),
    "FedDyn (alpha 0.01)": ("feddyn_shakespeare", {}),
    "FedAvgM (server lr 0.3, momentum 0.9)": (
        "fedavg_shakespeare",
        {"server.learning_rate": 0.3, "server.momentum": 0.9},
    ),
    "FedAdam (server lr 0.01, tau 1e-3)": ("fedadam_shakespeare", {}),
    "FedYogi (server lr 0.01, tau 1e-3)": ("fedadam_shakespeare", {"server.optimizer": "yogi"}),
    "FedAdagrad (server lr 0.01, tau 1e-3)": (
        "fedadam_shakespeare",
        {"server.optimizer": "adagrad"},
    ),
    "FedAdagrad (server lr 0.1, tau 1e-3)": (
        "fedadam_shakespeare",
        {"server.optimizer": "adagrad", "server.learning_rate": 0.1},
    ),
}


def run_dir(runs: str, name: str) -> str:
    slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    return os.path.join(runs, "_".join(filter(None, slug.split("_"))))


def run(runs: str, name: str, smoke: bool) -> float:
    """Runs (or resumes) one algorithm; returns the wall seconds of this invocation."""
    config, overrides = RUNS[name]
    command = [
        sys.executable, "-m", "fedjax_sim",
        "--config", os.path.join(ROOT, "configs", f"{config}.py" + (":smoke" if smoke else "")),
        "--workdir", run_dir(runs, name),
        *(f"--config.{key}={value}" for key, value in overrides.items()),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def record(args, names, walls: dict) -> None:
    """Copies each run's metrics into OUT/ and merges ``walls`` into OUT/walls.json."""
    folder = args.out
    os.makedirs(folder, exist_ok=True)
    for name in names:
        target = os.path.join(folder, os.path.basename(run_dir("", name)) + ".jsonl")
        shutil.copyfile(os.path.join(run_dir(args.runs, name), "metrics.jsonl"), target)
    path = os.path.join(folder, "walls.json")
    recorded = {}
    if os.path.exists(path):
        with open(path) as f:
            recorded = json.load(f)
    with open(path, "w") as f:
        json.dump({**recorded, **walls}, f, indent=1)


def recorded_run(args, name: str) -> tuple[list[dict], float] | None:
    """The metrics and wall seconds of ``name`` as OUT/ recorded them (None: not recorded)."""
    path = os.path.join(args.out, os.path.basename(run_dir("", name)) + ".jsonl")
    if not os.path.exists(path):
        return None
    with open(os.path.join(args.out, "walls.json")) as f:
        return read_metrics(path), json.load(f)[name]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/algorithms")
    parser.add_argument("--out", default="experiments/shakespeare/shakespeare_algorithms")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated row-name prefixes to rerun")
    parser.add_argument("--report-only", action="store_true", help="rerun nothing; redraw")
    args = parser.parse_args()
    prefixes = [p for p in args.only.split(",") if p]
    chosen = [n for n in RUNS if not prefixes or any(n.startswith(p) for p in prefixes)]
    if not chosen:
        parser.error(f"--only {args.only!r} names no row; rows: {', '.join(RUNS)}")
    if not args.report_only:
        walls = {}
        for name in chosen:
            print(f"== {name}", flush=True)
            walls[name] = run(args.runs, name, args.smoke)
        record(args, chosen, walls)
    rows = [
        "| algorithm | test accuracy | test loss | client accuracy mean / p10 | wall (s) |",
        "|---|---|---|---|---|",
    ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    # tab20's dark shades, then its light ones: one colour per run in both panels, never reused
    palette = matplotlib.colormaps["tab20"].colors
    colours = {name: palette[(2 * i) % 20 + (2 * i) // 20] for i, name in enumerate(RUNS)}
    for name in RUNS:
        if (recorded := recorded_run(args, name)) is None:
            continue  # never run into this OUT
        metrics, wall = recorded
        last = metrics[-1]
        rows.append(
            f"| {name} | {last['test_accuracy']:.4f} | {last['test_loss']:.3f} | "
            f"{last['client_accuracy_mean']:.3f} / {last['client_accuracy_p10']:.3f} | "
            f"{wall if isinstance(wall, str) else f'{wall:.0f}'} |"
        )
        rounds = [m["round"] for m in metrics]
        style = "--" if "per call" in name else "-"
        plot = {"label": name, "color": colours[name]}
        left.plot(rounds, [m["test_accuracy"] for m in metrics], style, **plot)
        right.plot(rounds, [m["client_accuracy_p10"] for m in metrics], style, **plot)
    left.set(xlabel="round", ylabel="test accuracy", title="next-character test accuracy")
    right.set(xlabel="round", ylabel="accuracy", title="per-client accuracy, 10th percentile")
    left.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    figure.savefig(args.out + ".png", dpi=120)
    if any(row.rstrip(" |").endswith("*") for row in rows):
        rows.append("\n\\* measured with other work on the same cores: not comparable.")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    run_script(main)
