"""FedProx (Li et al. 2020): FedAvg whose clients minimize ``F_k(w) + mu/2 ||w - w_t||^2``.

The proximal term keeps each client near the round's global model ``w_t`` (its anchor); with
``mu = 0`` FedProx is FedAvg, bit for bit. (The paper's other half, tolerating clients that do
less work, is the round's ``local_work`` option.)
"""

from __future__ import annotations

import optax

from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.core.objectives import with_proximal_term
from fedjax_sim.core.round import FederatedParts
from fedjax_sim.core.tasks import Objective


def fedprox_parts(
    objective: Objective,
    client_tx: optax.GradientTransformation,
    server_tx: optax.GradientTransformation,
    *,
    mu: float,
    **options,
) -> FederatedParts:
    """FedProx's parts: `fedavg_parts` with the proximal objective.

    Args:
      objective: the data objective (cross-entropy).
      client_tx, server_tx: client and server optimizers.
      mu: the proximal coefficient, >= 0 (unchecked: it may be traced; the config checks
        ``fedprox.mu``).
      **options: other `fedavg_parts` options.
    """
    return fedavg_parts(
        with_proximal_term(objective, mu),
        client_tx,
        server_tx,
        context=lambda state, inputs: {"anchor": state.params},
        **options,
    )
