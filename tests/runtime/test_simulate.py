"""`simulate` on a tiny stand-alone round: the caller's state, any metrics, divergence, resume."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.runtime.checkpoints import Checkpointer
from fedjax_sim.runtime.simulate import DivergenceError, simulate


@flax.struct.dataclass
class State:
    params: Any
    round: jax.Array


def initial_state():
    return State(params={"w": jnp.arange(3.0)}, round=jnp.zeros((), jnp.int32))


def make_round(blow_up_in_round=0):
    """w <- w / 2 + noise(key, round); in round ``blow_up_in_round`` w becomes inf."""

    def round_fn(state, clients, key):
        del clients
        noise = jax.random.normal(jax.random.fold_in(key, state.round), (3,))
        scale = jnp.where(state.round + 1 == blow_up_in_round, jnp.inf, 0.5)
        w = state.params["w"] * scale + noise
        metrics = {"objective": jnp.sum(w**2), "norm": jnp.linalg.norm(w)}
        return state.replace(params={"w": w}, round=state.round + 1), metrics

    return round_fn


ROUND = make_round()


def test_the_callers_state_stays_usable():
    # The compiled round donates its input; simulate must run on its own copy, so that a
    # notebook cell re-run from the same initial state works and gives the same result.
    state = initial_state()
    key = jax.random.key(0)
    first, _ = simulate(ROUND, None, 3, state=state, key=key, progress=False)
    second, _ = simulate(ROUND, None, 3, state=state, key=key, progress=False)
    assert not state.params["w"].is_deleted()
    np.testing.assert_array_equal(state.params["w"], np.arange(3.0))
    np.testing.assert_array_equal(first.params["w"], second.params["w"])


def test_any_metric_names_with_a_progress_bar():
    _, history = simulate(
        ROUND, None, 4, state=initial_state(), key=jax.random.key(0), eval_every=2, progress=True
    )
    assert [sorted(r) for r in history] == [["norm", "objective", "round"]] * 2


def test_divergence_stops_at_its_round_and_keeps_the_last_good_checkpoint(tmp_path):
    round_fn = make_round(blow_up_in_round=3)
    directory = str(tmp_path / "checkpoints")
    with pytest.raises(DivergenceError) as error:
        simulate(
            round_fn,
            None,
            5,
            state=initial_state(),
            key=jax.random.key(0),
            checkpoint_dir=directory,
            checkpoint_every=2,
            progress=False,
        )
    assert str(error.value).startswith(
        "training diverged in round 3 (norm=inf, objective=inf, non-finite parameters); "
        "stopped, the last good checkpoint, of round 2, is kept"
    )
    restored, _, _ = Checkpointer(directory, every=2).restore(initial_state())
    assert int(restored.round) == 2 and np.all(np.isfinite(restored.params["w"]))

    state, history = simulate(
        round_fn,
        None,
        5,
        state=initial_state(),
        key=jax.random.key(0),
        allow_nan=True,
        progress=False,
    )
    assert int(state.round) == 5 and not np.isfinite(history[-1]["objective"])


def test_nan_parameters_alone_stop_the_run():
    def round_fn(state, clients, key):
        del clients, key
        w = jnp.where(state.round == 1, jnp.nan, state.params["w"])  # metrics stay finite
        return state.replace(params={"w": w}, round=state.round + 1), {"steps": state.round}

    with pytest.raises(DivergenceError, match=r"in round 2 \(non-finite parameters\)"):
        simulate(round_fn, None, 3, state=initial_state(), key=jax.random.key(0), progress=False)


def test_fewer_rounds_than_the_checkpoint_reached(tmp_path):
    directory = str(tmp_path / "checkpoints")
    kwargs = dict(state=initial_state(), key=jax.random.key(0), progress=False)
    simulate(ROUND, None, 4, checkpoint_dir=directory, checkpoint_every=2, **kwargs)
    with pytest.raises(ValueError, match="rounds=3 is below round 4"):
        simulate(ROUND, None, 3, checkpoint_dir=directory, checkpoint_every=2, **kwargs)
