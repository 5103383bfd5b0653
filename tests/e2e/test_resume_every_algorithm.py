"""Every registered algorithm, SIGKILLed after round 2's checkpoint and run again with the same
command, ends bit for bit where an uninterrupted run ends: the final checkpoint's whole state
(params, model state, optimizer states, every client's and worker's state, clocks, keys), the
final parameters and the metrics history.

Each run is the CLI, ``python -m fedjax_sim``, on the algorithm's smoke config (and on three
configs with state that no smoke config keeps) for 4 rounds with a checkpoint and a record every
round. The killed run is the same command started through `KILLED_CLI`, which kills its own
process with SIGKILL as round 3's checkpoint is about to be written: round 2's checkpoint and
manifest are complete, round 3's record is already in metrics.jsonl, and nothing of the process
is cleaned up. A parent polling the checkpoints folder would kill it at a random round, or not
at all: a smoke round lasts milliseconds.

Slow (three processes a case, 20 cases); the subprocesses share one persistent XLA cache, so
the killed and resumed runs load what the uninterrupted one compiled.
"""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from records import metrics_without_wall_clock

from fedjax_sim.config.files import load_config
from fedjax_sim.config.registry import ALGORITHMS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# (algorithm, config): every registered one on its smoke config, then state that no smoke
# config of the registry keeps: a server optimizer's moments (FedAdam), SlowMo's slow momentum
# with each worker's momentum kept, DiLoCo's per-worker Adam and outer Nesterov momentum.
CASES = [pytest.param(name, entry.smoke, id=name) for name, entry in ALGORITHMS.items()] + [
    pytest.param("fedavg", "configs/fedadam_shakespeare.py:smoke", id="fedavg-fedadam"),
    pytest.param("localsgd", "configs/slowmo_digits.py:smoke", id="localsgd-slowmo"),
    pytest.param("localsgd", "configs/diloco_digits.py:smoke", id="localsgd-diloco"),
]
ROUNDS = 4
KILLED_IN_ROUND = 3  # its record written, its checkpoint not: the run resumes from round 2

# The CLI, killed with SIGKILL when `Checkpointer.save` is called for round argv[1].
KILLED_CLI = """
import os, signal, sys
from fedjax_sim import __main__ as cli
from fedjax_sim.runtime import checkpoints
kill_at = int(sys.argv.pop(1))
save = checkpoints.Checkpointer.save
def save_or_die(self, round_number, *args, **kwargs):
    if round_number == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, round_number, *args, **kwargs)
checkpoints.Checkpointer.save = save_or_die
sys.argv = ["fedjax_sim", *sys.argv[1:]]
cli.run()
"""


@pytest.fixture(scope="module")
def xla_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xla_cache"))


def _arguments(name: str, smoke: str, shakespeare_cache: str) -> list[str]:
    overrides = {"algorithm": name, "rounds": ROUNDS, "eval_every": 1, "checkpoint_every": 1}
    if load_config(os.path.join(ROOT, smoke)).data.name == "shakespeare":
        overrides["data.cache_dir"] = shakespeare_cache
    return ["--quiet", "--config", smoke] + [f"--config.{k}={v}" for k, v in overrides.items()]


def _cli(arguments: list[str], workdir, xla_cache: str, kill_at: int | None = None):
    entry = ["-m", "fedjax_sim"] if kill_at is None else ["-c", KILLED_CLI, str(kill_at)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDJAX_SIM_")}
    env.update(
        FEDJAX_SIM_DEBUG="1",  # a failing run shows its traceback
        JAX_COMPILATION_CACHE_DIR=xla_cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return subprocess.run(
        [sys.executable, *entry, *arguments, "--workdir", str(workdir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


def _finished(arguments, workdir, xla_cache):
    result = _cli(arguments, workdir, xla_cache)
    assert result.returncode == 0, result.stderr[-3000:]


def _records(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _final_checkpoint(workdir) -> tuple[int, dict, str]:
    """``(round, {leaf path: host array}, history)`` of the newest checkpoint, read onto the
    host whatever devices wrote it; ``history`` is its JSON text (records and pending)."""
    folder = workdir / "checkpoints"
    step = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    state_dir = folder / str(step) / "state"
    shapes = ocp.StandardCheckpointHandler().metadata(state_dir).tree
    template = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), shapes)
    state = ocp.StandardCheckpointer().restore(state_dir, template)
    history = (folder / str(step) / "history" / "metadata").read_text()
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return step, {jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves}, history


def _without_wall_clock(history: str) -> dict:
    """A checkpoint's history (JSON text) with each record's measured ``wall_s`` left out."""
    saved = json.loads(history)
    for record in saved["records"]:
        record.pop("wall_s")
    return saved


def _differing(a: dict, b: dict) -> list[str]:
    """The leaves of two flattened states that differ in path, dtype, shape or any bit."""
    return [
        path
        for path in sorted(set(a) | set(b))
        if path not in a
        or path not in b
        or a[path].dtype != b[path].dtype
        or a[path].shape != b[path].shape
        or a[path].tobytes() != b[path].tobytes()
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name,smoke", CASES)
def test_a_killed_run_resumes_bit_exact(name, smoke, shakespeare_cache, xla_cache, tmp_path):
    arguments = _arguments(name, smoke, shakespeare_cache)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _finished(arguments, straight, xla_cache)

    died = _cli(arguments, killed, xla_cache, kill_at=KILLED_IN_ROUND)
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    checkpoints = killed / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["1", "2", "manifests"]
    assert (checkpoints / "manifests" / "2.json").is_file()
    assert [r["round"] for r in _records(killed)] == [1, 2, 3]  # ahead of its checkpoint
    assert not (killed / "params.msgpack").exists()

    _finished(arguments, killed, xla_cache)  # the same command again: resumes from round 2

    step, state, history = _final_checkpoint(straight)
    resumed_step, resumed_state, resumed_history = _final_checkpoint(killed)
    assert step == resumed_step == ROUNDS
    differing = _differing(state, resumed_state)
    assert not differing, f"{len(differing)} state leaves differ after the resume: {differing}"
    assert _without_wall_clock(resumed_history) == _without_wall_clock(history)
    for name in ("params.msgpack", "variables.msgpack"):
        assert (killed / name).read_bytes() == (straight / name).read_bytes(), name
    # wall_s is measured, not computed (ledger_time_s, the simulated clock, is compared)
    straight_metrics = metrics_without_wall_clock(straight / "metrics.jsonl")
    assert metrics_without_wall_clock(killed / "metrics.jsonl") == straight_metrics
    assert [r["round"] for r in _records(straight)] == list(range(1, ROUNDS + 1))
