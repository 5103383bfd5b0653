r"""The benchmarks' workloads (synthetic data of the real shapes) and their timers.

  cnn:  the course CNN on CIFAR-100-shaped images, 100 clients x 500 examples, 10 clients per
        round, J=8, B=64, SGD.
  lstm: LEAF's LSTM on 80-character sequences, 100 clients x 500 sequences, 10 per round, J=8,
        B=10.
  mlp:  many small clients: 1000 clients x 50 examples of 64 features, MLP 64-128-10, 100 clients
        per round, J=5, B=10.

Also what several scripts measure with: the machine's matmul peak and CPU model, XLA's FLOPs of
a workload's step, a peer's worker process (`peer_round`) and a process's peak memory. Every
bench script in this folder imports them from here (bench_round.py, bench_peers.py,
bench_scaling.py, bench_algorithms.py, bench_simulate.py, bench_seeds.py), so that no two
scripts import each other.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.config.build import build_algorithm, execution_for
from fedjax_sim.config.files import load_config, with_overrides
from fedjax_sim.core.tasks import make_task
from fedjax_sim.data.client_data import client_data_from_indices
from fedjax_sim.experiment.assembly import build_task
from fedjax_sim.experiment.xla_flags import RECOMMENDED_CPU_XLA_FLAGS
from fedjax_sim.models.cnn import resolve_conv
from fedjax_sim.runtime.host_memory import release_init_memory, trim_after_each_compile

HERE = os.path.dirname(os.path.abspath(__file__))
AUTO_CONFIGS = {  # the config each workload's auto settings come from
    "cnn": "configs/fedavg_cifar100.py",
    "lstm": "configs/fedavg_shakespeare.py",
    "mlp": "configs/fedavg_digits.py",
}

# Each workload runs in its own process with the XLA flags that serve it best on CPU (flags are
# process-wide): the CNN with XLA:CPU's YNNPACK fusions off (2-3x faster convolutions), the LSTM
# and the MLP with YNNPACK on (that flag makes the LSTM 2.5x slower). The CNN's local steps are
# unrolled as `unroll_local_steps="auto"` does on CPU (~8% faster than rolled with the
# loop-friendly convolution; XLA's own would be 20x slower rolled, jax-ml/jax#12868).
# Every process splits the CPU into 2 host devices so that the "sharded" row can spread the
# round's clients over them (the workload's best one-device formulation per device); the other
# rows use one.
TWO_HOST_DEVICES = "--xla_force_host_platform_device_count=2"
WORKLOADS = {
    "cnn": dict(
        model="cnn",
        classes=100,
        clients=100,
        examples=500,
        C=10,
        J=8,
        B=64,
        lr=0.05,
        unroll=True,
        xla_flags=f"--xla_cpu_experimental_ynn_fusion_type= {TWO_HOST_DEVICES}",
        sharded="map",
        # The centralized step and the Python loop run XLA's own convolution (`nn.Conv`: fast
        # outside loops, what a user would write), and the FLOP count is its; the compiled rounds
        # run the CPU default (fedjax_sim/models/cnn.py `resolve_conv`), equal up to rounding.
        reference_task=dict(conv="xla"),
        # bench_round.py's map_direct row: the direct convolution, beside the CPU default's.
        direct_task=dict(conv="loop_friendly"),
    ),
    "lstm": dict(
        model="lstm",
        classes=80,
        clients=100,
        examples=500,
        C=10,
        J=8,
        B=10,
        lr=1.0,
        unroll=1,
        xla_flags=TWO_HOST_DEVICES,
        sharded="map",
    ),
    # Many small clients: digits-sized (64 features valued 0-16), MLP 64-128-10. Unrolling 100
    # clients ("sequential") is left out: its compile time grows with C and it only pays for
    # convolutions.
    "mlp": dict(
        model="mlp",
        classes=10,
        clients=1000,
        examples=50,
        C=100,
        J=5,
        B=10,
        lr=0.1,
        unroll=1,
        xla_flags=TWO_HOST_DEVICES,
        sharded="vmap",
        skip=("sequential",),
    ),
}
# bench_round.py's --quick (and bench_seeds.py's LSTM) keeps every workload's shapes per step
# but runs fewer clients and local steps, and keeps to the rows that matter on CPU: it skips
# the CNN's chunked (vmap's grouped convolutions), sequential (the longest compile) and
# 2-device rows, the LSTM's vmap, chunked and sequential rows (within 10% of map in full runs),
# and the MLP's 2-device loop (slower than one device), to stay under 3 minutes.
QUICK = {
    "cnn": dict(C=4, J=2, skip=("chunked", "sequential", "sharded", "python_loop_sharded")),
    "lstm": dict(C=4, J=2, skip=("vmap", "chunked", "sequential")),
    "mlp": dict(skip=("sequential", "python_loop_sharded")),
}


def synthetic_clients(spec, num_clients, examples, seed=0, seq_len=80):
    """``num_clients`` clients of ``examples`` random inputs and labels of ``spec``'s shapes."""
    rng = np.random.default_rng(seed)
    n = num_clients * examples
    if spec["model"] == "cnn":
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    elif spec["model"] == "mlp":
        x = rng.integers(0, 17, (n, 64), dtype=np.uint8)
    else:
        x = rng.integers(0, spec["classes"], (n, seq_len), dtype=np.uint8)
    y = rng.integers(0, spec["classes"], n).astype(np.int32)
    return client_data_from_indices({"x": x, "y": y}, np.split(np.arange(n), num_clients))


def timed(fn, reps):
    """(compile-and-first-call seconds, list of per-call seconds); ``fn`` returns arrays."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, times


def matmul_peak_gflops(reps=5):
    """This machine's float32 GFLOP/s on a 2048^2 matmul (best of ``reps``): the bar for % peak."""
    a = jax.random.normal(jax.random.key(0), (2048, 2048), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    _, times = timed(lambda: f(a), reps)
    return 2 * 2048**3 / min(times) / 1e9


def default_flags_peak_gflops() -> float:
    """The 2048^2 matmul rate under XLA's default flags, in a process of its own: the CNN's
    flag (YNNPACK off) slows XLA's matmul itself, so its in-process peak flatters the CNN."""
    code = "from workloads import matmul_peak_gflops; print(matmul_peak_gflops())"
    out = subprocess.run([sys.executable, "-c", code], cwd=HERE, check=True, text=True,
                         capture_output=True, env={**os.environ, "XLA_FLAGS": ""})  # fmt: skip
    return float(out.stdout.split()[-1])


def flops_per_sample(spec):
    """XLA's FLOPs of one SGD step at batch B, divided by B: the model's work as the direct
    computation does it (the CNN costed with its ``reference_task``, XLA's own convolution, so
    the rate of a round by Winograd's convolution is direct-convolution FLOPs per second).

    XLA's cost analysis counts a loop body once, so the LSTM's time loop is unrolled; to keep
    that compile short it is costed at sequence lengths 8 and 16 and extrapolated linearly to
    80 (every term of the step is affine in the length).
    """
    if spec["model"] == "lstm":
        f8, f16 = (_step_flops(spec, seq_len) for seq_len in (8, 16))
        return (f8 + (f16 - f8) / 8 * (80 - 8)) / spec["B"]
    return _step_flops(spec, None) / spec["B"]


def _step_flops(spec, seq_len):
    kwargs = {"unroll": True, "seq_len": seq_len} if seq_len else {}
    task = make_task(spec["model"], spec["classes"], **spec.get("reference_task", {}), **kwargs)
    data = synthetic_clients(spec, 1, spec["B"], seq_len=seq_len)
    algo = centralized(task, optax.sgd(0.1), batch_size=spec["B"])
    state = algo.init(task.model.init(jax.random.key(0)))
    cost = jax.jit(algo.round_fn).lower(state, data, jax.random.key(1)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["flops"]


def cpu_model():
    """The CPU's model name, for the results files."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM`` of ``/proc/PID/status``), in MB.

    Read once, after the timed rounds: sampling ``smaps_rollup`` during them walks the page
    tables of the process under its memory lock and slowed the PyTorch peer's rounds ~2x here.
    """
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def peer_round(script: str, spec: dict, python: str):
    """(the worker's pid, a function running one round of it and returning its seconds, whose
    ``ready`` attribute names the peer's versions and threads)."""
    keys = ("model", "classes", "clients", "examples", "C", "J", "B", "lr")
    worker = subprocess.Popen(
        [python, os.path.join(HERE, script), "--spec", json.dumps({k: spec[k] for k in keys})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    ready = worker.stdout.readline()
    if not ready.startswith("ready"):
        raise RuntimeError(f"{script} did not start (exit code {worker.wait()})")
    print(f"  {script}: {ready.strip()}", flush=True)

    def run():
        worker.stdin.write("round\n")
        worker.stdin.flush()
        return float(worker.stdout.readline())

    run.ready = ready.strip().split(" ", 2)[-1]  # "pfl 0.6.0 torch 2.13.0+cpu threads 2"
    return worker.pid, run


def auto_round(name: str, spec: dict, client_devices: int = 0):
    """Our round of workload ``name`` as the CLI builds it with every execution setting "auto"
    (``client_axis``, ``unroll_local_steps``, ``model.conv``, resolved by
    `fedjax_sim.config.build.execution_for` from the workload's config in `AUTO_CONFIGS`), after
    the CLI's heap trims (`fedjax_sim.runtime.host_memory`).

    Args:
      name: a workload of `WORKLOADS`; ``spec`` its settings (C, J, B, ... may be reduced).
      client_devices: the config's ``client_devices``: 0 (the CLI's default) splits the clients
        over every host device of this process, N over the first N (`auto_host_devices`, in a
        process with more devices than the CLI's flags would make).

    Returns:
      (a function running one round and returning its seconds, the resolved settings).
    """
    config = load_config(os.path.join(os.path.dirname(os.path.dirname(HERE)), AUTO_CONFIGS[name]))
    with_overrides(config, {
        "data.num_clients": spec["clients"], "data.augment": False,
        "clients_per_round": spec["C"], "client.local_steps": spec["J"],
        "client.batch_size": spec["B"], "client.learning_rate": spec["lr"],
        "server.learning_rate": 1.0, "server.optimizer": "sgd", "client.momentum": 0.0,
        "client_devices": client_devices,
    })  # fmt: skip
    if name == "mlp":  # the MLP is no config's model: its task is made directly
        task = make_task("mlp", spec["classes"])
    else:
        config.model.name = spec["model"]
        task = build_task(config, spec["classes"], (32, 32, 3) if name == "cnn" else None)
    clients = synthetic_clients(spec, spec["clients"], spec["examples"])
    execution = execution_for(config, task, spec["clients"])
    algorithm = build_algorithm(config, task, spec["clients"], execution)
    state = algorithm.init(task.model.init(jax.random.key(0)))
    release_init_memory()  # as the CLI does (run_experiment's free_init_memory)
    trim_after_each_compile()
    step = jax.jit(algorithm.round_fn)
    settings = {
        "client_axis": execution.client_axis,
        "client_devices": execution.mesh.shape["clients"] if execution.mesh is not None else 1,
        "unroll_local_steps": execution.unroll,
        "model_conv": resolve_conv(config.model.conv) if name == "cnn" else None,
    }
    holder = {"state": state, "round": 0}

    def run():
        holder["round"] += 1
        start = time.perf_counter()
        new_state, _ = step(holder["state"], clients, jax.random.key(holder["round"]))
        jax.block_until_ready(new_state)
        holder["state"] = new_state
        return time.perf_counter() - start

    return run, settings


def auto_host_devices(model: str) -> int:
    """The host devices the CLI's ``xla_flags="auto"`` makes for ``model`` on CPU (1 unless its
    flags split the host)."""
    for flag in RECOMMENDED_CPU_XLA_FLAGS.get(model, "").split():
        if flag.startswith("--xla_force_host_platform_device_count="):
            return int(flag.split("=", 1)[1])
    return 1
