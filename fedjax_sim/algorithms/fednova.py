"""FedNova (Wang et al. 2020): normalized averaging for clients that run different numbers of
local steps.

Client i runs tau_i steps of SGD with momentum rho and reports its delta Delta_i and the norm
of its aggregation vector, ``a_i = [tau_i - rho (1 - rho^tau_i) / (1 - rho)] / (1 - rho)``
(``a_i = tau_i`` without momentum). The server averages the normalized deltas and rescales by
the effective number of steps, with p_i the aggregation weights normalized to sum 1:

    Delta = tau_eff * sum_i p_i Delta_i / a_i,   tau_eff = sum_i p_i a_i

and applies the server optimizer to ``-Delta`` (server SGD with learning rate 1 is the paper's
update). When every client runs the same tau steps, FedNova is FedAvg.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.core import aggregation
from fedjax_sim.core.round import FederatedParts
from fedjax_sim.core.tasks import Objective


def momentum_steps_norm(steps, momentum: float):
    """``a_i``, the l1 norm of a client's aggregation vector after ``steps`` momentum steps."""
    steps = steps.astype(jnp.float32)
    if not momentum:
        return steps
    rho = momentum
    return (steps - rho * (1 - rho**steps) / (1 - rho)) / (1 - rho)


def normalized_mean() -> optax.GradientTransformationExtraArgs:
    """FedNova's aggregator: ``tau_eff * sum p_i delta_i / a_i`` with ``local_work=a_C``."""

    def mean(deltas_C, weights, *, local_work, **_):
        p = aggregation.normalized_weights(weights)
        a = jnp.maximum(local_work, 1e-12)  # a client with no step has a zero delta anyway
        tau_eff = jnp.sum(p * local_work)
        return aggregation.weighted_sum(tau_eff * p / a, deltas_C)

    return aggregation.stateless_aggregator(mean)


def fednova_parts(
    objective: Objective,
    client_tx: optax.GradientTransformation,
    server_tx: optax.GradientTransformation,
    *,
    client_momentum: float = 0.0,
    **options,
) -> FederatedParts:
    """FedNova's parts: `fedavg_parts` with the normalized aggregator.

    Args:
      objective: the local objective.
      client_tx: the client optimizer: SGD with momentum ``client_momentum`` (``a_i`` is
        derived for that optimizer).
      server_tx: the server optimizer.
      client_momentum: rho of the client SGD.
      **options: other `fedavg_parts` options.
    """
    return fedavg_parts(
        objective,
        client_tx,
        server_tx,
        aggregator=normalized_mean(),
        client_extras=lambda inputs, result: {
            "local_work": momentum_steps_norm(result.steps, client_momentum)
        },
        **options,
    )
