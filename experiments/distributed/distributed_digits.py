r"""The distributed track on real offline data: the course CNN on scikit-learn's digits.

  python experiments/distributed/distributed_digits.py --runs runs/distributed \
      --out experiments/distributed/distributed_digits [--only batch|grid|tuned] [--smoke]

Three studies, each at a fixed budget of epochs, every run with its ledger:
  * batch: centralized SGD-momentum, AdamW, LARS and LAMB at batches 64 ... 32,768 (gradient
    accumulation in micro-batches of 256 above 256), learning rates not tuned, only scaled
    from one chosen at batch 64 (linear for SGD, Goyal et al. 2017; square root for the
    others, You et al. 2020), linear warmup (10% of the steps) then polynomial decay, no
    decay or trust ratio on biases. The digits have 1,438 training images, so batch 32,768
    is 23 epochs in one step: the sweep shows how far each optimizer carries accuracy as
    steps become few.
  * tuned: the same sweep's middle batches (256, 1,024, 4,096) also at 1/4 and 4 times the
    scaled learning rate, each cell reporting its best of the three. The digits have no
    validation split, so the best is chosen on the test split: an optimistic bound.
  * grid: LocalSGD, SlowMo (beta 0.5, alpha 1) and DiLoCo (inner AdamW, outer Nesterov 0.7 /
    0.9) for K in {2, 4, 8} workers x H in {4, 8, 16, 32, 64}, B = 16 per worker, against
    synchronous data-parallel SGD (H = 1) on the same K (``--family-workers``: the K for which
    SlowMo and DiLoCo run).

Runs go through `fedjax_sim.experiment.run.run_experiment` (as the CLI), one workdir each under
RUNS; a finished run is only read back. Writes OUT.md (tables), OUT_batch.png, OUT_grid.png,
OUT_ledger.png (accuracy against epochs, bytes and simulated time) and the records as
OUT/<run>.jsonl. ``--smoke`` runs a few tiny runs (seconds), for testing the script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time

from fedjax_sim.experiment.xla_flags import apply_xla_flags

apply_xla_flags("auto", "cnn")  # before JAX starts: the CNN's measured best on CPU


from fedjax_sim.config import files as config_files  # noqa: E402
from fedjax_sim.experiment.run import run_experiment  # noqa: E402
from fedjax_sim.experiment.script import run_script  # noqa: E402
from fedjax_sim.runtime import outputs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_EXAMPLES = 1438
BATCH_EPOCHS, GRID_EPOCHS = 50, 20
BATCHES = (64, 256, 1024, 4096, 16384, 32768)
# name -> (config file, base learning rate at batch 64, scaling rule, overrides)
OPTIMIZERS = {
    "SGD-momentum": ("largebatch_digits", 0.05, "linear", {"optimizer.name": "sgd"}),
    "AdamW": (
        "largebatch_digits",
        1e-3,
        "sqrt",
        {"optimizer.name": "adam", "optimizer.momentum": None},
    ),
    "LARS": ("largebatch_digits", 2.0, "sqrt", {}),
    "LAMB": (
        "largebatch_digits",
        0.01,
        "sqrt",
        {"optimizer.name": "lamb", "optimizer.momentum": None},
    ),
}
TUNED_BATCHES, LR_MULTIPLIERS = (256, 1024, 4096), (0.25, 4.0)
WORKERS, LOCAL_STEPS = (2, 4, 8), (4, 8, 16, 32, 64)
FAMILY = {
    "LocalSGD": ("localsgd_digits", {}),
    "SlowMo": ("slowmo_digits", {}),
    "DiLoCo": ("diloco_digits", {}),
}


def batch_runs(smoke: bool, tuned: bool = False) -> dict:
    """The sweep's runs, or with ``tuned`` those at the other learning-rate multipliers."""
    runs = {}
    for name, (config, base_lr, rule, overrides) in OPTIMIZERS.items():
        batches = TUNED_BATCHES if tuned else BATCHES
        for batch in batches[:2] if smoke else batches:
            for multiplier in LR_MULTIPLIERS if tuned else (1.0,):
                label = f"{name} B={batch}" + (f" lr x{multiplier:g}" if tuned else "")
                runs[label] = _batch_run(config, base_lr * multiplier, rule, overrides, batch,
                                         smoke)  # fmt: skip
    return runs


def _batch_run(config, base_lr, rule, overrides, batch, smoke):
    epochs = 1 if smoke else BATCH_EPOCHS
    steps = max(2, math.ceil(epochs * TRAIN_EXAMPLES / batch))
    every = max(1, steps // 10)
    return (config, {
        **overrides,
        "batch_size": batch,
        "micro_batch_size": min(batch, 256),
        "optimizer.learning_rate": base_lr,
        "optimizer.lr_scaling": rule,
        "optimizer.base_batch_size": 64,
        "optimizer.warmup_steps": every,
        "rounds": steps,
        "eval_every": every,
        "checkpoint_every": 0,
        "rounds_per_call": every,
        "allow_nan": True,
    })  # fmt: skip


def grid_runs(smoke: bool, family_workers: tuple) -> dict:
    runs = {}
    epochs = 1 if smoke else GRID_EPOCHS
    for k in WORKERS[:1] if smoke else WORKERS:
        for family, (config, overrides) in FAMILY.items():
            if family != "LocalSGD" and k not in family_workers and not smoke:
                continue
            for h in (1, *LOCAL_STEPS) if family == "LocalSGD" else LOCAL_STEPS:
                if smoke and h > 4:
                    continue
                rounds = max(1, math.ceil(epochs * TRAIN_EXAMPLES / (k * 16 * h)))
                every = max(1, rounds // 8)
                label = "sync SGD" if h == 1 else family
                runs[f"{label} K={k} H={h}"] = (config, {
                    **overrides,
                    "data.num_clients": k,
                    "client.local_steps": h,
                    "client.batch_size": 16,
                    # H = 1: data-parallel SGD with the summed batch (momentum averaged)
                    "localsgd.sync_momentum": "average" if h == 1 else "keep",
                    "rounds": rounds,
                    "eval_every": every,
                    "checkpoint_every": 0,
                    "rounds_per_call": every,
                    "allow_nan": True,
                })  # fmt: skip
    return runs


def slug(name: str) -> str:
    kept = "".join(c if c.isalnum() else "_" for c in name.lower())
    return "_".join(filter(None, kept.split("_")))


def run_one(runs_dir: str, out_dir: str, name: str, spec, smoke: bool) -> list[dict]:
    """Runs (or reads back) one run; its records are copied to OUT/<slug>.jsonl."""
    target = os.path.join(out_dir, f"{slug(name)}.jsonl")
    if os.path.exists(target):
        with open(target) as f:
            return [json.loads(line) for line in f]
    config_name, overrides = spec
    path = os.path.join(ROOT, "configs", f"{config_name}.py")
    config = config_files.load_config(path + (":smoke" if smoke else ""))
    config_files.with_overrides(config, overrides)
    workdir = os.path.join(runs_dir, slug(name))
    shutil.rmtree(workdir, ignore_errors=True)
    start = time.perf_counter()
    _, history = run_experiment(config, workdir, progress=False, log=lambda line: None)
    history[-1]["wall_s"] = time.perf_counter() - start
    lines = "".join(json.dumps(record, sort_keys=True) + "\n" for record in history)
    outputs.write_bytes_atomic(target, lines.encode())
    print(f"{name}: test accuracy {history[-1]['test_accuracy']:.4f} "
          f"({history[-1]['wall_s']:.1f} s)", flush=True)  # fmt: skip
    return history


def _accuracy(history) -> float:
    value = history[-1].get("test_accuracy", float("nan"))
    return value if math.isfinite(value) else float("nan")


def _format(value: float) -> str:
    return "diverged" if math.isnan(value) else f"{value:.3f}"


def batch_report(results: dict) -> list[str]:
    lines = [
        f"## Batch-size sweep ({BATCH_EPOCHS} epochs each; final test accuracy)",
        "",
        "| optimizer | " + " | ".join(f"B={b}" for b in BATCHES) + " |",
        "|---|" + "---|" * len(BATCHES),
    ]
    for name in OPTIMIZERS:
        cells = [_format(_accuracy(results[f"{name} B={b}"])) for b in BATCHES
                 if f"{name} B={b}" in results]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def tuned_report(results: dict) -> list[str]:
    multipliers = (1.0, *LR_MULTIPLIERS)
    lines = [
        f"## Batch-size sweep, learning rate tuned ({BATCH_EPOCHS} epochs; best final test "
        f"accuracy of the scaled rate times {', '.join(f'{m:g}' for m in multipliers)}, "
        "chosen on the test split; the multiplier in brackets)",
        "",
        "| optimizer | " + " | ".join(f"B={b}" for b in TUNED_BATCHES) + " |",
        "|---|" + "---|" * len(TUNED_BATCHES),
    ]
    for name in OPTIMIZERS:
        cells = []
        for b in TUNED_BATCHES:
            tried = {m: results.get(f"{name} B={b}" + ("" if m == 1.0 else f" lr x{m:g}"))
                     for m in multipliers}  # fmt: skip
            scored = {m: _accuracy(h) for m, h in tried.items() if h is not None}
            if scored:
                best = max(scored, key=lambda m: -1.0 if math.isnan(scored[m]) else scored[m])
                cells.append(f"{_format(scored[best])} (x{best:g})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def grid_report(results: dict) -> list[str]:
    lines = [f"## LocalSGD family ({GRID_EPOCHS} epochs each; final test accuracy)", ""]
    for k in WORKERS:
        sync = results.get(f"sync SGD K={k} H=1")
        if sync is None:
            continue
        lines += [
            f"K = {k} workers (synchronous SGD, H = 1: {_format(_accuracy(sync))}, "
            f"{sync[-1]['ledger_syncs']:.0f} syncs, "
            f"{sync[-1]['ledger_bytes_total'] / 1e9:.2f} GB)",
            "",
            "| algorithm | " + " | ".join(f"H={h}" for h in LOCAL_STEPS) + " |",
            "|---|" + "---|" * len(LOCAL_STEPS),
        ]
        for family in FAMILY:
            cells = [_format(_accuracy(results[f"{family} K={k} H={h}"]))
                     for h in LOCAL_STEPS if f"{family} K={k} H={h}" in results]  # fmt: skip
            if cells:
                lines.append(f"| {family} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def plot_batch(results: dict, path: str) -> None:
    fig, ax = outputs.new_figure(1, 1, figsize=(6, 4))
    for name in OPTIMIZERS:
        points = [(b, _accuracy(results[f"{name} B={b}"])) for b in BATCHES
                  if f"{name} B={b}" in results]  # fmt: skip
        ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"test accuracy after {BATCH_EPOCHS} epochs")
    ax.grid(alpha=0.3)
    ax.legend()
    outputs.save_png(fig, path)


def plot_grid(results: dict, path: str) -> None:
    fig, axes = outputs.new_figure(1, len(WORKERS), figsize=(5 * len(WORKERS), 4), sharey=True)
    for ax, k in zip(axes, WORKERS, strict=True):
        for family in FAMILY:
            points = [(h, _accuracy(results[f"{family} K={k} H={h}"])) for h in LOCAL_STEPS
                      if f"{family} K={k} H={h}" in results]  # fmt: skip
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=family)
        if f"sync SGD K={k} H=1" in results:
            ax.axhline(_accuracy(results[f"sync SGD K={k} H=1"]), color="k", ls="--",
                       label="sync SGD (H=1)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("local steps H")
        ax.set_title(f"K = {k} workers")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test accuracy after {GRID_EPOCHS} epochs")
    axes[0].legend()
    outputs.save_png(fig, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs/distributed")
    parser.add_argument("--out", default="experiments/distributed/distributed_digits")
    parser.add_argument("--only", choices=("batch", "grid", "tuned"))
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--family-workers", type=int, nargs="*", default=list(WORKERS),
        help="the K for which SlowMo and DiLoCo run (LocalSGD runs every K)",
    )  # fmt: skip
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    specs = {}
    if args.only in (None, "batch", "tuned"):
        specs.update(batch_runs(args.smoke))
    if args.only in (None, "tuned"):
        specs.update(batch_runs(args.smoke, tuned=True))
    if args.only in (None, "grid"):
        specs.update(grid_runs(args.smoke, tuple(args.family_workers)))
    results = {name: run_one(args.runs, args.out, name, spec, args.smoke)
               for name, spec in specs.items()}  # fmt: skip
    lines = ["# The distributed track on the digits (course CNN)", ""]
    if args.only in (None, "batch", "tuned"):
        lines += batch_report(results) + [""]
        plot_batch(results, f"{args.out}_batch.png")
    if args.only in (None, "tuned"):
        lines += tuned_report(results) + [""]
    if args.only in (None, "grid"):
        lines += grid_report(results)
        plot_grid(results, f"{args.out}_grid.png")
        k = WORKERS[0] if args.smoke else 8
        chosen = {name: h for name, h in results.items()
                  if f"K={k} " in name and name.endswith(("H=1", "H=8", "H=32"))}  # fmt: skip
        outputs.plot_ledger(f"{args.out}_ledger.png", chosen)
    total = sum(h[-1].get("wall_s", 0.0) for h in results.values())
    lines += [f"Wall time of the runs made by this invocation: {total:.0f} s.", ""]
    outputs.write_bytes_atomic(f"{args.out}.md", "\n".join(lines).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    run_script(main)
