"""XLA flags per model: the measured best on CPU, set before JAX's backend starts.

XLA reads ``XLA_FLAGS`` once, when the backend starts, and aborts the process on a flag it does
not know, so custom flags are tried in a throwaway process first (`check_xla_flags`).
"""

from __future__ import annotations

import os
import subprocess
import sys

from fedjax_sim.config.checks import ConfigError
from fedjax_sim.runtime.host_memory import limit_malloc_arenas

# Measured in experiments/benchmarks/bench_round.py. Turning YNNPACK fusions off makes the CNN's
# convolutions 2-3x faster and the LSTM 2.5x slower. Two host devices let
# `fedjax_sim.core.engine.client_mesh_for` split the LSTM's clients over the 2 cores as two single
# streams (its small per-step matmuls use a second core poorly): 1.4x per round there. For the
# CNN the split (`map` on each of 2 devices against `map` on one) measured between slower and
# a few percent faster from run to run (bench_round.md, results/cnn_device_split.md): no
# reliable gain, and a second device costs memory (~150 MB in the LSTM's round), so the CNN
# keeps one. The ResNets get the CNN's flag for their
# convolutions (their rows of experiments/benchmarks/bench_algorithms.py ran under it; not
# compared without it).
RECOMMENDED_CPU_XLA_FLAGS = {
    "cnn": "--xla_cpu_experimental_ynn_fusion_type=",
    "resnet20": "--xla_cpu_experimental_ynn_fusion_type=",
    "resnet18": "--xla_cpu_experimental_ynn_fusion_type=",
    "lstm": "--xla_force_host_platform_device_count=2",
}
# glibc malloc arenas that go with the "auto" flags (docs/performance.md, Memory). The LSTM's two
# host devices run more threads, each freeing its buffers into an arena of its own: capped at 2,
# its round's peak memory fell by 65-110 MB at the same speed. The CNN's round ran 1.2-1.3x
# slower with 2 arenas (its convolutions allocate from both cores at once): glibc's default.
RECOMMENDED_MALLOC_ARENAS = {"lstm": 2}


def backends_started() -> bool:
    """Whether JAX's backends have started in this process (flags set later are ignored).

    JAX has no public API for this. The private one is used here only, and
    tests/experiment/test_xla_flags.py checks it in a fresh process, so a JAX upgrade that
    moves it fails in one test instead of silently ignoring flags.
    """
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def check_xla_flags(flags: str) -> None:
    """Raises `ConfigError` unless XLA starts with ``flags`` (tried in a subprocess, ~1 s)."""
    malformed = [flag for flag in flags.split() if not flag.startswith("--xla_")]
    if malformed:
        raise ConfigError(f"xla_flags must be --xla_* flags, got {' '.join(malformed)!r}")
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env={**os.environ, "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        lines = probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"]
        reason = lines[-1].split("] ", 1)[-1]  # XLA's fatal log line, without its prefix
        raise ConfigError(f"xla_flags {flags!r}: XLA refuses them: {reason}")


def apply_xla_flags(setting: str, model_name: str) -> str:
    """Adds the XLA flags of ``setting`` to ``XLA_FLAGS`` unless the backend already started.

    Args:
      setting: ``"auto"`` (`RECOMMENDED_CPU_XLA_FLAGS` for the model), ``""`` (none) or flags,
        which are checked first (`check_xla_flags`).
      model_name: the config's model.

    Returns:
      The flags added (flags already in ``XLA_FLAGS`` are kept and win).

    Raises:
      ConfigError: custom flags that XLA refuses.
      RuntimeError: flags to add after the backend started.
    """
    flags = RECOMMENDED_CPU_XLA_FLAGS.get(model_name, "") if setting == "auto" else setting
    current = os.environ.get("XLA_FLAGS", "")
    present = {flag.split("=")[0] for flag in current.split()}
    added = [flag for flag in flags.split() if flag.split("=")[0] not in present]
    if added and backends_started():
        raise RuntimeError("xla_flags: set them before the first JAX computation of the process")
    if added and setting != "auto":
        check_xla_flags(" ".join(added))
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return " ".join(added)


def apply_malloc_arenas(setting: str, model_name: str) -> int | None:
    """Caps the process's malloc arenas as `RECOMMENDED_MALLOC_ARENAS` says for the model when
    ``setting`` (the config's ``xla_flags``) is ``"auto"``; call it with `apply_xla_flags`, before
    the backend starts.

    Returns:
      The cap set, or None (another setting, no recommendation for the model, or no glibc).
    """
    count = RECOMMENDED_MALLOC_ARENAS.get(model_name) if setting == "auto" else None
    return count if count and limit_malloc_arenas(count) else None
