"""`simulate`: runs the rounds of an algorithm with evaluation, checkpoints, resume, progress."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fedjax_sim.runtime.checkpoints import Checkpointer
from fedjax_sim.runtime.multihost import host_copy, is_writer


class DivergenceError(ValueError):
    """Training metrics or parameters became NaN or infinite; the message names the round."""


def _host_metrics(metrics, count: int, runs: int) -> list[list[dict]]:
    """``[round][run] -> {name: float}`` of a call's metrics (stacked ``[count]`` when ``count >
    1``, then ``[runs]`` when ``runs``)."""
    host = {name: np.asarray(value) for name, value in host_copy(metrics).items()}
    return [
        [
            {name: float(value[(i,) * (count > 1) + (r,) * (runs > 0)])
             for name, value in host.items()}
            for r in range(max(runs, 1))
        ]
        for i in range(count)
    ]  # fmt: skip


def run_slice(stacked, run: int):
    """Run ``run`` of a state (or any pytree) stacked along a leading run axis."""
    return jax.tree.map(lambda x: x[run], stacked)


def stack_runs(trees):
    """The pytrees of independent runs stacked along a new leading run axis (PRNG keys too)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@jax.jit
def _all_finite(tree) -> jax.Array:
    """Whether every floating-point entry of ``tree`` is finite (one fused reduction)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves] or [jnp.bool_(True)]))


def _own_copy(state):
    """A copy of the caller's device arrays: the compiled round donates its input state."""
    return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)


def _stop_if_diverged(round_number: int, runs: list[dict], state, checkpointer) -> None:
    """Raises `DivergenceError` if the round's metrics (one dict per run) or parameters
    (``state``; None: not checked) are NaN or infinite."""
    bad = [
        f"{name}={value}" if len(runs) == 1 else f"run {r}: {name}={value}"
        for r, metrics in enumerate(runs)
        for name, value in metrics.items()
        if not np.isfinite(value)
    ]
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
def over_runs(round_fn: Callable) -> Callable:
    """``round_fn`` over a leading run axis of the state and the key, the clients shared: N
    independent runs as one vectorized program (cached, so its compilation is reused)."""
    return jax.vmap(round_fn, in_axes=(0, None, 0))


@functools.lru_cache(maxsize=32)
def _rounds_call(round_fn: Callable, count: int, jit: bool, runs: bool = False) -> Callable:
    """The (jitted, state-donating) call running ``count`` rounds; cached, so that another
    `simulate` of the same ``round_fn`` reuses its compilation."""
    fn = over_runs(round_fn) if runs else round_fn
    fn = fn if count == 1 else multi_round(fn, count)
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
    on_resume: Callable[[int], None] | None = None,
    progress: bool = True,
    jit: bool = True,
    allow_nan: bool = False,
    rounds_per_call: int = 1,
    runs: int = 0,
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
      on_resume: called with the checkpoint's round when the run resumes from one.
      progress: show a tqdm bar with the round, loss and accuracy.
      jit: compile the round (False runs it op by op, for debugging).
      allow_nan: run on when a round's training metrics or ``state.params`` (the whole state
        if it has no ``params``) are NaN/inf, instead of stopping.
      rounds_per_call: rounds run by one compiled call (`multi_round`); a call also ends at
        every evaluation and checkpoint round, so records and checkpoints are unchanged and the
        results equal ``rounds_per_call=1``'s bit for bit. With divergence the state is past
        the first bad round of its call, and nothing of that call is recorded.
      runs: 0 for one run; N for N independent runs in one vectorized program (`over_runs`):
        ``state`` and ``key`` then carry a leading axis of N (`stack_runs`), ``evaluate`` is
        one function per run (a sequence of N) or one for all, called with that run's state
        (`run_slice`), and every run's history is kept. Each run computes what it would alone,
        up to the float rounding of batched kernels.

    Returns:
      ``(state, history)``: the final state and one record per evaluation, each with ``round``,
      ``train_loss`` / ``train_accuracy`` (means over the rounds since the previous record) and
      what ``evaluate`` returned. With ``runs``: ``(stacked state, [history of each run])``;
      ``on_record`` then receives that list too.

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
    if rounds_per_call < 1:
        raise ValueError(f"rounds_per_call must be >= 1, got {rounds_per_call}")
    checkpointer = Checkpointer(checkpoint_dir, checkpoint_every) if checkpoint_dir else None
    state, records = _starting_point(checkpointer, state, runs, evaluate)
    start = int(np.asarray(host_copy(state.round)).reshape(-1)[0])  # runs are in lockstep
    if start > rounds:
        if checkpointer is not None:
            checkpointer.close()
        raise ValueError(
            f"rounds={rounds} is below round {start}, which the checkpoint in {checkpoint_dir} "
            "has reached"
        )
    if on_resume is not None and checkpointer is not None and start > 0:
        on_resume(start)
    bar = _progress_bar(rounds, start, progress)
    try:
        done = start
        while done < rounds:
            stop = _next_boundary(done, rounds, rounds_per_call, eval_every, checkpoint_every)
            # at most two lengths per run: rounds_per_call and a remainder
            call = _rounds_call(round_fn, stop - done, jit, runs > 0)
            state, metrics = call(state, clients, key)
            per_round = _host_metrics(metrics, stop - done, runs)
            if not allow_nan:
                _stop_at_first_divergence(done, per_round, state, checkpointer)
            records.add(per_round)
            done = stop
            if done == rounds or (eval_every > 0 and done % eval_every == 0):
                records.record(done, state)
                if on_record is not None:
                    on_record(records.history)
            if checkpointer is not None:
                checkpointer.save(
                    done, state, records.history, records.pending, force=done == rounds
                )
            _show_progress(bar, per_round, records.histories)
    finally:
        bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return state, records.history


class _Records:
    """Every run's history, the metrics of the rounds since its last record (``pendings``),
    and its ``evaluate`` (one per run)."""

    def __init__(self, histories, pendings, runs: int, evaluate):
        self.histories, self.pendings, self.runs = histories, pendings, runs
        count_runs = len(histories)
        many = isinstance(evaluate, (list, tuple))
        self.evaluates = list(evaluate) if many else [evaluate] * count_runs

    @property
    def history(self):
        """The histories as checkpoints and callers see them: the list with ``runs``, else the
        one run's (one run keeps the format of before: its history, not a list of them)."""
        return self.histories if self.runs else self.histories[0]

    @property
    def pending(self):
        """The pending metrics as checkpoints see them (as `history`)."""
        return self.pendings if self.runs else self.pendings[0]

    def add(self, per_round: list[list[dict]]) -> None:
        """Appends a call's ``[round][run]`` metrics to each run's pending ones."""
        for r, pending in enumerate(self.pendings):
            pending.extend(row[r] for row in per_round)

    def record(self, round_number: int, state) -> None:
        """One record per run: the means of its pending metrics and its evaluation."""
        for r, (history, pending) in enumerate(zip(self.histories, self.pendings, strict=True)):
            record = {"round": round_number}
            for name in pending[0]:
                record[name] = float(np.mean([m[name] for m in pending]))
            if self.evaluates[r] is not None:
                record.update(self.evaluates[r](run_slice(state, r) if self.runs else state))
            history.append(record)
        self.pendings = [[] for _ in self.histories]


def _starting_point(checkpointer, state, runs: int, evaluate) -> tuple[Any, _Records]:
    """``(state, records)`` to start from: the newest checkpoint's, else a copy of ``state``
    (the compiled round donates it) and empty histories."""
    count_runs = max(runs, 1)
    restored = checkpointer.restore(state) if checkpointer is not None else None
    if restored is None:
        empty = [[] for _ in range(count_runs)], [[] for _ in range(count_runs)]
        return _own_copy(state), _Records(*empty, runs, evaluate)
    state, saved_history, saved_pending = restored
    if runs:
        return state, _Records(saved_history, saved_pending, runs, evaluate)
    return state, _Records([saved_history], [saved_pending], runs, evaluate)


def _stop_at_first_divergence(done: int, per_round, state, checkpointer) -> None:
    """`_stop_if_diverged` for the first of a call's rounds (``[round][run]`` metrics, the
    first being round ``done + 1``) whose metrics are not finite, and for the last round's
    metrics and parameters (the only state the call returns)."""
    for offset, metrics_host in enumerate(per_round):
        last = offset == len(per_round) - 1
        finite = all(np.isfinite(v) for m in metrics_host for v in m.values())
        if last or not finite:
            _stop_if_diverged(done + offset + 1, metrics_host, state if last else None,
                              checkpointer)  # fmt: skip


def _progress_bar(rounds: int, start: int, progress: bool):
    """A tqdm bar of the rounds from ``start`` to ``rounds``, shown only by the writer."""
    return tqdm(
        total=rounds,
        initial=start,
        disable=not progress or not is_writer(),
        desc="rounds",
        unit="round",
        dynamic_ncols=True,
    )


def _show_progress(bar, per_round, histories) -> None:
    """The bar advanced by a call's rounds, showing the last round's loss and accuracy (the
    mean over runs) and the last recorded test accuracy."""
    latest = per_round[-1]
    names = [n for n in ("train_loss", "train_accuracy") if n in latest[0]] or list(latest[0])
    shown = {name: f"{np.nanmean([m[name] for m in latest]):.3f}" for name in names[:2]}
    if histories[0] and "test_accuracy" in histories[0][-1]:
        accuracy = np.nanmean([h[-1]["test_accuracy"] for h in histories])
        shown["test_acc"] = f"{accuracy:.3f}"
    bar.set_postfix(shown, refresh=False)
    bar.update(len(per_round))
