"""Checkpoints: typed keys, manifests, and the fall-back past a damaged newest checkpoint."""

import errno
import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from fedjax_sim.runtime.checkpoints import Checkpointer, CheckpointError


def state_at(step):
    return {"w": np.full(5, float(step), np.float32), "step": np.array(step, np.int32)}


TEMPLATE = state_at(0)


@pytest.fixture
def saved(tmp_path):
    """Checkpoints of steps 1, 2, 3 saved with max_to_keep=2 (1 is deleted by orbax)."""
    directory = str(tmp_path / "checkpoints")
    checkpointer = Checkpointer(directory, every=1)
    for step in (1, 2, 3):
        checkpointer.save(step, state_at(step), [{"round": step}], [])
    checkpointer.close()
    return directory


def largest_file(folder):
    files = [os.path.join(root, n) for root, _, names in os.walk(folder) for n in names]
    return max(files, key=os.path.getsize)


def restore(directory):
    checkpointer = Checkpointer(directory, every=1)
    try:
        return checkpointer.restore(TEMPLATE)
    finally:
        checkpointer.close()


def test_checkpoint_keeps_typed_prng_keys(tmp_path):
    # Per-client keys in an algorithm's state must come back as keys, equal to those saved.
    state = {"keys": jax.random.split(jax.random.key(3), 4), "w": np.arange(3.0, dtype=np.float32)}
    checkpointer = Checkpointer(str(tmp_path), every=1)
    checkpointer.save(1, state, [{"round": 1}], [])
    template = {"keys": jax.random.split(jax.random.key(0), 4), "w": np.zeros(3, np.float32)}
    restored, history, pending = checkpointer.restore(template)
    assert jax.dtypes.issubdtype(restored["keys"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.key_data(restored["keys"]), jax.random.key_data(state["keys"])
    )
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert history == [{"round": 1}] and pending == []


def test_manifests_follow_the_kept_checkpoints(saved):
    assert sorted(os.listdir(os.path.join(saved, "manifests"))) == ["2.json", "3.json"]
    with open(os.path.join(saved, "manifests", "3.json")) as f:
        manifest = json.load(f)
    path = largest_file(os.path.join(saved, "3"))
    size, _ = manifest[os.path.relpath(path, os.path.join(saved, "3"))]
    assert size == os.path.getsize(path)
    state, history, _ = restore(saved)
    assert int(state["step"]) == 3 and history == [{"round": 3}]


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte", "truncate_unlisted"])
def test_damaged_newest_checkpoint_falls_back(saved, damage, caplog):
    path = largest_file(os.path.join(saved, "3"))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if damage == "flip_a_byte":  # same size: only the digest can tell
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    if damage == "truncate_unlisted":  # no manifest (an older run): orbax itself must fail
        os.remove(os.path.join(saved, "manifests", "3.json"))
    with open(path, "wb") as f:
        f.write(data)
    with caplog.at_level(logging.WARNING):
        state, history, _ = restore(saved)
    assert int(state["step"]) == 2 and history == [{"round": 2}]
    np.testing.assert_array_equal(state["w"], state_at(2)["w"])
    assert "checkpoint of round 3 is damaged" in caplog.text
    assert os.path.isdir(os.path.join(saved, "damaged", "3"))
    assert not os.path.exists(os.path.join(saved, "3"))
    # The run goes on: round 3 is saved again, in place of the damaged one.
    checkpointer = Checkpointer(saved, every=1)
    checkpointer.save(3, state_at(3), [{"round": 3}], [])
    checkpointer.close()
    assert int(restore(saved)[0]["step"]) == 3


def test_no_readable_checkpoint_names_the_newest(saved):
    for step in (2, 3):
        os.remove(largest_file(os.path.join(saved, str(step))))
    with pytest.raises(CheckpointError, match=r"checkpoint .*/3 is damaged \(.* is missing\)"):
        restore(saved)


def test_no_checkpoint_restores_nothing(tmp_path):
    assert restore(str(tmp_path / "empty")) is None


def test_a_failed_save_is_one_error_and_keeps_the_earlier_checkpoints(saved, monkeypatch):
    checkpointer = Checkpointer(saved, every=1)

    def full_disk(step, *args, **kwargs):  # orbax writes part of the checkpoint, then fails
        os.makedirs(os.path.join(saved, f"{step}.orbax-checkpoint-tmp", "state"))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpointer.manager, "save", full_disk)
    message = (
        f"cannot write the checkpoint of round 4 in {saved} (No space left on device); the "
        "checkpoint of round 3 is kept: free space (or fix the cause) and run the same command "
        "to resume"
    )
    with pytest.raises(CheckpointError) as error:
        checkpointer.save(4, state_at(4), [{"round": 4}], [])
    assert str(error.value) == message
    checkpointer.close()
    assert sorted(os.listdir(saved)) == ["2", "3", "manifests"]  # the partial one removed
    assert int(restore(saved)[0]["step"]) == 3


CLOSED_LOOP_REPORTS = """
import sys, threading
from fedjax_sim.runtime import checkpoints
checkpoints._closed_loop_reports_dropped()
def raise_in_thread(error):
    def target():
        raise error
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
raise_in_thread(RuntimeError("Event loop is closed"))
raise_in_thread(ValueError("a thread's own error"))
sys.excepthook(RuntimeError, RuntimeError("Event loop is closed"), None)
sys.excepthook(KeyError, KeyError("an uncaught error"), None)
"""


def test_after_a_failed_save_only_the_closed_loop_reports_are_dropped():
    """The race CI met: tensorstore's threads report orbax's closed event loop after the one-line
    error; those reports are dropped, and any other error is still printed."""
    result = subprocess.run(
        [sys.executable, "-c", CLOSED_LOOP_REPORTS], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Event loop is closed" not in result.stderr
    assert "a thread's own error" in result.stderr and "an uncaught error" in result.stderr
