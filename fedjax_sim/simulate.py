"""`simulate`: runs the rounds of an algorithm with evaluation, checkpoints, resume, progress."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm


def _to_host(metrics) -> dict:
    return {name: float(np.asarray(value)) for name, value in metrics.items()}


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


class Checkpointer:
    """Orbax checkpoints of (state, metrics history) every ``every`` rounds, plus the last round.

    Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
    killed at any moment leaves only whole checkpoints; saving is synchronous so that the next
    round may donate the state's buffers.
    """

    def __init__(self, directory: str, every: int, max_to_keep: int = 2):
        self.every = every
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
        )

    def restore(self, state_template) -> tuple[Any, list[dict], list[dict]] | None:
        step = self.manager.latest_step()
        if step is None:
            return None
        # Restored to host memory, then handed to JAX uncommitted, like a fresh state: arrays
        # restored onto a device would be committed to it, and a round whose clients are
        # sharded over a mesh of several devices refuses state committed to one.
        host_template = jax.tree.map(_host_zeros_like, state_template)
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
        self.manager.save(
            round_number,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_keys_as_data(state)),
                history=ocp.args.JsonSave({"records": history, "pending": pending}),
            ),
            force=True,
        )

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def simulate(
    round_fn: Callable,
    clients,
    rounds: int,
    *,
    state,
    key: jax.Array,
    evaluate: Callable[[Any], dict] | None = None,
    eval_every: int = 0,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 0,
    on_record: Callable[[list[dict]], None] | None = None,
    progress: bool = True,
    jit: bool = True,
):
    """Runs ``round_fn`` until ``state.round == rounds``.

    Args:
      round_fn: ``round_fn(state, clients, key) -> (state, metrics)`` from an `Algorithm`.
      clients: the `ClientData` the rounds draw from (stays on the device).
      rounds: the round number to stop at (a resumed run continues up to it).
      state: the initial state (``algorithm.init(params)``); replaced by the checkpoint if
        ``checkpoint_dir`` holds one.
      key: the run's data key, passed unchanged to every round.
      evaluate: ``evaluate(state) -> dict`` of host floats, run every ``eval_every`` rounds and
        after the last round.
      eval_every: rounds between evaluations (0: only at the end).
      checkpoint_dir, checkpoint_every: orbax checkpoints every ``checkpoint_every`` rounds and at
        the end; an existing checkpoint is resumed from.
      on_record: called with the whole history after every new record (to write it to disk).
      progress: show a tqdm bar with the round, loss and accuracy.
      jit: compile the round (False runs it op by op, for debugging).

    Returns:
      ``(state, history)``: the final state and one record per evaluation, each with ``round``,
      ``train_loss`` / ``train_accuracy`` (means over the rounds since the previous record) and
      what ``evaluate`` returned.

    Example:
      >>> algo = fed_avg(task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=10,
      ...                local_steps=4, batch_size=10)
      >>> state, history = simulate(algo.round_fn, clients, 100,
      ...                           state=algo.init(params), key=jax.random.key(0))
    """
    checkpointer = Checkpointer(checkpoint_dir, checkpoint_every) if checkpoint_dir else None
    history: list[dict] = []
    pending: list[dict] = []
    if checkpointer is not None:
        restored = checkpointer.restore(state)
        if restored is not None:
            state, history, pending = restored
    step = jax.jit(round_fn, donate_argnums=0) if jit else round_fn
    start = int(state.round)
    bar = tqdm(
        total=rounds,
        initial=start,
        disable=not progress,
        desc="rounds",
        unit="round",
        dynamic_ncols=True,
    )
    try:
        for round_number in range(start + 1, rounds + 1):
            state, metrics = step(state, clients, key)
            metrics_host = _to_host(metrics)
            pending.append(metrics_host)
            is_last = round_number == rounds
            if is_last or (eval_every > 0 and round_number % eval_every == 0):
                record = {"round": round_number}
                for name in pending[0]:
                    record[name] = float(np.mean([m[name] for m in pending]))
                pending = []
                if evaluate is not None:
                    record.update(evaluate(state))
                history.append(record)
                if on_record is not None:
                    on_record(history)
            if checkpointer is not None:
                checkpointer.save(round_number, state, history, pending, force=is_last)
            latest = history[-1] if history else {}
            bar.set_postfix(
                train_loss=f"{metrics_host['train_loss']:.3f}",
                test_acc=f"{latest.get('test_accuracy', float('nan')):.3f}",
                refresh=False,
            )
            bar.update(1)
    finally:
        bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return state, history
