r"""What `simulate`'s loop adds to a round: metrics to host, the NaN/inf check, bookkeeping.

  python experiments/benchmarks/bench_simulate.py [--json OUT.json] [--markdown OUT.md]

--json defaults to the current record, experiments/benchmarks/results/bench_simulate.json;
bench_simulate.md beside it is its table with how it was measured.

Workload "mlp" of workloads.py (1000 clients x 50 examples, 100 per round, J=5, B=10, client
axis vmap, one device): its ~12 ms round is the shortest of the bench, so the loop's per-round
costs weigh most there. Loops, each `ROUNDS` rounds from the same state, timed alternately in
this one process after one warm-up each (the round is compiled once and shared):
  bare: the jitted round (state donated) and its metrics fetched to host, nothing else;
  simulate (allow_nan): `simulate` without the divergence check, no progress bar;
  simulate: `simulate` as runs use it, with the check of metrics and parameters each round.
Each record: loop, ms_per_round (median/min/max over repetitions), overhead_ms over bare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np
import optax
from workloads import WORKLOADS, synthetic_clients

from fedjax_sim.algorithms.fedavg import fed_avg
from fedjax_sim.core.tasks import make_task
from fedjax_sim.experiment.script import run_script
from fedjax_sim.runtime.simulate import simulate

SPEC = WORKLOADS["mlp"]
ROUNDS = 50


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json", default="experiments/benchmarks/results/bench_simulate.json")
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()

    task = make_task("mlp", SPEC["classes"])
    clients = synthetic_clients(SPEC, SPEC["clients"], SPEC["examples"])
    algorithm = fed_avg(
        task,
        optax.sgd(SPEC["lr"]),
        optax.sgd(1.0),
        clients_per_round=SPEC["C"],
        local_steps=SPEC["J"],
        batch_size=SPEC["B"],
        client_axis="vmap",
    )
    state = algorithm.init(task.model.init(jax.random.key(0)))
    key = jax.random.key(1)
    step = jax.jit(algorithm.round_fn, donate_argnums=0)

    def bare():
        current = jax.tree.map(lambda x: x.copy(), state)
        for _ in range(ROUNDS):
            current, metrics = step(current, clients, key)
            {name: float(np.asarray(value)) for name, value in metrics.items()}
        return current

    def run_simulate(allow_nan):
        return lambda: simulate(
            algorithm.round_fn,
            clients,
            ROUNDS,
            state=state,
            key=key,
            progress=False,
            allow_nan=allow_nan,
        )[0]

    loops = {
        "bare": bare,
        "simulate (allow_nan)": run_simulate(True),
        "simulate": run_simulate(False),
    }
    for loop in loops.values():
        jax.block_until_ready(loop())  # warm-up: compiles the round once, and the check
    times = {name: [] for name in loops}
    for _ in range(args.reps):
        for name, loop in loops.items():
            start = time.perf_counter()
            jax.block_until_ready(loop())
            times[name].append((time.perf_counter() - start) / ROUNDS * 1e3)
    base = statistics.median(times["bare"])
    records = [
        dict(
            loop=name,
            rounds=ROUNDS,
            reps=args.reps,
            ms_per_round_median=statistics.median(t),
            ms_per_round_min=min(t),
            ms_per_round_max=max(t),
            overhead_ms=statistics.median(t) - base,
        )
        for name, t in times.items()
    ]
    with open(args.json, "w") as f:
        json.dump(records, f, indent=2)
    lines = [
        "| loop | ms per round, median [min, max] | over bare (ms) |",
        "|---|---|---|",
        *(
            f"| {r['loop']} | {r['ms_per_round_median']:.2f} [{r['ms_per_round_min']:.2f}, "
            f"{r['ms_per_round_max']:.2f}] | {r['overhead_ms']:+.2f} |"
            for r in records
        ),
    ]
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    run_script(main)
