"""XLA flags: the recommended ones per model, custom ones checked, and the private JAX API that
says whether the backend started (isolated in `fedjax_sim.experiment.xla_flags`, checked here)."""

import subprocess
import sys

import jax
import pytest

from fedjax_sim.config.checks import ConfigError
from fedjax_sim.experiment.xla_flags import apply_xla_flags, check_xla_flags


def test_backends_started_reports_the_backend_in_a_fresh_process():
    # If a JAX upgrade moves the private API, this fails here instead of flags being ignored.
    script = (
        "from fedjax_sim.experiment.xla_flags import backends_started\n"
        "import jax.numpy as jnp\n"
        "before = backends_started()\n"
        "jnp.zeros(1).block_until_ready()\n"
        "print(before, backends_started())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_flags_already_set_win_and_late_flags_are_refused(monkeypatch):
    monkeypatch.setenv(
        "XLA_FLAGS",
        "--xla_cpu_experimental_ynn_fusion_type= --xla_force_host_platform_device_count=1",
    )
    assert apply_xla_flags("auto", "cnn") == ""  # already there: the user's setting wins
    assert apply_xla_flags("auto", "lstm") == ""
    monkeypatch.setenv("XLA_FLAGS", "")
    jax.numpy.zeros(1).block_until_ready()  # the backend is running now
    with pytest.raises(RuntimeError, match="xla_flags"):
        apply_xla_flags("auto", "cnn")


def test_custom_flags_must_be_xla_flags():
    with pytest.raises(ConfigError, match=r"xla_flags must be --xla_\* flags, got 'device=2'"):
        check_xla_flags("--xla_cpu_use_thunk_runtime=true device=2")


def test_auto_caps_the_malloc_arenas_of_the_models_that_gain(monkeypatch):
    from fedjax_sim.experiment import xla_flags

    capped = []  # not set in this process: the cap is process-wide and slows the CNN's tests
    monkeypatch.setattr(xla_flags, "limit_malloc_arenas", lambda n: capped.append(n) or True)
    assert xla_flags.apply_malloc_arenas("auto", "lstm") == 2
    assert xla_flags.apply_malloc_arenas("auto", "cnn") is None  # glibc's default
    assert xla_flags.apply_malloc_arenas("", "lstm") is None  # the user's flags: no cap
    assert capped == [2]
