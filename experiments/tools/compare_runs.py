r"""Several runs on one plot: test accuracy against epochs, bytes communicated and simulated
time (the ledger every run writes), from their workdirs or metrics.jsonl files.

  python experiments/tools/compare_runs.py runs/localsgd_digits runs/slowmo_digits \
      runs/diloco_digits --out runs/compare.png [--labels LocalSGD SlowMo DiLoCo] \
      [--metric test_accuracy]
"""

from __future__ import annotations

import argparse
import json
import os

from fedjax_sim.experiment.script import run_script
from fedjax_sim.runtime import outputs


def read_history(path: str) -> list[dict]:
    """The records of a run: ``path`` is its workdir or its metrics.jsonl."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="workdirs or metrics.jsonl files")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--labels", nargs="*", help="one per run (default: the paths)")
    parser.add_argument("--metric", default="test_accuracy")
    args = parser.parse_args(argv)
    labels = args.labels or [os.path.basename(os.path.normpath(run)) for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--labels: {len(labels)} labels for {len(args.runs)} runs")
    runs = {label: read_history(run) for label, run in zip(labels, args.runs, strict=True)}
    outputs.plot_ledger(args.out, runs, metric=args.metric)
    for label, history in runs.items():
        last = history[-1]
        print(f"{label}: {args.metric}={last.get(args.metric, float('nan')):.4f} after "
              f"{last.get('ledger_epochs', float('nan')):.2f} epochs, "
              f"{last.get('ledger_bytes_total', float('nan')) / 1e6:,.1f} MB, "
              f"{last.get('ledger_time_s', float('nan')):.3g} s simulated")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
