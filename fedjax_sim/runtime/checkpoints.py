"""Orbax checkpoints of a run, verified before they are trusted.

Each checkpoint is written by orbax (into a temporary folder renamed when complete, so a run
killed at any moment leaves only whole checkpoints), then a manifest of its files' sizes and
SHA-256 digests goes beside it, in ``manifests/``. A restore checks the newest checkpoint
against its manifest first; a damaged one (files truncated, changed or missing, or unreadable by
orbax) is moved to ``damaged/`` with a warning and the previous checkpoint is used, so the run
resumes to the same final result. When no checkpoint is readable the restore stops with one line
naming the damaged one. A save that fails (a full disk) stops with one line too, its partial
folder removed and the earlier checkpoints kept.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import hashlib
import json
import logging as py_logging
import os
import re
import shutil
import sys
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from fedjax_sim.runtime.multihost import is_writer, sync
from fedjax_sim.runtime.outputs import write_json_atomic


class CheckpointError(ValueError):
    """No checkpoint of a run can be read, or one cannot be written; the message names it."""


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _keys_as_data(tree):
    """Typed PRNG key arrays (per-client keys an algorithm may keep) as their uint32 data, which
    a checkpoint stores like any array."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _host_zeros_like(x):
    if _is_key(x):
        x = jax.eval_shape(jax.random.key_data, x)
    return np.zeros(x.shape, x.dtype)


def _file_digests(folder: str) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of every file under ``folder``."""
    digests = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
            digests[os.path.relpath(path, folder)] = [os.path.getsize(path), digest.hexdigest()]
    return digests


@contextlib.contextmanager
def _orbax_errors_unlogged():
    """Orbax logs damaged files at ERROR (and may raise); `Checkpointer.restore` reports them."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.FATAL)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def _os_reason(error: Exception) -> str | None:
    """The operating system's words for a failed write (``No space left on device``), from an
    `OSError` or tensorstore's ``[os_error_code='28']``; None for other errors."""
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    code = re.search(r"os_error_code='(\d+)'", str(error))
    return os.strerror(int(code[1])) if code else None


def _drop(record) -> bool:
    return False


def _not_never_retrieved(record) -> bool:
    """Drops asyncio's "... exception was never retrieved": a failed write's futures say it
    whenever they are collected, up to the process's exit, after the save's one-line error."""
    return "exception was never retrieved" not in record.getMessage()


def _is_closed_loop(error: BaseException | None) -> bool:
    return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def _closed_loop_reports_dropped() -> tuple:
    """Drops the reports of tensorstore's threads that call into orbax's closed event loop
    during and after a failing save (printed through `sys.excepthook` or `threading.excepthook`
    at any moment, until exit); other errors are reported as before. Returns the hooks it
    replaced."""
    hooks = sys.excepthook, threading.excepthook

    def except_report(kind, error, trace):
        if not _is_closed_loop(error):
            hooks[0](kind, error, trace)

    sys.excepthook = except_report
    threading.excepthook = lambda args: None if _is_closed_loop(args.exc_value) else hooks[1](args)
    return hooks


@contextlib.contextmanager
def _background_errors_held():
    """While a save runs, holds back what orbax's and tensorstore's background threads report
    of a failing write, each with its traceback: absl and asyncio log records and exceptions
    raised into an event loop already closed (`sys.unraisablehook`). A failing save raises its
    own error, which says it in one line; a save that succeeds hands on what was held."""
    held, hook, failed = [], sys.unraisablehook, False
    asyncio_logger = py_logging.getLogger("asyncio")
    asyncio_logger.addFilter(_drop)
    sys.unraisablehook = held.append
    hooks = _closed_loop_reports_dropped()
    try:
        with _orbax_errors_unlogged():
            try:
                yield
            except BaseException:
                held.clear()
                gc.collect()  # the failed write's tasks report "never retrieved" as they go
                held.clear()
                failed = True
                raise
    finally:
        sys.unraisablehook = hook
        asyncio_logger.removeFilter(_drop)
        if failed:  # tensorstore's threads and the write's futures may report until exit
            sys.unraisablehook = lambda u: None if _is_closed_loop(u.exc_value) else hook(u)
            asyncio_logger.addFilter(_not_never_retrieved)
        else:
            sys.excepthook, threading.excepthook = hooks
    for unraisable in held:
        hook(unraisable)


class Checkpointer:
    """Checkpoints of (state, metrics history) every ``every`` rounds, plus the last round.

    Saving is synchronous so that the next round may donate the state's buffers.
    """

    def __init__(self, directory: str, every: int, max_to_keep: int = 2):
        self.every = every
        self.directory = os.path.abspath(directory)
        with _orbax_errors_unlogged():  # it reads every checkpoint's metadata, damaged or not
            self.manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
                ),
            )

    def _manifest_path(self, step: int) -> str:
        return os.path.join(self.directory, "manifests", f"{step}.json")

    def _damage(self, step: int) -> str | None:
        """What is wrong with checkpoint ``step`` by its manifest; None if it matches or has
        no manifest (written by an older version, or the run died just before writing it)."""
        try:
            with open(self._manifest_path(step)) as f:
                expected = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            return f"its manifest is unreadable: {error}"
        found = _file_digests(os.path.join(self.directory, str(step)))
        for name, (size, digest) in sorted(expected.items()):
            if name not in found:
                return f"{name} is missing"
            if found[name][0] != size:
                return f"{name} has {found[name][0]} bytes, {size} were written"
            if found[name][1] != digest:
                return f"{name} differs from what was written (SHA-256)"
        return None

    def _restore_step(self, step: int, state_template):
        # Restored to host memory, then handed to JAX uncommitted, like a fresh state: arrays
        # restored onto a device would be committed to it, and a round whose clients are
        # sharded over a mesh of several devices refuses state committed to one.
        host_template = jax.tree.map(_host_zeros_like, state_template)
        with _orbax_errors_unlogged():
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(host_template), history=ocp.args.JsonRestore()
                ),
            )
        log = restored["history"]
        state = jax.tree.map(
            lambda x, like: (
                jax.random.wrap_key_data(x, impl=jax.random.key_impl(like))
                if _is_key(like)
                else jnp.asarray(x)
            ),
            restored["state"],
            state_template,
        )
        return state, list(log["records"]), list(log["pending"])

    def _set_aside(self, step: int) -> str:
        """Moves damaged checkpoint ``step`` to ``damaged/``, where a new save cannot meet it."""
        target = os.path.join(self.directory, "damaged", str(step))
        suffix = 1
        while os.path.exists(target):
            target = os.path.join(self.directory, "damaged", f"{step}.{suffix}")
            suffix += 1
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), target)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._manifest_path(step))
        return target

    def rounds(self) -> list[int]:
        """The rounds whose checkpoints are kept, oldest first."""
        return sorted(self.manager.all_steps())

    def restore(
        self, state_template, round_number: int | None = None
    ) -> tuple[Any, list[dict], list[dict]] | None:
        """The newest readable checkpoint as ``(state, history, pending)``, or None if there
        is none; damaged newer ones are moved to ``damaged/`` with a warning. With
        ``round_number``, that round's checkpoint only.

        Raises:
          CheckpointError: checkpoints exist and none of them is readable, or
            ``round_number`` is not a kept checkpoint.
        """
        steps = self.rounds()
        if round_number is not None:
            if round_number not in steps:
                kept = ", ".join(map(str, steps)) or "none"
                raise CheckpointError(
                    f"--round={round_number}: no checkpoint of that round in {self.directory}; "
                    f"kept rounds: {kept}"
                )
            steps = [round_number]
        damaged = []
        for step in reversed(steps):
            problem = self._damage(step)
            if problem is None:
                try:
                    restored = self._restore_step(step, state_template)
                except Exception as error:  # orbax and tensorstore raise assorted types
                    problem = (str(error).strip().splitlines() or [type(error).__name__])[0]
                else:
                    for bad_step, bad_problem in damaged if is_writer() else ():
                        moved = self._set_aside(bad_step)
                        logging.warning(
                            "checkpoint of round %d is damaged (%s); moved to %s, resuming "
                            "from round %d",
                            bad_step,
                            bad_problem,
                            moved,
                            step,
                        )
                    sync("damaged checkpoints set aside")
                    if damaged:
                        with _orbax_errors_unlogged():
                            self.manager.reload()
                    return restored
            damaged.append((step, problem))
        if damaged:
            step, problem = damaged[0]
            raise CheckpointError(
                f"checkpoint {os.path.join(self.directory, str(step))} is damaged ({problem}) "
                f"and no earlier checkpoint is readable; move {self.directory} away to start over"
            )
        return None

    def save(
        self,
        round_number: int,
        state,
        history: list[dict],
        pending: list[dict],
        force: bool = False,
    ):
        """Saves unless it is not a checkpoint round; ``pending`` are the per-round metrics not
        yet folded into a record, so that a resumed run writes the same records."""
        if not force and (self.every <= 0 or round_number % self.every):
            return
        if self.manager.latest_step() == round_number:
            return
        try:
            with _background_errors_held():
                self.manager.save(
                    round_number,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(_keys_as_data(state)),
                        history=ocp.args.JsonSave({"records": history, "pending": pending}),
                    ),
                    force=True,
                )
        except Exception as error:  # orbax and tensorstore raise assorted types
            raise self._save_failed(round_number, error) from error
        if is_writer():  # every process wrote its shards; one writes the manifest
            digests = _file_digests(os.path.join(self.directory, str(round_number)))
            write_json_atomic(self._manifest_path(round_number), digests)
            manifests = os.path.dirname(self._manifest_path(round_number))
            steps = {f"{step}.json" for step in self.manager.all_steps()}
            for name in set(os.listdir(manifests)) - steps:  # orbax deleted them (max_to_keep)
                os.remove(os.path.join(manifests, name))
        sync(f"checkpoint manifest {round_number}")

    def _save_failed(self, round_number: int, error: Exception) -> CheckpointError:
        """Removes the partial checkpoint of ``round_number``; the error to raise."""
        for partial in glob.glob(os.path.join(self.directory, f"{round_number}.orbax-*")):
            shutil.rmtree(partial, ignore_errors=True)
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = _os_reason(error) or lines[0]
        kept = self.manager.latest_step()
        return CheckpointError(
            f"cannot write the checkpoint of round {round_number} in {self.directory} "
            f"({reason}); "
            + (f"the checkpoint of round {kept} is kept" if kept is not None else "none kept")
            + ": free space (or fix the cause) and run the same command to resume"
        )

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()
