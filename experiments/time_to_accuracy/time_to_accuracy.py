r"""Wall-clock time to a test accuracy: runs one config through the CLI and times its records.

  python experiments/time_to_accuracy/time_to_accuracy.py \
      --config configs/fedavg_shakespeare_to50.py --workdir runs/to50 --target 0.5 \
      --out experiments/time_to_accuracy/time_to_50

The run is the CLI's (`python -m fedjax_sim --config CONFIG --workdir WORKDIR`, resumable);
this script watches WORKDIR/metrics.jsonl and notes the wall-clock seconds since the command
started at which each evaluation's record appeared (the metrics themselves stay free of wall
times, so that resumed and repeated runs stay bit-identical). Writes OUT.json (round, seconds,
test accuracy per record, and the first record at or above --target), OUT.md and OUT.png
(test accuracy against rounds and against minutes). Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from fedjax_sim.experiment.script import run_script  # noqa: E402
from fedjax_sim.runtime import outputs  # noqa: E402


def watch(command: list[str], metrics_path: str, poll_s: float = 2.0) -> list[dict]:
    """Runs ``command``; returns ``[{round, seconds, test_accuracy}]`` as records appeared."""
    start = time.perf_counter()
    seen: list[dict] = []
    process = subprocess.Popen(command, cwd=ROOT)
    while True:
        done = process.poll() is not None
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                records = [json.loads(line) for line in f if line.strip()]
            now = time.perf_counter() - start
            for record in records[len(seen) :]:
                seen.append({"round": record["round"], "seconds": now,
                             "test_accuracy": record.get("test_accuracy")})  # fmt: skip
        if done:
            break
        time.sleep(poll_s)
    if process.returncode:  # the CLI said why, in one line
        raise SystemExit(process.returncode)
    return seen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--out", required=True)
    args, overrides = parser.parse_known_args()
    command = [sys.executable, "-m", "fedjax_sim", "--config", args.config,
               "--workdir", args.workdir, "--quiet", *overrides]  # fmt: skip
    records = watch(command, os.path.join(args.workdir, "metrics.jsonl"))
    reached = next((r for r in records if (r["test_accuracy"] or 0) >= args.target), None)
    result = {"command": " ".join(command[1:]), "target": args.target, "records": records,
              "reached": reached, "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    outputs.write_json_atomic(args.out + ".json", result)
    lines = [f"# Time to {args.target:.0%} test accuracy", "", f"`python {result['command']}`, "
             f"{result['date']}, {os.cpu_count()} cores.", "",
             "| round | wall (min) | test accuracy |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {r['round']} | {r['seconds'] / 60:.1f} | {r['test_accuracy']:.4f} |"
              for r in records]  # fmt: skip
    lines += ["", f"Reached {args.target:.0%}: " + (
        f"round {reached['round']}, {reached['seconds'] / 60:.1f} minutes" if reached
        else "no")]  # fmt: skip
    outputs.write_bytes_atomic(args.out + ".md", ("\n".join(lines) + "\n").encode())
    fig, axes = outputs.new_figure(1, 2, figsize=(10, 4))
    for ax, x, label in ((axes[0], "round", "round"), (axes[1], "seconds", "wall (minutes)")):
        xs = [r[x] / (60 if x == "seconds" else 1) for r in records]
        ax.plot(xs, [r["test_accuracy"] for r in records], marker=".")
        ax.axhline(args.target, color="gray", linestyle="--", linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    fig.suptitle(os.path.basename(args.config))
    outputs.save_png(fig, args.out + ".png")
    print("\n".join(lines))


if __name__ == "__main__":
    run_script(main)
