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
    server_chain = aggregation.server_chain(server_tx, aggregator)
    run_local = make_local_steps(with_linear_term(objective), client_tx, unroll=unroll)

    def init(variables) -> ServerState:
        zeros = jax.tree.map(jnp.zeros_like, variables["params"])
        return new_server_state(
            variables,
            server_chain.init(variables["params"]),
            clients={"control": replicate_for_clients(zeros, num_clients)},
            extra={"control": zeros},
        )

    def client_update(state: ServerState, clients, inputs) -> ClientOutput:
        x, c, c_i = state.params, state.extra["control"], inputs.client_state["control"]
        result = run_local(
            x,
            state.model_state,
            client_tx.init(x),
            clients,
            inputs.indices_JxB,
            inputs.mask_JxB,
            inputs.rng,
            {"linear": jax.tree.map(jnp.subtract, c, c_i)},
        )
        delta_y = jax.tree.map(jnp.subtract, result.params, x)
        if option == "I":
            new_c_i = mean_gradient(
                objective, x, state.model_state, clients, inputs.indices_JxB,
                inputs.mask_JxB, inputs.rng,
            )  # fmt: skip
        else:
            scale = 1.0 / (jnp.maximum(result.steps, 1) * client_learning_rate)
            new_c_i = jax.tree.map(lambda ci, cc, d: ci - cc - scale * d, c_i, c, delta_y)
        new_c_i = jax.tree.map(lambda n, o: jnp.where(result.steps > 0, n, o), new_c_i, c_i)
        delta_c = jax.tree.map(jnp.subtract, new_c_i, c_i)
        return ClientOutput(
            delta_y, result.model_state, {"control": new_c_i}, result.metrics, {"dc": delta_c}
        )

    def server_update(state: ServerState, outputs_C: ClientOutput, weights_C) -> ServerState:
        updates, opt_state = server_chain.update(
            outputs_C.delta, state.opt_state, state.params, weights=weights_C
        )
        reported = (weights_C > 0).astype(jnp.float32) / num_clients
        control = jax.tree.map(
            lambda c, dc: c + jnp.tensordot(reported, dc, axes=1),
            state.extra["control"],
            outputs_C.extras["dc"],
        )
        return state.replace(
            params=optax.apply_updates(state.params, updates),
            model_state=mean_model_state(outputs_C.model_state, weights_C, state.model_state),
            opt_state=opt_state,
            extra={"control": control},
        )

    return FederatedParts(client_update=client_update, server_update=server_update, init=init)
