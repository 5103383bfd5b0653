"""Runs a test script in a fresh process with a chosen number of host devices (fixed when JAX
starts, so it cannot change inside the test process)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script: str, *args: str, devices: int = 1) -> str:
    """Runs ``script`` with ``args`` in a fresh process with ``devices`` host devices; returns
    what it printed (it must exit with 0)."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    result = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def run_with_host_devices(script: str, devices: int) -> None:
    """Runs ``script`` in a fresh process with ``devices`` host devices; it must print OK."""
    assert run_script(script, devices=devices).strip().endswith("OK")
