r"""The asynchronous and adaptive schemes against their synchronous baselines, on the digits.

  python experiments/distributed/distributed_schemes.py --runs runs/schemes \
      --out experiments/distributed/distributed_schemes [--smoke]

K = 8 workers, B = 16, the course CNN, every scheme at a budget of 20 epochs (runs whose
epochs per round vary are read at the first record past 20 epochs), every run with its ledger:
  * speeds: synchronous LocalSGD (H = 8, it waits for the slowest worker) against asynchronous
    SGD (H = 8 per job, server learning rate 0.25, with and without FedAsync's staleness
    scaling) under three speed models: fixed, lognormal (sigma 0.5) and 25% stragglers 4x
    slower. The ledger's simulated time shows what each costs on the clock.
  * gossip: A2CiD2 and plain gossip SGD on a ring and on random pairs (one averaging per
    gradient step, no server), and on the ring with the stragglers (they step every 4th
    tick, the others do not wait), against synchronous data-parallel SGD (H = 1, all-reduce).
  * local steps: the divergence rule (H from 1 up to 32), increasing H (doubling every 4
    rounds from 1, up to 64) and post-local SGD (H = 1 for 5 epochs, then 8) against H = 8.
  * batch: each worker's batch grown with the gradient noise scale from 2 up to 16, against a
    fixed 2 and a fixed 16.

Writes OUT.md (the table), OUT_speeds.png (accuracy against simulated time per speed model),
OUT_schemes.png (accuracy against epochs, bytes and simulated time) and OUT/<run>.jsonl.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distributed_digits import TRAIN_EXAMPLES, outputs, run_one  # noqa: E402

from fedjax_sim.experiment.script import run_script

EPOCHS, K, B, H = 20, 8, 16, 8
SPEEDS = {
    "fixed": {"speed.model": "fixed"},
    "lognormal": {"speed.model": "lognormal", "speed.sigma": 0.5},
    "stragglers": {
        "speed.model": "straggler", "speed.straggler_fraction": 0.25, "speed.slowdown": 4.0,
    },
}  # fmt: skip


def _rounds(epochs, workers, batch, steps) -> int:
    return max(1, math.ceil(epochs * TRAIN_EXAMPLES / (workers * batch * steps)))


def _paced(rounds: int, every: int | None = None) -> dict:
    every = every or max(1, rounds // 7)
    return {"rounds": rounds, "eval_every": every, "checkpoint_every": 0,
            "rounds_per_call": every, "allow_nan": True}  # fmt: skip


def increasing_rounds(epochs, double_every, cap) -> int:
    """Rounds of the increasing schedule (H = 2^(r // double_every), capped) to reach
    ``epochs``."""
    done, r = 0.0, 0
    while done < epochs * TRAIN_EXAMPLES:
        done += K * B * min(cap, 2 ** (r // double_every))
        r += 1
    return r


def specs(smoke: bool) -> dict:
    epochs = 1 if smoke else EPOCHS
    rounds = _rounds(epochs, K, B, H)
    runs = {}
    for speed, overrides in SPEEDS.items():
        runs[f"sync LocalSGD [{speed}]"] = ("localsgd_digits", {**overrides, **_paced(rounds)})
        for scaling in ("polynomial", "none"):
            label = "async SGD" + (" (no staleness scaling)" if scaling == "none" else "")
            runs[f"{label} [{speed}]"] = ("async_digits", {
                **overrides, "asynchronous.staleness_scaling": scaling, **_paced(rounds),
            })  # fmt: skip
    runs["sync SGD H=1"] = ("localsgd_digits", {
        "client.local_steps": 1, "localsgd.sync_momentum": "average",
        **_paced(_rounds(epochs, K, B, 1)),
    })  # fmt: skip
    for graph in ("ring", "random_pairs", "ring, stragglers"):
        for accelerate, name in ((True, "A2CiD2"), (False, "gossip SGD")):
            runs[f"{name} [{graph}]"] = ("a2cid2_digits", {
                "gossip.graph": graph.split(",")[0], "gossip.accelerate": accelerate,
                **(SPEEDS["stragglers"] if "stragglers" in graph else {}), **_paced(rounds),
            })  # fmt: skip
    # variable epochs per round: evaluated every 2 rounds, read at the budget
    runs["adaptive H (divergence rule)"] = ("adaptive_steps_digits", {
        "client.local_steps": 32, **_paced(30 if smoke else 140, 2),
    })  # fmt: skip
    runs["increasing H"] = ("adaptive_steps_digits", {
        "localsgd.schedule": "increasing", "localsgd.double_every": 4, "client.local_steps": 64,
        **_paced(increasing_rounds(epochs, 4, 64), 2),
    })  # fmt: skip
    switch = _rounds(epochs / 4, K, B, 1)
    runs["post-local SGD"] = ("postlocal_digits", {
        "localsgd.switch_step": switch, **_paced(switch + _rounds(epochs * 3 / 4, K, B, H), 2),
    })  # fmt: skip
    runs["noise-scale batch 2 to 16"] = ("adaptive_batch_digits", {
        "client.batch_size": 16, "localsgd.initial_batch_size": 2,
        **_paced(_rounds(epochs, K, 2, H), 2),
    })  # fmt: skip
    runs["fixed batch 2"] = ("localsgd_digits", {
        "client.batch_size": 2, **_paced(_rounds(epochs, K, 2, H)),
    })  # fmt: skip
    if smoke:  # the smoke configs' own K = 2 workers; every run tiny
        for config, overrides in runs.values():
            overrides.update({"data.num_clients": 2})
            overrides["rounds"] = min(overrides["rounds"], 4)
            overrides["eval_every"] = overrides["rounds_per_call"] = 2
            if config != "a2cid2_digits":
                overrides.setdefault("client.local_steps", 2)
    return runs


def at_budget(history: list[dict], epochs: float) -> dict:
    """The first record at or past ``epochs`` (the last one if the run stopped short)."""
    return next((r for r in history if r["ledger_epochs"] >= epochs - 1e-6), history[-1])


def report(results: dict, epochs: float) -> list[str]:
    lines = [
        f"## Schemes at {epochs:g} epochs (K = {K} workers; read at the first record past the "
        "budget)",
        "",
        "| scheme | test accuracy | epochs | syncs | MB sent in all | simulated s | at the end |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, history in results.items():
        r = at_budget(history, epochs)
        accuracy = r.get("test_accuracy", float("nan"))
        lines.append(
            f"| {name} | {accuracy:.3f} | {r['ledger_epochs']:.1f} | {r['ledger_syncs']:.0f} | "
            f"{r['ledger_bytes_total'] / 1e6:,.0f} | {r['ledger_time_s']:.4f} | {_state(r)} |"
        )
    return lines


def _state(record: dict) -> str:
    """The scheme's own state in its last window (means over the window's rounds)."""
    shown = {"staleness": "mean staleness {:.1f}", "consensus": "consensus {:.2g}",
             "noise_scale": "B_simple {:.0f}", "batch_size": "batch {:.0f}"}  # fmt: skip
    parts = [text.format(record[key]) for key, text in shown.items() if key in record]
    if "divergence" in record:
        parts.append(f"H {record['local_steps']:.1f}, divergence {record['divergence']:.2g}")
    return ", ".join(parts)


def plot_speeds(results: dict, path: str) -> None:
    fig, axes = outputs.new_figure(1, len(SPEEDS), figsize=(5 * len(SPEEDS), 4), sharey=True)
    for ax, speed in zip(axes, SPEEDS, strict=True):
        for name, history in results.items():
            if name.endswith(f"[{speed}]"):
                ax.plot([r["ledger_time_s"] for r in history],
                        [r["test_accuracy"] for r in history], marker="o",
                        label=name.rsplit(" [", 1)[0])  # fmt: skip
        ax.set_title(f"speeds: {speed}")
        ax.set_xlabel("simulated seconds")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend()
    outputs.save_png(fig, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs/schemes")
    parser.add_argument("--out", default="experiments/distributed/distributed_schemes")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {name: run_one(args.runs, args.out, name, spec, args.smoke)
               for name, spec in specs(args.smoke).items()}  # fmt: skip
    epochs = EPOCHS
    if args.smoke:  # whatever the tiny runs reached
        epochs = at_budget(results["sync LocalSGD [fixed]"], 0)["ledger_epochs"]
    lines = ["# Asynchronous and adaptive schemes on the digits (course CNN)", ""]
    lines += report(results, epochs) + [""]
    total = sum(h[-1].get("wall_s", 0.0) for h in results.values())
    lines += [f"Wall time of the runs made by this invocation: {total:.0f} s.", ""]
    plot_speeds(results, f"{args.out}_speeds.png")
    chosen = ("sync LocalSGD [fixed]", "sync SGD H=1", "A2CiD2 [ring]", "gossip SGD [ring]",
              "adaptive H (divergence rule)", "post-local SGD",
              "noise-scale batch 2 to 16")  # fmt: skip
    outputs.plot_ledger(f"{args.out}_schemes.png", {n: results[n] for n in chosen})
    outputs.write_bytes_atomic(f"{args.out}.md", "\n".join(lines).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    run_script(main)
