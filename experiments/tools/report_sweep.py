r"""The table and plots of a sweep run with ``--config.sweep`` (see fedjax_sim.experiment.sweep).

  python experiments/tools/report_sweep.py --workdir runs/my_sweep --out runs/my_sweep/report \
      [--metric test_accuracy] [--x round|ledger_epochs|ledger_time_s] [--target 0.8]

Writes OUT.md (every cell's last evaluation, and a pivot of the first dimension against the
last) and OUT.png (every cell on shared axes). It reads what is there, so it also reports a
sweep still running.
"""

from __future__ import annotations

import argparse
import os

from fedjax_sim.experiment.script import run_script
from fedjax_sim.experiment.sweep import load_sweep
from fedjax_sim.experiment.sweep_report import pivot_table, sweep_section
from fedjax_sim.runtime import outputs


def write_report(workdir: str, out: str, metric: str, x: str, target: float | None) -> str:
    """Writes OUT.md and OUT.png; returns the Markdown."""
    summary, histories = load_sweep(workdir)
    section = sweep_section(out + ".png", summary, histories, metric, x, target)
    parts = [f"# Sweep `{summary['sweep']}`", "", section]
    pivot = pivot_table(summary, histories, metric)
    if pivot:
        parts += ["", f"## Last {metric}", "", pivot]
    text = "\n".join(parts) + "\n"
    outputs.write_bytes_atomic(out + ".md", text.encode())
    return text


def sweep_experiment(description: str, sweep_config, target: float | None = None) -> None:
    """The command line of an experiment that is one sweep (``--workdir``, ``--out``,
    ``--smoke``): runs ``sweep_config(smoke)`` with `fedjax_sim.experiment.sweep.run_sweep`
    (resumable per cell) and prints and writes its report, test accuracy against rounds."""
    from fedjax_sim.experiment.sweep import run_sweep

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    run_sweep(sweep_config(args.smoke), args.workdir, progress=False)
    print(write_report(args.workdir, args.out, "test_accuracy", "round", target))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", default=None, help="default: WORKDIR/report")
    parser.add_argument("--metric", default="test_accuracy")
    parser.add_argument("--x", default="round")
    parser.add_argument("--target", type=float, default=None)
    args = parser.parse_args()
    out = args.out or os.path.join(args.workdir, "report")
    print(write_report(args.workdir, out, args.metric, args.x, args.target))


if __name__ == "__main__":
    run_script(main)
