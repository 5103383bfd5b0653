r"""Throughput of one FedAvg round under each client-axis formulation, against the centralized step.

  python experiments/benchmarks/bench_round.py [--quick] [--json OUT.json] [--markdown OUT.md]

--json defaults to the current record, experiments/benchmarks/results/bench_round.json (redraw
its tables with --render); its tables are bench_round.md beside it.

Workloads: cnn, lstm and mlp of workloads.py (synthetic data of the real shapes: the course CNN,
LEAF's LSTM, 1000 small clients on an MLP).
--quick runs 4 clients x 2 local steps per round for the CNN and the LSTM (same shapes per step,
so the same per-sample speed up to per-round overheads) without the CNN's chunked, sequential and
2-device rows nor the LSTM's vmap, chunked and sequential rows, 3 repetitions, and the scaling
scans of bench_scaling.py with 5 repetitions: under 3 minutes.
Formulations, all measured in this one process, alternately, after their own warm-up:
  auto: the headline, what a user gets: the round as the CLI builds it with every execution
        setting "auto" (workloads.auto_round), on as many host devices as the CLI's
        xla_flags="auto" makes for the model (the other rows tell the formulations apart);
  centralized: one jitted optimizer step at batch B (the FLOP-equal reference, per sample);
  vmap / map / chunked / sequential: the whole round as ONE compiled call, clients vectorized,
        mapped with `lax.map`, mapped in vectorized chunks, or unrolled one after another;
  map_direct (the CNN): `map` with the direct loop-friendly convolution (model.conv
        "loop_friendly") where the CPU default computes the second layer by Winograd's;
  sharded: the same one call with the clients split over the process's 2 host devices
        (`jax.shard_map`), each running its half by the workload's best formulation;
  python_loop: a Python loop over the round's clients calling a jitted one-client update, then a
        jitted aggregation and server step;
  python_loop_sharded: the same loop placing client c on host device c mod 2, so that JAX's
        asynchronous dispatch runs two clients at a time (the loop's own use of both devices);
  pytorch_loop: with --torch-python PY (a virtualenv holding torch), PyTorch's plain per-client
        loop of torch_peer.py (this folder) in a worker process, its rounds alternated with ours.
FLOPs per sample come from XLA's cost analysis of one optimizer step with every loop unrolled
(cost analysis counts a loop body once). A record's matmul peak is the better of two 2048^2
float32 matmul rates: in the workload's process and under XLA's default flags; the table's
"% matmul peak" is against the best of the run's records (one machine, measured in each process
at a different moment of its noise). Each record: workload, formulation, samples_per_s,
gflops_per_s, pct_matmul_peak (of its own process's peak), seconds (median/min/max of the timed
repetitions), compile_s, and the XLA_FLAGS in force.
The records of bench_scaling.py (clients per round 10/100/1000 with time and XLA's peak memory,
population 100 vs 100,000) follow in the same JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from bench_scaling import markdown_table as scaling_table
from workloads import (
    QUICK,
    WORKLOADS,
    auto_host_devices,
    auto_round,
    cpu_model,
    default_flags_peak_gflops,
    flops_per_sample,
    matmul_peak_gflops,
    peer_round,
    synthetic_clients,
    timed,
)

from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.algorithms.fedavg import fed_avg
from fedjax_sim.core.aggregation import client_weights
from fedjax_sim.core.engine import client_mesh_for
from fedjax_sim.core.local import make_local_steps
from fedjax_sim.core.tasks import cross_entropy, make_task
from fedjax_sim.data.client_data import round_batch_plan, sample_clients
from fedjax_sim.experiment.script import run_script

FORMULATIONS = (
    "auto",
    "centralized",
    "vmap",
    "map",
    "map_direct",
    "chunked",
    "sequential",
    "sharded",
    "python_loop",
    "python_loop_sharded",
    "pytorch_loop",
)
SLOW_CALL_S = 30.0  # a formulation whose warm-up call takes longer is timed once


def python_loop_round(task, client_tx, server_tx, spec, devices=None):
    """A round as a Python loop over clients of a jitted one-client update.

    With ``devices``, client c runs on ``devices[c % len(devices)]`` (its inputs are placed
    there, so JAX dispatches it there, asynchronously): the loop's own use of several devices.
    """
    local = make_local_steps(cross_entropy(task), client_tx, unroll=spec["unroll"])
    server_chain_init = server_tx.init
    devices = devices or [None]

    @jax.jit
    def plan(key, data):
        ids = sample_clients(jax.random.fold_in(key, 0), data.num_clients, spec["C"])
        idx, mask = round_batch_plan(
            jax.random.fold_in(key, 1), data, ids, num_steps=spec["J"], batch_size=spec["B"]
        )
        return ids, idx, mask, client_weights(data.counts_K[ids], "examples")

    @jax.jit
    def one_client(params, data, idx, mask, rng):
        result = local(params, {}, client_tx.init(params), data, idx, mask, rng, None)
        return jax.tree.map(jnp.subtract, result.params, params)

    @jax.jit
    def server_step(params, opt_state, deltas, weights):
        mean = jax.tree.map(
            lambda *d: sum(weights[c] * x for c, x in enumerate(d)) / weights.sum(), *deltas
        )
        updates, opt_state = server_tx.update(jax.tree.map(jnp.negative, mean), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    placed = {}  # the replicated inputs on each device, placed once

    def on(device, tree):
        return tree if device is None else jax.device_put(tree, device)

    def run(params, opt_state, data, key):
        ids, idx, mask, weights = plan(key, data)
        if not placed:
            placed.update({d: on(d, data) for d in devices})
        per_device = {d: on(d, (params, idx, mask, key)) for d in devices}
        deltas = []
        for c in range(spec["C"]):
            device = devices[c % len(devices)]
            p, i, m, k = per_device[device]
            deltas.append(one_client(p, placed[device], i[c], m[c], jax.random.fold_in(k, c)))
        deltas = [on(devices[0], d) for d in deltas]
        return server_step(params, opt_state, deltas, weights)

    return run, server_chain_init


def torch_peer_round(spec, torch_python):
    """A function running one round of the PyTorch peer (a worker process kept for the run)."""
    return peer_round("torch_peer.py", spec, torch_python)[1]


def bench_workload(name, spec, formulations, reps, torch_python=None):
    data = synthetic_clients(spec, spec["clients"], spec["examples"])
    task = make_task(spec["model"], spec["classes"])
    reference_task = (
        make_task(spec["model"], spec["classes"], **spec["reference_task"])
        if "reference_task" in spec
        else task
    )
    params = task.model.init(jax.random.key(0))
    client_tx, server_tx = optax.sgd(spec["lr"]), optax.sgd(1.0)
    round_samples = spec["C"] * spec["J"] * spec["B"]
    runners, auto_settings = {}, None
    for formulation in formulations:
        if formulation == "auto":
            run, auto_settings = auto_round(name, spec, auto_host_devices(spec["model"]))
            runners[formulation] = (run, round_samples)
        elif formulation == "centralized":
            algo = centralized(
                reference_task, client_tx, batch_size=spec["B"], unroll=spec["unroll"]
            )
            state, step = algo.init(params), jax.jit(algo.round_fn)
            runners[formulation] = (
                lambda s=state, f=step: f(s, data, jax.random.key(1)),
                spec["B"],
            )
        elif formulation == "pytorch_loop":
            if torch_python:
                runners[formulation] = (torch_peer_round(spec, torch_python), round_samples)
        elif formulation in ("python_loop", "python_loop_sharded"):
            devices = jax.devices() if formulation == "python_loop_sharded" else None
            run, server_init = python_loop_round(
                reference_task, client_tx, server_tx, spec, devices
            )
            opt_state = server_init(params["params"])
            runners[formulation] = (
                lambda r=run, o=opt_state: r(params["params"], o, data, jax.random.key(1)),
                round_samples,
            )
        else:
            axis, mesh, row_task = formulation, None, task
            if formulation == "map_direct":
                axis, row_task = (
                    "map",
                    make_task(spec["model"], spec["classes"], **spec["direct_task"]),
                )
            if formulation == "sharded":
                axis, mesh = spec["sharded"], client_mesh_for(0, spec["C"])
            algo = fed_avg(
                row_task,
                client_tx,
                server_tx,
                clients_per_round=spec["C"],
                local_steps=spec["J"],
                batch_size=spec["B"],
                client_axis=axis,
                unroll_local_steps=spec["unroll"],
                chunk_size=max(spec["C"] // 2, 1),
                client_mesh=mesh,
            )
            state, step = algo.init(params), jax.jit(algo.round_fn)
            runners[formulation] = (
                lambda s=state, f=step: f(s, data, jax.random.key(1)),
                round_samples,
            )
    compile_s, times = {}, {f: [] for f in runners}
    for formulation, (fn, _) in runners.items():
        compile_s[formulation], _ = timed(fn, 0)
        print(
            f"  {name} {formulation}: compiled and ran once in {compile_s[formulation]:.1f}s",
            flush=True,
        )
    for rep in range(reps):  # alternate, so drift hits every formulation alike
        for formulation, (fn, _) in runners.items():
            if rep and times[formulation][0] > SLOW_CALL_S:
                continue
            times[formulation] += timed(fn, 1)[1]
    results = {f: (compile_s[f], times[f], runners[f][1]) for f in runners}
    return results, auto_settings


def devices_of(formulation, auto_settings):
    """The host devices a formulation's round ran on."""
    if formulation == "auto":
        return auto_settings["client_devices"]
    return jax.device_count() if formulation.endswith("sharded") else 1


def measure(name, formulations, reps, quick, torch_python=None, default_peak=0.0):
    """This process's records for workload ``name`` (under the XLA_FLAGS it was started with).

    % matmul peak is against the better of this process's 2048^2 matmul rate and
    ``default_peak`` (the rate under XLA's default flags, `default_flags_peak_gflops`): the CNN's
    flag and a host split into devices slow the matmul itself, which would flatter the round.
    """
    spec = dict(WORKLOADS[name], **(QUICK[name] if quick else {}))
    formulations = [f for f in formulations if f not in spec.get("skip", ())]
    if "direct_task" not in spec:  # no choice of convolution
        formulations = [f for f in formulations if f != "map_direct"]
    if client_mesh_for(0, spec["C"]) is None:  # one device, or C not divisible over them
        formulations = [f for f in formulations if f not in ("sharded", "python_loop_sharded")]
    peak = max(matmul_peak_gflops(), default_peak)
    per_sample = flops_per_sample(spec)
    results, auto_settings = bench_workload(name, spec, formulations, reps, torch_python)
    records = []
    for formulation, (compile_s, times, samples) in results.items():
        median = statistics.median(times)
        gflops = per_sample * samples / median / 1e9
        records.append(
            dict(
                workload=name,
                formulation=formulation,
                per_device=spec["sharded"] if formulation == "sharded" else None,
                devices=devices_of(formulation, auto_settings),
                auto_settings=auto_settings if formulation == "auto" else None,
                torch_threads=os.cpu_count() if formulation == "pytorch_loop" else None,
                samples_per_s=samples / median,
                gflops_per_s=gflops,
                pct_matmul_peak=100 * gflops / peak,
                seconds_median=median,
                seconds_min=min(times),
                seconds_max=max(times),
                compile_s=compile_s,
                samples_per_call=samples,
                reps=len(times),
                flops_per_sample=per_sample,
                clients_per_round=spec["C"],
                local_steps=spec["J"],
                batch_size=spec["B"],
                unroll_local_steps=spec["unroll"],
                xla_flags=os.environ.get("XLA_FLAGS", ""),
                matmul_peak_gflops=peak,
                quick=quick,
                date=time.strftime("%Y-%m-%d"),
                cpu=cpu_model(),
                cpus=os.cpu_count(),
                jax=jax.__version__,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            )
        )
        r = records[-1]
        print(
            f"{name:5s} {formulation:12s} {r['samples_per_s']:9.1f} samples/s "
            f"{gflops:7.1f} GFLOP/s ({r['pct_matmul_peak']:5.1f}% of {peak:.0f}) "
            f"median {median:.3f}s [{min(times):.3f}, {max(times):.3f}] "
            f"compile {compile_s:.1f}s",
            flush=True,
        )
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer clients and steps per round, 3 repetitions"
    )
    parser.add_argument("--json", default="experiments/benchmarks/results/bench_round.json")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--formulations", default=",".join(FORMULATIONS))
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument(
        "--same-flags", action="store_true", help="keep this process's XLA_FLAGS for every workload"
    )
    parser.add_argument(
        "--torch-python", default=None,
        help="a Python with torch installed: adds the pytorch_loop row (torch_peer.py)",
    )  # fmt: skip
    parser.add_argument("--no-scaling", action="store_true", help="skip bench_scaling.py")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--default-peak", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--render", metavar="JSON", help="only print the tables of a results JSON")
    args = parser.parse_args()
    if args.render:
        with open(args.render) as f:
            print(render(json.load(f)))
        return
    unknown = sorted(set(args.workloads.split(",")) - set(WORKLOADS))
    if unknown:
        raise ValueError(f"--workloads: unknown {unknown}; allowed: {', '.join(WORKLOADS)}")
    reps = args.reps or (3 if args.quick else 5)
    formulations = args.formulations.split(",")
    if args.inner:
        records = measure(
            args.workloads, formulations, reps, args.quick, args.torch_python, args.default_peak
        )
        with open(args.json, "w") as f:
            json.dump(records, f)
        return
    records, default_peak = [], default_flags_peak_gflops()
    for name in args.workloads.split(","):
        env = dict(os.environ)
        if not args.same_flags:
            env["XLA_FLAGS"] = WORKLOADS[name]["xla_flags"]
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [
                sys.executable,
                __file__,
                "--inner",
                "--workloads",
                name,
                "--json",
                out.name,
                "--formulations",
                args.formulations,
                "--reps",
                str(reps),
                "--default-peak",
                str(default_peak),
            ] + (["--torch-python", args.torch_python] if args.torch_python else [])
            subprocess.run(command + (["--quick"] if args.quick else []), env=env, check=True)
            with open(out.name) as f:
                records += json.load(f)
    scaling = []
    if not args.no_scaling:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_scaling.py")
            command = [sys.executable, script, "--json", out.name]
            subprocess.run(command + (["--quick"] if args.quick else []), check=True)
            with open(out.name) as f:
                scaling = json.load(f)
    with open(args.json, "w") as f:
        json.dump(records + scaling, f, indent=2)
    table = render(records + scaling)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


def markdown_table(records):
    """The formulations' table; "% matmul peak" against the best matmul rate of the run (every
    workload's process measured one: the machine is the same, only the noise differs)."""
    run_peak = max((r["matmul_peak_gflops"] for r in records if "formulation" in r), default=np.nan)
    lines = [
        "| workload | formulation | samples/s | GFLOP/s | % matmul peak | round or step (s), "
        "median [min, max] | vs centralized | vs python_loop | vs best loop | vs pytorch_loop |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def rate(workload, formulation):
        return next(
            (
                r["samples_per_s"]
                for r in records
                if r.get("workload") == workload and r.get("formulation") == formulation
            ),
            np.nan,
        )

    for r in records:
        if "formulation" not in r:
            continue  # a bench_scaling.py record
        central = r["samples_per_s"] / rate(r["workload"], "centralized")
        loop = r["samples_per_s"] / rate(r["workload"], "python_loop")
        best_loop = r["samples_per_s"] / np.nanmax(
            [rate(r["workload"], "python_loop"), rate(r["workload"], "python_loop_sharded")]
        )
        peer = r["samples_per_s"] / rate(r["workload"], "pytorch_loop")
        name = r["formulation"]
        if r.get("per_device"):
            name += f" ({r['per_device']} x {r['devices']} devices)"
        elif r["formulation"] == "auto":
            name = f"**auto** ({r['auto_settings']['client_axis']} x {r['devices']} device(s))"
        elif r["formulation"] == "python_loop_sharded":
            name = f"python_loop ({r['devices']} devices)"
        lines.append(
            f"| {r['workload']} | {name} | {r['samples_per_s']:.0f} | "
            f"{r['gflops_per_s']:.1f} | {100 * r['gflops_per_s'] / run_peak:.1f} | "
            f"{r['seconds_median']:.3f} [{r['seconds_min']:.3f}, {r['seconds_max']:.3f}]"
            f" | {central:.2f}x | {loop:.2f}x | {best_loop:.2f}x | "
            + ("-" if np.isnan(peer) else f"{peer:.2f}x")
            + " |"
        )
    return "\n".join(lines)


def render(records):
    """Both Markdown tables of a results JSON (round formulations, then scaling scans)."""
    scaling = [r for r in records if "scan" in r]
    table = markdown_table(records)
    return table + ("\n\n" + scaling_table(scaling) if scaling else "")


if __name__ == "__main__":
    run_script(main)
