"""SCAFFOLD (Karimireddy et al. 2020, Algorithm 1): control variates correct client drift.

Server control variate ``c`` and client control variates ``c_i`` (per-client state of all K
clients, zero at the start). A sampled client starts from the global ``x`` and takes its J
steps on the corrected gradient ``g_i(y) - c_i + c`` (here the objective's linear term
``<c - c_i, y>``), then updates its control variate:

  * option I:  ``c_i+ = g_i(x)``, the gradient of its data loss at ``x``, here averaged over
    the round's J batches (J more gradient evaluations);
  * option II: ``c_i+ = c_i - c + (x - y_i) / (K_i * lr)``, with K_i its steps taken and lr the
    client learning rate (exact for client SGD without momentum).

It reports ``Delta y_i = y_i - x`` and ``Delta c_i = c_i+ - c_i``. The server applies its
optimizer to the mean of ``Delta y`` under the round's weights (server SGD at learning rate
eta_g with uniform weights, the config's default for scaffold, is the paper's
``x + eta_g / |S| sum_i Delta y_i``) and sets ``c <- c + (1/N) sum_i Delta c_i`` over the
clients that reported. With zero control variates the first round is FedAvg's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.algorithms.fedavg import mean_model_state
from fedjax_sim.core import aggregation
from fedjax_sim.core.local import make_local_steps
from fedjax_sim.core.objectives import with_linear_term
from fedjax_sim.core.round import (
    ClientOutput,
    FederatedParts,
    ServerState,
    new_server_state,
    replicate_for_clients,
)
from fedjax_sim.core.tasks import Objective
from fedjax_sim.data.client_data import gather_batch

OPTIONS = ("I", "II")


def mean_gradient(objective: Objective, params, model_state, clients, indices_JxB, mask_JxB, rng):
    """The data objective's gradient at ``params``, averaged over the unmasked batches."""
    grad_fn = jax.grad(lambda p, batch, r: objective(p, model_state, batch, r, None)[0])

    def step(total, inputs):
        indices_B, mask_B, step_rng = inputs
        active = jnp.any(mask_B)
        grads = grad_fn(params, gather_batch(clients, indices_B, mask_B), step_rng)
        return jax.tree.map(lambda t, g: t + jnp.where(active, g, 0.0), total, grads), active

    rngs = jax.random.split(rng, indices_JxB.shape[0])
    zeros = jax.tree.map(jnp.zeros_like, params)
    total, active_J = jax.lax.scan(step, zeros, (indices_JxB, mask_JxB, rngs))
    count = jnp.maximum(active_J.sum(), 1).astype(jnp.float32)
    return jax.tree.map(lambda t: t / count, total)


def scaffold_parts(
    objective: Objective,
    client_tx: optax.GradientTransformation,
    server_tx: optax.GradientTransformation,
    *,
    num_clients: int,
    client_learning_rate: float,
    option: str = "II",
    aggregator: optax.GradientTransformationExtraArgs | None = None,
    unroll: int | bool = 1,
) -> FederatedParts:
    """SCAFFOLD's parts.

    Args:
      objective: the data objective.
      client_tx: the client optimizer (plain SGD at ``client_learning_rate`` for the paper's).
      server_tx: the server optimizer on the negated mean ``Delta y`` (SGD at eta_g).
      num_clients: N, the population (every client keeps a control variate).
      client_learning_rate: eta_l of option II.
      option: ``"I"`` or ``"II"``, the control update.
      aggregator: of ``Delta y``; defaults to `aggregation.weighted_mean`.
      unroll: ``unroll`` of the local-step scan.
    """
    if option not in OPTIONS:
        raise ValueError(f"scaffold.option must be one of {list(OPTIONS)}, got {option!r}")
    setup = _ScaffoldSetup(
        objective=objective,
        client_tx=client_tx,
        server_chain=aggregation.server_chain(server_tx, aggregator),
        run_local=make_local_steps(with_linear_term(objective), client_tx, unroll=unroll),
        num_clients=num_clients,
        client_learning_rate=client_learning_rate,
        option=option,
    )
    return FederatedParts(
        client_update=functools.partial(_client_update, setup),
        server_update=functools.partial(_server_update, setup),
        init=functools.partial(_init, setup),
    )


class _ScaffoldSetup(NamedTuple):
    """`scaffold_parts`' arguments, with ``server_chain`` the whole server step and
    ``run_local`` the client's J steps on the corrected objective."""

    objective: Objective
    client_tx: optax.GradientTransformation
    server_chain: optax.GradientTransformationExtraArgs
    run_local: Callable
    num_clients: int
    client_learning_rate: float
    option: str


def _init(setup: _ScaffoldSetup, variables) -> ServerState:
    """Zero control variates, the server's and every client's."""
    zeros = jax.tree.map(jnp.zeros_like, variables["params"])
    return new_server_state(
        variables,
        setup.server_chain.init(variables["params"]),
        clients={"control": replicate_for_clients(zeros, setup.num_clients)},
        extra={"control": zeros},
    )


def _client_update(setup: _ScaffoldSetup, state: ServerState, clients, inputs) -> ClientOutput:
    """ONE client's corrected steps, its ``Delta y`` and new control variate (kept as it was
    by a client that took no step), with ``Delta c`` in the extras."""
    x, c, c_i = state.params, state.extra["control"], inputs.client_state["control"]
    result = setup.run_local(
        x, state.model_state, setup.client_tx.init(x), clients, inputs.indices_JxB,
        inputs.mask_JxB, inputs.rng, {"linear": jax.tree.map(jnp.subtract, c, c_i)},
    )  # fmt: skip
    delta_y = jax.tree.map(jnp.subtract, result.params, x)
    if setup.option == "I":
        new_c_i = mean_gradient(
            setup.objective, x, state.model_state, clients, inputs.indices_JxB,
            inputs.mask_JxB, inputs.rng,
        )  # fmt: skip
    else:
        scale = 1.0 / (jnp.maximum(result.steps, 1) * setup.client_learning_rate)
        new_c_i = jax.tree.map(lambda ci, cc, d: ci - cc - scale * d, c_i, c, delta_y)
    new_c_i = jax.tree.map(lambda n, o: jnp.where(result.steps > 0, n, o), new_c_i, c_i)
    delta_c = jax.tree.map(jnp.subtract, new_c_i, c_i)
    return ClientOutput(
        delta_y, result.model_state, {"control": new_c_i}, result.metrics, {"dc": delta_c}
    )


def _server_update(setup: _ScaffoldSetup, state: ServerState, outputs_C, weights_C):
    """The server chain on the mean ``Delta y``; ``c`` moved by the reported ``Delta c``."""
    updates, opt_state = setup.server_chain.update(
        outputs_C.delta, state.opt_state, state.params, weights=weights_C
    )
    moved = aggregation.population_mean(outputs_C.extras["dc"], weights_C, setup.num_clients)
    return state.replace(
        params=optax.apply_updates(state.params, updates),
        model_state=mean_model_state(outputs_C.model_state, weights_C, state.model_state),
        opt_state=opt_state,
        extra={"control": jax.tree.map(jnp.add, state.extra["control"], moved)},
    )
