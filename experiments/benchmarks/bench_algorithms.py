r"""What the composable round costs: stateful algorithms against FedAvg, ResNet-20 under each
norm, and rounds per compiled call.

  python experiments/benchmarks/bench_algorithms.py [--json OUT.json] [--markdown OUT.md] \
      [--sections algorithms,resnet,rounds_per_call] [--reps 5]

--json defaults to the current record, experiments/benchmarks/results/bench_algorithms.json;
its table is bench_algorithms.md beside it.

Sections, each workload in its own process with the XLA flags workloads.py gives it:
  algorithms: workloads.py's cnn and lstm workloads (100 clients x 500 examples, 10 per
      round, J=8; B=64 / B=10), the round of FedAvg, FedProx (mu 0.01), SCAFFOLD (option II)
      and FedDyn (alpha 0.01) with the CPU's client axis ("map"), alternately in one process;
      each with its per-client state's bytes (K x parameters for SCAFFOLD and FedDyn).
  resnet: ResNet-20 FedAvg rounds on CIFAR-shaped data (100 clients x 500, 4 per round, J=2,
      B=32, clients as "auto" runs them on CPU) under norm batch, group, layer, none.
  rounds_per_call: workloads.py's mlp workload (1000 clients x 50 examples, J=5, B=10, vmap)
      with 100 and with 10 clients per round: rounds per second of `simulate` running 200
      rounds at rounds_per_call 1, 10 and 100.
Each record: section, workload, variant, seconds per round (median/min/max of --reps timed
repetitions), ratio to the section's baseline, compile_s, and per-client state bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import optax
from workloads import WORKLOADS, matmul_peak_gflops, synthetic_clients

from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.algorithms.feddyn import feddyn_parts
from fedjax_sim.algorithms.fedprox import fedprox_parts
from fedjax_sim.algorithms.scaffold import scaffold_parts
from fedjax_sim.core.engine import Execution, resolve_client_axis, resolve_unroll
from fedjax_sim.core.round import federated_algorithm, per_client_state_bytes
from fedjax_sim.core.selection import uniform
from fedjax_sim.core.tasks import cross_entropy, make_task
from fedjax_sim.experiment.script import run_script
from fedjax_sim.runtime.simulate import simulate

SIMULATED_ROUNDS = 200
RESNET = dict(WORKLOADS["cnn"], C=4, J=2, B=32)


def _timed(fn, _=None):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def _alternate(runners: dict, reps: int) -> dict:
    """Compile-and-run once each, then ``reps`` timed runs alternating between them."""
    compile_s = {name: _timed(fn, None) for name, fn in runners.items()}
    times = {name: [] for name in runners}
    for _ in range(reps):
        for name, fn in runners.items():
            times[name].append(_timed(fn, None))
    return compile_s, times


def _round_runner(parts, task, spec, data, execution):
    algo = federated_algorithm(
        parts,
        task=task,
        sampler=uniform(spec["C"]),
        local_steps=spec["J"],
        batch_size=spec["B"],
        execution=execution,
    )
    state = algo.init(task.model.init(jax.random.key(0)))
    step = jax.jit(algo.round_fn)
    return (lambda: step(state, data, jax.random.key(1))), per_client_state_bytes(state)


def algorithms_section(workload, reps):
    spec = WORKLOADS[workload]
    task = make_task(spec["model"], spec["classes"])
    data = synthetic_clients(spec, spec["clients"], spec["examples"])
    execution = Execution(resolve_client_axis("auto", task.model), unroll=spec["unroll"])
    objective = cross_entropy(task)
    client_tx, server_tx = optax.sgd(spec["lr"]), optax.sgd(1.0)
    common = {"unroll": spec["unroll"]}
    k = spec["clients"]
    parts = {
        "fedavg": fedavg_parts(objective, client_tx, server_tx, **common),
        "fedprox": fedprox_parts(objective, client_tx, server_tx, mu=0.01, **common),
        "scaffold": scaffold_parts(
            objective,
            client_tx,
            server_tx,
            num_clients=k,
            client_learning_rate=spec["lr"],
            **common,
        ),  # fmt: skip
        "feddyn": feddyn_parts(objective, client_tx, num_clients=k, alpha=0.01, **common),
    }
    built = {name: _round_runner(p, task, spec, data, execution) for name, p in parts.items()}
    compile_s, times = _alternate({name: b[0] for name, b in built.items()}, reps)
    return _records("algorithms", workload, times, compile_s, "fedavg",
                    {name: b[1] for name, b in built.items()}, execution.client_axis)  # fmt: skip


def resnet_section(reps):
    spec = RESNET
    data = synthetic_clients(spec, spec["clients"], spec["examples"])
    runners, state_bytes, axis = {}, {}, None
    for norm in ("batch", "group", "layer", "none"):
        task = make_task("resnet20", 100, norm=norm)
        execution = Execution(
            resolve_client_axis("auto", task.model), unroll=resolve_unroll(task.model)
        )
        axis = execution.client_axis
        parts = fedavg_parts(
            cross_entropy(task), optax.sgd(spec["lr"]), optax.sgd(1.0), unroll=execution.unroll
        )
        runners[norm], state_bytes[norm] = _round_runner(parts, task, spec, data, execution)
    compile_s, times = _alternate(runners, reps)
    return _records("resnet", "resnet20", times, compile_s, "batch", state_bytes, axis)


def rounds_per_call_section(reps):
    records = []
    for clients_per_round in (100, 10):
        spec = dict(WORKLOADS["mlp"], C=clients_per_round)
        task = make_task("mlp", spec["classes"])
        data = synthetic_clients(spec, spec["clients"], spec["examples"])
        parts = fedavg_parts(cross_entropy(task), optax.sgd(spec["lr"]), optax.sgd(1.0))
        algo = federated_algorithm(
            parts, sampler=uniform(spec["C"]), local_steps=spec["J"], batch_size=spec["B"]
        )
        state = algo.init(task.model.init(jax.random.key(0)))

        def run(per_call, algo=algo, data=data, state=state):
            return lambda: simulate(
                algo.round_fn, data, SIMULATED_ROUNDS, state=state, key=jax.random.key(1),
                progress=False, rounds_per_call=per_call,
            )[0]  # fmt: skip

        runners = {f"rounds_per_call={k}": run(k) for k in (1, 10, 100)}
        compile_s, times = _alternate(runners, reps)
        per_round = {name: [t / SIMULATED_ROUNDS for t in ts] for name, ts in times.items()}
        records += _records(
            "rounds_per_call", f"mlp C={clients_per_round}", per_round, compile_s,
            "rounds_per_call=1", {}, "vmap",
        )  # fmt: skip
    return records


def _records(section, workload, times, compile_s, baseline, state_bytes, axis):
    base = statistics.median(times[baseline])
    return [
        dict(
            section=section,
            workload=workload,
            variant=name,
            client_axis=axis,
            s_per_round_median=statistics.median(ts),
            s_per_round_min=min(ts),
            s_per_round_max=max(ts),
            rounds_per_s=1 / statistics.median(ts),
            ratio_to_baseline=statistics.median(ts) / base,
            compile_s=compile_s[name],
            per_client_state_bytes=state_bytes.get(name, 0),
            reps=len(ts),
            xla_flags=os.environ.get("XLA_FLAGS", ""),
        )
        for name, ts in times.items()
    ]


def child(section, workload, reps, out):
    if section == "algorithms":
        records = algorithms_section(workload, reps)
    elif section == "resnet":
        records = resnet_section(reps)
    else:
        records = rounds_per_call_section(reps)
    peak = matmul_peak_gflops()
    for record in records:
        record["matmul_peak_gflops"] = peak
    with open(out, "w") as f:
        json.dump(records, f)


def markdown(records) -> str:
    lines = [
        "| section | workload | variant | axis | ms per round, median [min, max] | vs baseline "
        "| rounds/s | per-client state (MB) | compile (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['section']} | {r['workload']} | {r['variant']} | {r['client_axis']} | "
            f"{1e3 * r['s_per_round_median']:.2f} [{1e3 * r['s_per_round_min']:.2f}, "
            f"{1e3 * r['s_per_round_max']:.2f}] | {r['ratio_to_baseline']:.3f}x | "
            f"{r['rounds_per_s']:.1f} | {r['per_client_state_bytes'] / 1e6:.1f} | "
            f"{r['compile_s']:.1f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default="experiments/benchmarks/results/bench_algorithms.json")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--sections", default="algorithms,resnet,rounds_per_call")
    parser.add_argument("--child", nargs=3, metavar=("SECTION", "WORKLOAD", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(*args.child[:2], args.reps, args.child[2])
        return
    jobs = []
    for section in args.sections.split(","):
        if section == "algorithms":
            jobs += [(section, "cnn"), (section, "lstm")]
        elif section == "resnet":
            jobs.append((section, "cnn"))
        else:
            jobs.append((section, "mlp"))
    records = []
    for section, workload in jobs:
        flags = WORKLOADS[workload]["xla_flags"].replace(
            "--xla_force_host_platform_device_count=2", ""
        )
        out = os.path.abspath(f"{args.json}.{section}.{workload}.part")
        env = dict(os.environ, XLA_FLAGS=flags.strip())
        command = [sys.executable, __file__, "--reps", str(args.reps), "--child", section,
                   workload, out]  # fmt: skip
        print(f"{section} / {workload} ...", flush=True)
        subprocess.run(command, env=env, check=True)
        with open(out) as f:
            part = json.load(f)
        os.remove(out)
        print(markdown(part), flush=True)
        records += part
    with open(args.json, "w") as f:
        json.dump(records, f, indent=2)
    table = markdown(records)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    run_script(main)
