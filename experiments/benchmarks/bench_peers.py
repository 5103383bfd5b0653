r"""What a user gets by default against the peers: our round as the CLI's ``auto`` settings build
it, PyTorch's plain per-client loop and pfl-research's FedAvg, alternated in one invocation.

  .venv/bin/python experiments/benchmarks/bench_peers.py --peers-python PY \
      [--workloads cnn,lstm,mlp] [--runs 3] [--rounds 5] [--json OUT.json] [--markdown OUT.md]

PY is a Python whose environment holds the peers, outside this project (they are not its
dependencies): ``python -m venv venv-peers && venv-peers/bin/pip install torch==2.13.0 numpy
pfl==0.6.0``. Without it only our rows are measured.

Each workload (workloads.py: the course CNN, LEAF's LSTM, 100 of 1,000 small clients on an MLP)
runs in its own process, started with the XLA flags and malloc arena cap that ``xla_flags="auto"``
sets for its model (fedjax_sim.experiment.xla_flags), the heap trimmed after the model's init and
after each compilation (fedjax_sim.runtime.host_memory), so the round and its memory are what
``python -m fedjax_sim`` runs: the
config's ``client_axis``, ``client_devices``, ``unroll_local_steps`` and ``model.conv`` all
``"auto"``, resolved by `fedjax_sim.config.build.execution_for`, on the same synthetic data the
peers get (CIFAR-style augmentation off on every side). The peers run in worker processes of
their own (torch_peer.py, pfl_peer.py). After every side's warm-up round, the sides take turns:
each run times ``--rounds`` rounds of ours, then of each peer (the order rotates per run), so
that drift hits every side alike; every run is reported, not only the best.

Figures: median seconds per round of each run, the ratio of the fastest peer's median to ours
in each run, our share of the float32 matmul peak (XLA's FLOPs of the round over the better of
the 2048^2 matmul rates measured in the workload's process and under XLA's default flags), and
each process's peak resident set from its start (our compilation, the peers' model and data
building) to the last timed round (``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PEERS = {"pytorch_loop": "torch_peer.py", "pfl_research": "pfl_peer.py"}
HERE = os.path.dirname(os.path.abspath(__file__))


def measure(name: str, runs: int, rounds: int, peers_python: str | None, quick: bool) -> dict:
    """One workload's record, in this process (started with its model's auto XLA flags)."""
    import jax
    from workloads import (
        QUICK,
        WORKLOADS,
        auto_round,
        cpu_model,
        flops_per_sample,
        matmul_peak_gflops,
        peak_rss_mb,
        peer_round,
    )

    from fedjax_sim.experiment.xla_flags import apply_malloc_arenas

    spec = dict(WORKLOADS[name], **({k: QUICK[name][k] for k in ("C", "J")
                                     if k in QUICK[name]} if quick else {}))  # fmt: skip
    apply_malloc_arenas("auto", spec["model"])  # as the CLI does, before the backend starts
    ours, settings = auto_round(name, spec)
    sides, pids = {"ours_auto": ours}, {"ours_auto": os.getpid()}
    peer_versions = {}
    for peer, script in PEERS.items():
        if peers_python:
            pids[peer], sides[peer] = peer_round(script, spec, peers_python)
            peer_versions[peer] = sides[peer].ready
    compile_s = ours()  # the first call compiles
    print(f"  {name} ours_auto: compiled and ran once in {compile_s:.1f}s {settings}", flush=True)
    order = list(sides)
    times = {side: [] for side in sides}  # [run][round]
    for run in range(runs):
        for side in order[run % len(order) :] + order[: run % len(order)]:
            times[side].append([sides[side]() for _ in range(rounds)])
        medians = {side: statistics.median(times[side][-1]) for side in sides}
        print(f"  {name} run {run + 1}: " + ", ".join(f"{s} {m:.3f}s" for s, m in medians.items()),
              flush=True)  # fmt: skip
    # read before the bench's own measurements below (a matmul, an unrolled step's compile)
    peak_rss = {side: peak_rss_mb(pid) for side, pid in pids.items()}
    peak = matmul_peak_gflops()
    round_flops = flops_per_sample(spec) * spec["C"] * spec["J"] * spec["B"]
    return dict(
        workload=name, settings=settings, seconds=times, peak_rss_mb=peak_rss,
        round_gflop=round_flops / 1e9, matmul_peak_gflops=peak, compile_s=compile_s,
        clients_per_round=spec["C"], local_steps=spec["J"], batch_size=spec["B"],
        xla_flags=os.environ.get("XLA_FLAGS", ""), jax=jax.__version__, cpu=cpu_model(),
        cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d"), quick=quick,
        peer_versions=peer_versions, rounds_per_run=rounds,
    )  # fmt: skip


def auto_flags(model: str) -> str:
    """The XLA flags ``xla_flags="auto"`` gives ``model`` (set before JAX starts)."""
    from fedjax_sim.experiment.xla_flags import RECOMMENDED_CPU_XLA_FLAGS

    return RECOMMENDED_CPU_XLA_FLAGS.get(model, "")


def summary_rows(record: dict) -> list[dict]:
    """Per run: each side's median round, ours over the fastest peer, our share of peak."""
    rows = []
    peers = [s for s in record["seconds"] if s != "ours_auto"]
    for run, ours in enumerate(record["seconds"]["ours_auto"]):
        row = {"run": run + 1, "ours_auto": statistics.median(ours)}
        for peer in peers:
            row[peer] = statistics.median(record["seconds"][peer][run])
        fastest = min((row[p] for p in peers), default=None)
        row["speedup_vs_fastest_peer"] = fastest / row["ours_auto"] if fastest else None
        peak = max(record["matmul_peak_gflops"], record.get("default_flags_peak_gflops", 0))
        row["pct_matmul_peak"] = 100 * record["round_gflop"] / row["ours_auto"] / peak
        rows.append(row)
    return rows


def render(records: list[dict]) -> str:
    """The Markdown tables: one row per workload and run, then peak memory per workload."""
    sides = ["ours_auto", *PEERS]
    first = records[0]
    versions = "; ".join(f"{p}: {v}" for p, v in first.get("peer_versions", {}).items())
    runs = len(first.get("seconds", {}).get("ours_auto", []))
    runs_flag = f" --runs {runs}" if runs not in (0, 3) else ""  # 3: the default
    lines = [
        f"{first.get('date', '?')}, {first.get('cpus', '?')} x {first.get('cpu', '?')}, jax "
        f"{first.get('jax', '?')}" + (f"; {versions}" if versions else "") + ". Command: "
        "`.venv/bin/python experiments/benchmarks/bench_peers.py --peers-python "
        f"venv-peers/bin/python{runs_flag}`. Every run is listed; a run = "
        f"{first.get('rounds_per_run', '?')} timed rounds per side, sides alternated. "
        "% matmul peak: XLA's FLOPs of the round over "
        "the better of two 2048^2 matmul rates, one in the workload's process (under its XLA "
        "flags), one in a process under XLA's default flags "
        f"({first.get('default_flags_peak_gflops', float('nan')):.0f} GFLOP/s).",
        "",
        "| workload | run | ours (auto), s/round | PyTorch loop | pfl-research | fastest peer / "
        "ours | ours, % matmul peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records:
        for row in summary_rows(record):
            cells = [f"{row[s]:.4f}" if s in row else "-" for s in sides]
            ratio = row["speedup_vs_fastest_peer"]
            lines.append(
                f"| {record['workload']} | {row['run']} | " + " | ".join(cells)
                + f" | {'-' if ratio is None else f'**{ratio:.2f}x**'} | "
                f"{row['pct_matmul_peak']:.1f} |"
            )  # fmt: skip
    lines += ["", "| workload | ours: auto settings | peak RSS (MB): ours | PyTorch loop | "
              "pfl-research |", "|---|---|---|---|---|"]  # fmt: skip
    for record in records:
        s = record["settings"]
        conv = f", conv {s['model_conv']}" if s["model_conv"] else ""
        setting = (f"{s['client_axis']} x {s['client_devices']} device(s), unroll "
                   f"{s['unroll_local_steps']}{conv}; XLA_FLAGS "
                   f"`{record['xla_flags'] or 'none'}`")  # fmt: skip
        mem = [f"{record['peak_rss_mb'][s]:.0f}" if s in record["peak_rss_mb"] else "-"
               for s in sides]  # fmt: skip
        lines.append(f"| {record['workload']} | {setting} | " + " | ".join(mem) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-python", default=None)
    parser.add_argument("--workloads", default="cnn,lstm,mlp")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per side and run")
    parser.add_argument("--quick", action="store_true", help="workloads.py's fewer clients/steps")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "bench_peers.json"))
    parser.add_argument("--markdown", default=os.path.join(HERE, "results", "bench_peers.md"))
    parser.add_argument("--inner", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from workloads import AUTO_CONFIGS, default_flags_peak_gflops

    names = args.workloads.split(",")
    unknown = sorted(set(names) - set(AUTO_CONFIGS))
    if unknown:
        raise ValueError(f"--workloads: unknown {unknown}; allowed: {', '.join(AUTO_CONFIGS)}")
    if args.runs < 3 and not args.quick:
        raise ValueError("--runs: at least 3 (every run is reported; one run proves little)")
    if args.peers_python and not os.path.exists(args.peers_python):
        raise ValueError(f"--peers-python: no such file {args.peers_python!r}")
    if args.inner:
        record = measure(names[0], args.runs, args.rounds, args.peers_python, args.quick)
        with open(args.inner, "w") as f:
            json.dump(record, f)
        return
    records, default_peak = [], default_flags_peak_gflops()
    for name in names:
        env = {**os.environ, "XLA_FLAGS": auto_flags(name)}
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, __file__, "--inner", out.name, "--workloads", name,
                       "--runs", str(args.runs), "--rounds", str(args.rounds)]  # fmt: skip
            command += ["--peers-python", args.peers_python] if args.peers_python else []
            command += ["--quick"] if args.quick else []
            subprocess.run(command, env=env, check=True)
            with open(out.name) as f:
                records.append(dict(json.load(f), default_flags_peak_gflops=default_peak))
    table = render(records)
    print(table)
    for path, text in ((args.json, json.dumps(records, indent=1)), (args.markdown, table + "\n")):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    from fedjax_sim.experiment.script import run_script

    run_script(main)
