r"""Many runs in one compiled program: N = 1, 4, 16 seeds vectorized against N separate runs.

  python experiments/benchmarks/bench_seeds.py [--json OUT.json] [--markdown OUT.md] \
      [--sections rounds,processes]

--json defaults to the current record, experiments/benchmarks/results/bench_seeds.json (the
sections not run keep their records there); bench_seeds.md beside it is its table with how it
was measured.

rounds: in this one process, the FedAvg round of workloads.py's workloads over a leading run
  axis of N seeds (`fedjax_sim.runtime.simulate.over_runs`), jitted once per N and timed alternately
  after a warm-up: "mlp" (1000 clients x 50 examples of 64 features, MLP 64-128-10, 100 per
  round, J=5, B=10, vmap) and "lstm_smoke" (LEAF's LSTM on 80-character sequences, 100 clients x
  500, 4 per round, J=2, B=10, map: bench_round.py's --quick size). Run-rounds per second
  = N / seconds per call; "vs N=1" is that rate over the rate of one run.
processes: whole commands, as a user runs them: ``python -m fedjax_sim --config C:smoke
  --config.rounds=R --config.num_seeds=N`` once, against N commands ``--config.seed=s`` one
  after another (start-up, data, compilation and rounds each time), for the digits smoke config
  (the course CNN) and the Shakespeare smoke config (the LSTM). Runs per second = N / wall seconds.
Nothing else may run meanwhile.
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

from fedjax_sim.experiment.script import run_script

NS = (1, 4, 16)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = {  # workload -> (config, extra overrides)
    "cnn (digits smoke)": ("configs/fedavg_digits.py:smoke", []),
    "lstm (shakespeare smoke)": ("configs/fedavg_shakespeare.py:smoke", []),
}


def bench_rounds(reps: int, keep) -> None:
    """The rounds section; ``keep(record)`` takes each record as it is measured."""
    import jax
    import optax
    from workloads import QUICK, WORKLOADS, synthetic_clients

    from fedjax_sim.algorithms.fedavg import fed_avg
    from fedjax_sim.core.tasks import make_task
    from fedjax_sim.runtime.simulate import over_runs, stack_runs

    specs = {
        "mlp": dict(WORKLOADS["mlp"], axis="vmap"),
        "lstm_smoke": dict(WORKLOADS["lstm"], C=QUICK["lstm"]["C"], J=QUICK["lstm"]["J"],
                           axis="map"),
    }  # fmt: skip
    for name, spec in specs.items():
        task = make_task(spec["model"], spec["classes"])
        clients = synthetic_clients(spec, spec["clients"], spec["examples"])
        algorithm = fed_avg(
            task, optax.sgd(spec["lr"]), optax.sgd(1.0), clients_per_round=spec["C"],
            local_steps=spec["J"], batch_size=spec["B"], client_axis=spec["axis"],
        )  # fmt: skip
        calls, compile_s, times = {}, {}, {n: [] for n in NS}
        for n in NS:
            states = stack_runs([algorithm.init(task.model.init(jax.random.key(s)))
                                 for s in range(n)])  # fmt: skip
            keys = stack_runs([jax.random.key(100 + s) for s in range(n)])
            step = jax.jit(over_runs(algorithm.round_fn))
            start = time.perf_counter()
            jax.block_until_ready(step(states, clients, keys))
            compile_s[n] = time.perf_counter() - start
            calls[n] = lambda f=step, s=states, k=keys, c=clients: f(s, c, k)
            print(f"  {name} N={n}: compiled and ran once in {compile_s[n]:.1f}s", flush=True)
        for _ in range(reps):  # alternate, so drift hits every N alike
            for n in NS:
                start = time.perf_counter()
                jax.block_until_ready(calls[n]())
                times[n].append(time.perf_counter() - start)
        one = 1 / statistics.median(times[1])
        for n in NS:
            median = statistics.median(times[n])
            r = dict(
                section="rounds", workload=name, runs=n, seconds_median=median,
                seconds_min=min(times[n]), seconds_max=max(times[n]), compile_s=compile_s[n],
                run_rounds_per_s=n / median, vs_one=(n / median) / one, reps=reps,
                clients_per_round=spec["C"], local_steps=spec["J"], batch_size=spec["B"],
            )  # fmt: skip
            keep(r)
            print(
                f"{name:10s} N={n:2d} {median * 1e3:9.1f} ms/call, "
                f"{r['run_rounds_per_s']:8.1f} run-rounds/s ({r['vs_one']:.2f}x N=1)",
                flush=True,
            )


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_processes(rounds: int, keep) -> None:
    """The processes section; ``keep(record)`` takes each record as it is measured."""
    for name, (config, extra) in COMMANDS.items():
        for n in NS:
            with tempfile.TemporaryDirectory() as tmp:
                base = [sys.executable, "-m", "fedjax_sim", "--config", config, "--quiet",
                        f"--config.rounds={rounds}", f"--config.eval_every={rounds}",
                        f"--config.checkpoint_every={rounds}", *extra]  # fmt: skip
                together = _wall(base + ["--workdir", f"{tmp}/all", f"--config.num_seeds={n}"])
                apart = sum(_wall(base + ["--workdir", f"{tmp}/s{s}", f"--config.seed={s}"])
                            for s in range(n))  # fmt: skip
            keep(dict(
                section="processes", workload=name, runs=n, rounds=rounds,
                one_process_s=together, separate_processes_s=apart,
                runs_per_s_one_process=n / together, runs_per_s_separate=n / apart,
                speedup=apart / together,
            ))  # fmt: skip
            print(
                f"{name}: N={n:2d} one process {together:.1f}s, {n} processes {apart:.1f}s "
                f"({apart / together:.2f}x)",
                flush=True,
            )


def markdown(records) -> str:
    lines = []
    rounds = [r for r in records if r["section"] == "rounds"]
    if rounds:
        lines += [
            "| workload | seeds N | call (ms), median [min, max] | run-rounds/s | vs N=1 | "
            "compile (s) |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['workload']} | {r['runs']} | {r['seconds_median'] * 1e3:.1f} "
            f"[{r['seconds_min'] * 1e3:.1f}, {r['seconds_max'] * 1e3:.1f}] | "
            f"{r['run_rounds_per_s']:.1f} | {r['vs_one']:.2f}x | {r['compile_s']:.1f} |"
            for r in rounds
        ]
    processes = [r for r in records if r["section"] == "processes"]
    if processes:
        lines += ["", "| workload | seeds N | rounds | one process, num_seeds=N (s) | "
                  "N processes (s) | runs/s together | runs/s apart | speed-up |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {r['workload']} | {r['runs']} | {r['rounds']} | {r['one_process_s']:.1f} | "
            f"{r['separate_processes_s']:.1f} | {r['runs_per_s_one_process']:.3f} | "
            f"{r['runs_per_s_separate']:.3f} | {r['speedup']:.2f}x |"
            for r in processes
        ]
    return "\n".join(lines).strip()


def _merged(path: str, sections: list[str]) -> list[dict]:
    """The records already in ``path`` that belong to sections not run now (kept as they are)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in json.load(f) if r["section"] not in sections]


def _write(path: str, records: list[dict]) -> None:
    """Writes ``records`` atomically (a killed bench leaves the previous file or the new one)."""
    with open(path + ".tmp", "w") as f:
        json.dump(records, f, indent=2)
    os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="experiments/benchmarks/results/bench_seeds.json")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--sections", default="rounds,processes")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20, help="rounds of each command")
    args = parser.parse_args()
    sections = args.sections.split(",")
    if unknown := set(sections) - {"rounds", "processes"}:
        parser.error(f"--sections: {sorted(unknown)} unknown; allowed: rounds, processes")
    stamp = dict(date=time.strftime("%Y-%m-%d"), cpus=os.cpu_count())
    # Records of the sections not run now stay; each new record is written as it comes.
    records = _merged(args.json, sections)

    def keep(record):
        records.append({**record, **stamp})
        _write(args.json, records)

    if "rounds" in sections:
        bench_rounds(args.reps, keep)
    if "processes" in sections:
        bench_processes(args.rounds, keep)
    table = markdown(records)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    run_script(main)
