"""The same run as two processes on localhost (`jax.distributed`, gloo CPU collectives, one
device each) and as one process with two host devices: a two-process run stopped at its
checkpoint and resumed gives the one-process parameters and metrics bit for bit, and only
process 0 reports.
"""

import os
import socket
import subprocess
import sys

import pytest
from records import metrics_without_wall_clock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/localsgd_digits.py:smoke"  # K = 2 workers, one per device


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _command(workdir, *overrides):
    cache = f"--config.data.cache_dir={workdir}_cache"
    return [sys.executable, "-m", "fedjax_sim", "--quiet", "--config", CONFIG, "--workdir",
            str(workdir), cache, *overrides]  # fmt: skip


def _env(devices, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDJAX_SIM_")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.update(extra)
    return env


def one_process(workdir, *overrides):
    result = subprocess.run(
        _command(workdir, *overrides), cwd=ROOT, env=_env(2), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def two_processes(workdir, *overrides):
    port = _free_port()
    procs = [
        subprocess.Popen(
            _command(workdir, *overrides),
            cwd=ROOT,
            env=_env(
                1,
                FEDJAX_SIM_COORDINATOR=f"localhost:{port}",
                FEDJAX_SIM_NUM_PROCESSES="2",
                FEDJAX_SIM_PROCESS_ID=str(index),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in (0, 1)
    ]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    return [out for out, _ in outputs]


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_from_their_checkpoint(tmp_path):
    one_process(tmp_path / "one")
    # two processes stopped after round 2 (its checkpoint), then run on to round 4: equal to
    # one process straight through, bit for bit
    two_processes(tmp_path / "two", "--config.rounds=2")
    assert (tmp_path / "two" / "checkpoints" / "2").is_dir()
    stdout = two_processes(tmp_path / "two")
    assert "round 4:" in stdout[0] and "round 4:" not in stdout[1]  # process 0 reports
    assert _read(tmp_path / "one" / "params.msgpack") == _read(tmp_path / "two" / "params.msgpack")
    one, two = (tmp_path / run / "metrics.jsonl" for run in ("one", "two"))
    assert metrics_without_wall_clock(one) == metrics_without_wall_clock(two)
