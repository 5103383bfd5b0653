"""FedDyn (Acar et al. 2021, Algorithm 1): dynamic regularization.

Every client k keeps ``g_k``, its last ``grad L_k(theta_k)`` (per-client state of all K
clients, zero at the start). A sampled client minimizes, from the global ``theta^{t-1}``,

    L_k(theta) - <g_k, theta> + alpha/2 ||theta - theta^{t-1}||^2

for J steps, then ``g_k <- g_k - alpha (theta_k^t - theta^{t-1})``. The server keeps ``h``:

    h^t = h^{t-1} - alpha (1/m) sum_{k in P_t} (theta_k^t - theta^{t-1})
    theta^t = mean_{k in P_t} theta_k^t - h^t / alpha

with m = K the population. The mean uses the round's aggregation weights: the paper's is
uniform, ``weighting="uniform"``, the config's default for feddyn (``"examples"`` weights
each client by n_k instead). The paper's server step replaces a server optimizer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.algorithms.fedavg import mean_model_state
from fedjax_sim.core import aggregation
from fedjax_sim.core.local import make_local_steps
from fedjax_sim.core.objectives import with_linear_term, with_proximal_term
from fedjax_sim.core.round import (
    ClientOutput,
    FederatedParts,
    ServerState,
    new_server_state,
    replicate_for_clients,
)
from fedjax_sim.core.tasks import Objective


def feddyn_parts(
    objective: Objective,
    client_tx: optax.GradientTransformation,
    *,
    num_clients: int,
    alpha: float,
    unroll: int | bool = 1,
) -> FederatedParts:
    """FedDyn's parts.

    Args:
      objective: the data objective.
      client_tx: the client optimizer.
      num_clients: m = K, the population.
      alpha: the regularization coefficient, > 0 (unchecked: it may be traced; the config
        checks ``feddyn.alpha``).
      unroll: ``unroll`` of the local-step scan.
    """
    run_local = make_local_steps(
        with_proximal_term(with_linear_term(objective), alpha), client_tx, unroll=unroll
    )
    mean = aggregation.weighted_mean()

    def init(variables) -> ServerState:
        zeros = jax.tree.map(jnp.zeros_like, variables["params"])
        return new_server_state(
            variables,
            optax.EmptyState(),
            clients={"grad": replicate_for_clients(zeros, num_clients)},
            extra={"h": zeros},
        )

    def client_update(state: ServerState, clients, inputs) -> ClientOutput:
        theta, g_k = state.params, inputs.client_state["grad"]
        result = run_local(
            theta,
            state.model_state,
            client_tx.init(theta),
            clients,
            inputs.indices_JxB,
            inputs.mask_JxB,
            inputs.rng,
            {"anchor": theta, "linear": jax.tree.map(jnp.negative, g_k)},
        )
        delta = jax.tree.map(jnp.subtract, result.params, theta)
        new_g_k = jax.tree.map(lambda g, d: g - alpha * d, g_k, delta)
        return ClientOutput(delta, result.model_state, {"grad": new_g_k}, result.metrics, {})

    def server_update(state: ServerState, outputs_C: ClientOutput, weights_C) -> ServerState:
        mean_delta, _ = mean.update(outputs_C.delta, optax.EmptyState(), weights=weights_C)
        moved = aggregation.population_mean(outputs_C.delta, weights_C, num_clients)
        h = jax.tree.map(lambda h, m: h - alpha * m, state.extra["h"], moved)
        params = jax.tree.map(lambda p, d, h: p + d - h / alpha, state.params, mean_delta, h)
        return state.replace(
            params=params,
            model_state=mean_model_state(outputs_C.model_state, weights_C, state.model_state),
            extra={"h": h},
        )

    return FederatedParts(client_update=client_update, server_update=server_update, init=init)
