r"""How a round's time and memory scale with clients per round and with the population.

  python experiments/benchmarks/bench_scaling.py [--quick] [--json OUT.json]

Workload "mlp" of workloads.py (MLP 64-128-10, J=5, B=10, 50 examples per client), client axis
"vmap", every point compiled first in this one process, then timed alternately:
  clients_per_round: C = 10, 100, 1000 from a population of 1000 clients, under the default
      memory budget (8 GiB: every C fits vectorized) and under a budget too small for C = 1000
      vectorized, where the round runs in chunks
      (`fedjax_sim.core.engine.clients_within_memory_budget`);
  population: C = 100 from populations of 100 and 100,000 clients (same work per round).
Each record: scan, population, clients_per_round, chunk (clients vectorized at once),
memory_budget_gb, xla_peak_mb (XLA's memory analysis of the compiled round: arguments, outputs,
temporaries), data_mb (the population's arrays on the device), seconds (median/min/max),
samples_per_s and process_peak_rss_mb (cumulative over the process, so the last is the
largest). bench_round.py runs this too and puts the records in its JSON and table: the current
record is experiments/benchmarks/results/bench_round.json, so --json defaults to a file of its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics

import jax
import optax
from workloads import WORKLOADS, synthetic_clients, timed

from fedjax_sim.algorithms.fedavg import fed_avg
from fedjax_sim.core.engine import clients_within_memory_budget
from fedjax_sim.core.tasks import make_task
from fedjax_sim.experiment.script import run_script

SPEC = WORKLOADS["mlp"]
DEFAULT_BUDGET_GB = 8.0
SMALL_BUDGET_GB = 0.05  # below a 1000-client vectorized round (~80 MB), above one client's


def make_round(task, clients_per_round, client_axis="vmap", chunk_size=None):
    return fed_avg(
        task,
        optax.sgd(SPEC["lr"]),
        optax.sgd(1.0),
        clients_per_round=clients_per_round,
        local_steps=SPEC["J"],
        batch_size=SPEC["B"],
        client_axis=client_axis,
        chunk_size=chunk_size,
    )


def build_point(scan, task, data, clients_per_round, budget_gb):
    """(record stub, zero-argument round call) for one point; the round is compiled here."""
    algo = make_round(task, clients_per_round)
    state = algo.init(task.model.init(jax.random.key(0)))
    key = jax.random.key(1)

    def round_for_chunk(k):
        whole = k == clients_per_round
        return (algo if whole else make_round(task, clients_per_round, "chunked", k)).round_fn

    chunk, peak = clients_within_memory_budget(
        round_for_chunk,
        (state, data, key),
        clients_per_round,
        budget_gb * 2**30,
    )
    if chunk < clients_per_round:
        algo = make_round(task, clients_per_round, "chunked", chunk)
    step = jax.jit(algo.round_fn)
    record = dict(
        workload="mlp",
        scan=scan,
        population=data.num_clients,
        clients_per_round=clients_per_round,
        chunk=chunk,
        memory_budget_gb=budget_gb,
        xla_peak_mb=peak / 2**20,
        data_mb=sum(leaf.nbytes for leaf in jax.tree.leaves(data)) / 2**20,
    )
    return record, lambda: step(state, data, key)


def run(quick: bool):
    reps = 5 if quick else 20
    task = make_task("mlp", SPEC["classes"])
    population_1000 = synthetic_clients(SPEC, 1000, SPEC["examples"])
    points = [
        build_point("clients_per_round", task, population_1000, c, DEFAULT_BUDGET_GB)
        for c in (10, 100, 1000)
    ]
    points.append(build_point("clients_per_round", task, population_1000, 1000, SMALL_BUDGET_GB))
    for population in (100, 100_000):
        data = synthetic_clients(SPEC, population, SPEC["examples"], seed=population)
        points.append(build_point("population", task, data, 100, DEFAULT_BUDGET_GB))
    compile_s = [timed(call, 0)[0] for _, call in points]
    times = [[] for _ in points]
    for _ in range(reps):  # alternate, so drift hits every point alike
        for i, (_, call) in enumerate(points):
            times[i] += timed(call, 1)[1]
    records = []
    for (record, _), point_times, first in zip(points, times, compile_s, strict=True):
        median = statistics.median(point_times)
        record.update(
            seconds_median=median,
            seconds_min=min(point_times),
            seconds_max=max(point_times),
            samples_per_s=record["clients_per_round"] * SPEC["J"] * SPEC["B"] / median,
            compile_s=first,
            reps=len(point_times),
            process_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
        records.append(record)
        print(
            f"{record['scan']:17s} population {record['population']:6d} "
            f"C {record['clients_per_round']:5d} chunk {record['chunk']:5d} "
            f"XLA peak {record['xla_peak_mb']:8.1f} MB data {record['data_mb']:7.1f} MB "
            f"median {median * 1e3:8.2f} ms [{min(point_times) * 1e3:.2f}, "
            f"{max(point_times) * 1e3:.2f}]",
            flush=True,
        )
    return records


def markdown_table(records):
    lines = [
        "| scan | population | clients/round | vectorized at once | budget (GiB) | XLA peak (MB) "
        "| data on device (MB) | round (ms), median [min, max] | samples/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['scan']} | {r['population']} | {r['clients_per_round']} | {r['chunk']} | "
            f"{r['memory_budget_gb']:g} | {r['xla_peak_mb']:.1f} | {r['data_mb']:.1f} | "
            f"{r['seconds_median'] * 1e3:.2f} "
            f"[{r['seconds_min'] * 1e3:.2f}, {r['seconds_max'] * 1e3:.2f}] | "
            f"{r['samples_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repetitions instead of 20")
    parser.add_argument("--json", default="experiments/benchmarks/results/bench_scaling.json")
    args = parser.parse_args()
    records = run(args.quick)
    with open(args.json, "w") as f:
        json.dump(records, f, indent=2)
    print(markdown_table(records))


if __name__ == "__main__":
    run_script(main)
