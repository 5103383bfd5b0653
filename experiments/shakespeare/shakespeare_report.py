r"""Compares the README's FedAvg and centralized Shakespeare runs: one PNG and a Markdown table.

  python -m fedjax_sim --config configs/fedavg_shakespeare.py --workdir runs/fedavg_shakespeare
  python -m fedjax_sim --config configs/centralized_shakespeare.py --workdir runs/central_shak
  python experiments/shakespeare/shakespeare_report.py runs/fedavg_shakespeare runs/central_shak \
      --out experiments/shakespeare/shakespeare

Accuracy is plotted against training samples processed (FedAvg: rounds x C x J x B;
centralized: steps x B), the budget both runs spend.
"""

from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedjax_sim.experiment.script import run_script


def load_run(workdir):
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    if config["algorithm"] == "centralized":
        per_round = config["batch_size"]
    else:
        client = config["client"]
        per_round = config["clients_per_round"] * client["local_steps"] * client["batch_size"]
    return config, records, per_round


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--out", required=True, help="path prefix for .png and .md")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [
        "| run | rounds / steps | samples seen | test accuracy | test loss | "
        "client accuracy mean / p10 |",
        "|---|---|---|---|---|---|",
    ]
    for workdir in args.workdirs:
        config, records, per_round = load_run(workdir)
        label = config["algorithm"]
        ax.plot(
            [r["round"] * per_round for r in records],
            [r["test_accuracy"] for r in records],
            marker="o",
            label=label,
        )
        last = records[-1]
        clients = (
            f"{last['client_accuracy_mean']:.3f} / {last['client_accuracy_p10']:.3f}"
            if "client_accuracy_mean" in last
            else "-"
        )
        rows.append(
            f"| {label} | {last['round']} | {last['round'] * per_round:,} | "
            f"{last['test_accuracy']:.3f} | {last['test_loss']:.3f} | {clients} |"
        )
    ax.axhline(1 / 80, color="gray", linestyle=":", label="chance (1/80)")
    ax.set_xlabel("training samples processed")
    ax.set_ylabel("test accuracy (next character)")
    ax.set_title("LEAF Shakespeare, 100 clients, LSTM 2x256")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=100)
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    run_script(main)
