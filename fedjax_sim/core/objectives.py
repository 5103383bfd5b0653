"""Local objectives beyond plain cross-entropy: the terms FedProx, SCAFFOLD and FedDyn add.

An objective is ``objective(params, model_state, batch, rng, context) -> (loss, (metrics,
new_model_state))`` (`fedjax_sim.core.tasks.Objective`); ``context`` is the client's per-round
dict of tensors. These wrappers add a term to the loss and leave ``metrics`` (the data loss
alone) as they are, so training curves stay comparable across algorithms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_sim.core.tasks import Objective


def _dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def with_proximal_term(objective: Objective, mu: float) -> Objective:
    """``loss + mu / 2 * ||params - context["anchor"]||^2`` (FedProx; FedDyn's quadratic)."""

    def regularized(params, model_state, batch, rng, context):
        loss, aux = objective(params, model_state, batch, rng, context)
        diff = jax.tree.map(jnp.subtract, params, context["anchor"])
        return loss + 0.5 * mu * _dot(diff, diff), aux

    return regularized


def with_linear_term(objective: Objective) -> Objective:
    """``loss + <context["linear"], params>``: its gradient adds ``context["linear"]`` to
    every step's gradient (SCAFFOLD's ``c - c_i``; FedDyn's ``-grad L_k(theta_k)``)."""

    def regularized(params, model_state, batch, rng, context):
        loss, aux = objective(params, model_state, batch, rng, context)
        return loss + _dot(context["linear"], params), aux

    return regularized
