"""`simulate`: runs the rounds of an algorithm with evaluation, checkpoints, resume, progress."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fedjax_sim.checkpoints import Checkpointer
from fedjax_sim.multihost import host_copy, is_writer


class DivergenceError(ValueError):
    """Training metrics or parameters became NaN or infinite; the message names the round."""


def _to_host(metrics) -> dict:
    return {name: float(value) for name, value in host_copy(metrics).items()}


@jax.jit
def _all_finite(tree) -> jax.Array:
    """Whether every floating-point entry of ``tree`` is finite (one fused reduction)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves] or [jnp.bool_(True)]))


def _own_copy(state):
    """A copy of the caller's device arrays: the compiled round donates its input state."""
    return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)


def _stop_if_diverged(round_number: int, metrics: dict, state, checkpointer) -> None:
    """Raises `DivergenceError` if the round's metrics or parameters (``state``; None: not
    checked) are NaN or infinite."""
    bad = [f"{name}={value}" for name, value in metrics.items() if not np.isfinite(value)]
    if state is not None and not bool(host_copy(_all_finite(getattr(state, "params", state)))):
        bad.append("non-finite parameters")
    if not bad:
        return
    kept = checkpointer and checkpointer.manager.latest_step()
    where = f"the last good checkpoint, of round {kept}, is kept" if kept else "no checkpoint yet"
    raise DivergenceError(
        f"training diverged in round {round_number} ({', '.join(bad)}); stopped, {where}; "
        "lower the learning rate, or set allow_nan=True to run on"
    )


def multi_round(round_fn: Callable, num_rounds: int) -> Callable:
    """``num_rounds`` rounds of ``round_fn`` as ONE function (a `lax.scan` over rounds):
    ``(state, clients, key) -> (state, metrics)`` with every metric stacked ``[num_rounds]``.

    Each round folds its number from ``state.round`` into the key, so the result equals
    ``num_rounds`` separate calls."""

    def rounds(state, clients, key):
        def body(state, _):
            return round_fn(state, clients, key)

        return jax.lax.scan(body, state, None, length=num_rounds)

    return rounds


@functools.lru_cache(maxsize=32)
def _rounds_call(round_fn: Callable, count: int, jit: bool) -> Callable:
    """The (jitted, state-donating) call running ``count`` rounds; cached, so that another
    `simulate` of the same ``round_fn`` reuses its compilation."""
    fn = round_fn if count == 1 else multi_round(round_fn, count)
    return jax.jit(fn, donate_argnums=0) if jit else fn


def _next_boundary(done: int, rounds: int, per_call: int, *everys: int) -> int:
    """The round the next call stops at: ``per_call`` rounds on, or an earlier evaluation or
    checkpoint round, or the last round."""
    stop = min(rounds, done + per_call)
    for every in everys:
        if every > 0:
            stop = min(stop, (done // every + 1) * every)
    return stop


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
    allow_nan: bool = False,
    rounds_per_call: int = 1,
):
    """Runs ``round_fn`` until ``state.round == rounds``.

    Args:
      round_fn: ``round_fn(state, clients, key) -> (state, metrics)`` from an `Algorithm`.
      clients: the `ClientData` the rounds draw from (stays on the device).
      rounds: the round number to stop at (a resumed run continues up to it).
      state: the initial state (``algorithm.init(params)``); replaced by the checkpoint if
        ``checkpoint_dir`` holds one. It stays valid: the rounds run on a copy.
      key: the run's data key, passed unchanged to every round.
      evaluate: ``evaluate(state) -> dict`` of host floats, run every ``eval_every`` rounds and
        after the last round.
      eval_every: rounds between evaluations (0: only at the end).
      checkpoint_dir, checkpoint_every: orbax checkpoints every ``checkpoint_every`` rounds and at
        the end; an existing checkpoint is resumed from.
      on_record: called with the whole history after every new record (to write it to disk).
      progress: show a tqdm bar with the round, loss and accuracy.
      jit: compile the round (False runs it op by op, for debugging).
      allow_nan: run on when a round's training metrics or ``state.params`` (the whole state
        if it has no ``params``) are NaN/inf, instead of stopping.
      rounds_per_call: rounds run by one compiled call (`multi_round`); a call also ends at
        every evaluation and checkpoint round, so records and checkpoints are unchanged and the
        results equal ``rounds_per_call=1``'s bit for bit. With divergence the state is past
        the first bad round of its call, and nothing of that call is recorded.

    Returns:
      ``(state, history)``: the final state and one record per evaluation, each with ``round``,
      ``train_loss`` / ``train_accuracy`` (means over the rounds since the previous record) and
      what ``evaluate`` returned.

    Raises:
      DivergenceError: a round's metrics or parameters are not finite (unless ``allow_nan``);
        that round is neither recorded nor checkpointed.
      CheckpointError: ``checkpoint_dir`` holds checkpoints and none is readable.
      ValueError: ``rounds`` is below the round the checkpoint reached.

    Example:
      >>> algo = fed_avg(task, optax.sgd(0.1), optax.sgd(1.0), clients_per_round=10,
      ...                local_steps=4, batch_size=10)
      >>> state, history = simulate(algo.round_fn, clients, 100,
      ...                           state=algo.init(params), key=jax.random.key(0))
    """
    checkpointer = Checkpointer(checkpoint_dir, checkpoint_every) if checkpoint_dir else None
    history: list[dict] = []
    pending: list[dict] = []
    restored = checkpointer.restore(state) if checkpointer is not None else None
    if restored is None:
        state = _own_copy(state)
    else:
        state, history, pending = restored
    if rounds_per_call < 1:
        raise ValueError(f"rounds_per_call must be >= 1, got {rounds_per_call}")

    def step(count):  # at most two lengths per run: rounds_per_call and a remainder
        return _rounds_call(round_fn, count, jit)

    start = int(state.round)
    if start > rounds:
        checkpointer.close()
        raise ValueError(
            f"rounds={rounds} is below round {start}, which the checkpoint in {checkpoint_dir} "
            "has reached"
        )
    bar = tqdm(
        total=rounds,
        initial=start,
        disable=not progress or not is_writer(),
        desc="rounds",
        unit="round",
        dynamic_ncols=True,
    )
    try:
        done = start
        while done < rounds:
            stop = _next_boundary(done, rounds, rounds_per_call, eval_every, checkpoint_every)
            state, metrics = step(stop - done)(state, clients, key)
            if stop - done == 1:
                per_round = [_to_host(metrics)]
            else:
                stacked = host_copy(metrics)
                per_round = [
                    {name: float(value[i]) for name, value in stacked.items()}
                    for i in range(stop - done)
                ]
            if not allow_nan:
                for offset, metrics_host in enumerate(per_round):
                    bad_round = done + offset + 1
                    last = offset == len(per_round) - 1
                    if last or not all(np.isfinite(v) for v in metrics_host.values()):
                        _stop_if_diverged(bad_round, metrics_host, state if last else None,
                                          checkpointer)  # fmt: skip
            pending.extend(per_round)
            done = stop
            is_last = done == rounds
            if is_last or (eval_every > 0 and done % eval_every == 0):
                record = {"round": done}
                for name in pending[0]:
                    record[name] = float(np.mean([m[name] for m in pending]))
                pending = []
                if evaluate is not None:
                    record.update(evaluate(state))
                history.append(record)
                if on_record is not None:
                    on_record(history)
            if checkpointer is not None:
                checkpointer.save(done, state, history, pending, force=is_last)
            latest = per_round[-1]
            names = [n for n in ("train_loss", "train_accuracy") if n in latest] or list(latest)
            shown = {name: f"{latest[name]:.3f}" for name in names[:2]}
            if history and "test_accuracy" in history[-1]:
                shown["test_acc"] = f"{history[-1]['test_accuracy']:.3f}"
            bar.set_postfix(shown, refresh=False)
            bar.update(len(per_round))
    finally:
        bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return state, history
