"""q-FedAvg (Li, Sanjabi, Beirami and Smith 2020, "Fair Resource Allocation in Federated
Learning", Algorithm 2): FedAvg's clients, and a server step that weighs each client by its loss
to the power q, for the q-FFL objective ``sum_k p_k F_k^(q+1) / (q + 1)``.

Client k of the round starts from the server model w, measures its loss ``F_k = F_k(w)``, runs
its local steps to ``wbar_k`` and reports its delta ``wbar_k - w`` with the one scalar F_k. With
``L = 1 / eta`` (eta the client learning rate) and ``F = F_k + 1e-10``:

    DeltaW_k = L (w - wbar_k)
    Delta_k  = F^q DeltaW_k
    h_k      = q F^(q-1) ||DeltaW_k||^2 + L F^q        (the norm over all parameters, flattened)
    w       <- w - sum_k Delta_k / sum_k h_k

These are the official code's (github.com/litian96/fair_flearn, ``flearn/trainers/qffedavg.py``),
its ``+ 1e-10`` included (it matters for a zero loss only). q = 0 is FedAvg's uniform mean with
server learning rate 1. The server step is an aggregator, `qffl_mean`, in FedAvg's chain
``(aggregator, scale(-1), server_tx)``: server SGD with learning rate 1 is the paper's update,
another server optimizer takes ``-(w_new - w)`` as its pseudo-gradient.

F_k is the mean data loss (the objective's ``metrics``: ``loss_sum / count``) at w, without the
training key (no augmentation, no dropout), over every unmasked example of the batches the
client's local steps read this round, repeats included. With ``local_epochs`` E and J B >= E n_k
those batches are E whole passes over the client's data, so F_k is its mean loss over its
training set, the official code's ``c.get_loss()``; otherwise an estimate from the batches its
training reads. It costs one forward pass per local step.

Weights: Algorithm 2 sums over the round's clients alike, however they were drawn (the paper's
experiments draw them with probability proportional to n_k: ``selection.name="proportional"``).
The round's aggregation weights w_k multiply both sums, ``sum_k w_k Delta_k / sum_k w_k h_k``:
``weighting="uniform"`` (what ``"auto"`` resolves to) is Algorithm 2 over the clients that
reported, ``"examples"`` the full-participation step for ``p_k`` proportional to n_k.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.core.engine import split_batch
from fedjax_sim.core.round import ClientInput, ClientOutput, FederatedParts, ServerState
from fedjax_sim.core.tasks import Objective
from fedjax_sim.data.client_data import ClientData, gather_batch

LOSS_GUARD = 1e-10  # the official code's np.float_power(loss + 1e-10, q)


def qffl_mean(q, learning_rate) -> optax.GradientTransformationExtraArgs:
    """q-FedAvg's aggregator: the step ``-sum_k w_k Delta_k / sum_k w_k h_k`` (module
    docstring) from the clients' deltas ``wbar_k - w``, ``weights=[C]`` and ``loss=[C]``, their
    F_k(w); zero when no client has weight.

    Args:
      q: the fairness parameter (>= 0); may be traced.
      learning_rate: eta of the client SGD, ``L = 1 / eta``; may be traced.

    Example:
      >>> server = optax.chain(qffl_mean(1.0, 0.1), optax.scale(-1.0), optax.sgd(1.0))
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(deltas_C, state, params=None, *, weights, loss, **extra_args):
        del params, extra_args
        lipschitz = 1.0 / learning_rate
        f_C = loss + LOSS_GUARD
        fq_C = jnp.power(f_C, q)
        # DeltaW_k = -L delta_k, so ||DeltaW_k||^2 = L^2 ||delta_k||^2.
        sq_norm_C = sum(
            jnp.sum(jnp.square(d.reshape(d.shape[0], -1)), axis=1)
            for d in jax.tree.leaves(deltas_C)
        )
        h_C = q * jnp.power(f_C, q - 1) * lipschitz**2 * sq_norm_C + lipschitz * fq_C
        total = jnp.sum(weights * h_C)
        # w_new - w = -sum w_k Delta_k / total = sum (w_k L F_k^q / total) delta_k
        scale = weights * lipschitz * fq_C / jnp.where(total > 0, total, 1.0)
        scale = jnp.where(total > 0, scale, 0.0)
        step = jax.tree.map(lambda d: jnp.tensordot(scale.astype(d.dtype), d, axes=1), deltas_C)
        return step, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def make_start_loss(objective: Objective, *, unroll: int | bool = 1):
    """``start_loss(params, model_state, data, indices_JxB, mask_JxB) -> F``: the mean data
    loss of ``objective`` (its ``metrics``, ``loss_sum / count``) at ``params`` over the
    unmasked examples of the J batches, called without a key or context; 0 when none is
    unmasked."""

    def start_loss(params, model_state, data: ClientData, indices_JxB, mask_JxB):
        def add_batch(sums, inputs):
            batch = split_batch(gather_batch(data, *inputs))
            _, (metrics, _) = objective(params, model_state, batch, None, None)
            loss_sum, count = sums
            return (loss_sum + metrics["loss_sum"], count + metrics["count"]), None

        zero = jnp.zeros((), jnp.float32)
        (loss_sum, count), _ = jax.lax.scan(
            add_batch, (zero, zero), (indices_JxB, mask_JxB), unroll=unroll
        )
        return loss_sum / jnp.maximum(count, 1.0)

    return start_loss


def qfedavg_parts(
    objective: Objective,
    client_tx: optax.GradientTransformation,
    server_tx: optax.GradientTransformation,
    *,
    q,
    learning_rate,
    unroll: int | bool = 1,
    **options,
) -> FederatedParts:
    """q-FedAvg's parts: `fedavg_parts` whose clients also report F_k(w), with `qffl_mean` as
    the aggregator.

    Args:
      objective: the data objective (cross-entropy); F_k calls it without a key or context.
      client_tx: the client optimizer: SGD with learning rate ``learning_rate`` (Algorithm 2's
        local solver; ``L = 1 / learning_rate`` assumes it).
      server_tx: the server optimizer (SGD with learning rate 1: the paper's step).
      q: the fairness parameter, >= 0 (0: FedAvg's uniform mean); may be traced.
      learning_rate: eta, the client learning rate, > 0; may be traced.
      unroll: ``unroll`` of the local-step scan and of F_k's.
      **options: other `fedavg_parts` options (``num_clients``, ``model_state``,
        ``client_optimizer_state``).

    Raises:
      ValueError: a number ``q < 0`` or ``learning_rate <= 0``.

    Example:
      >>> parts = qfedavg_parts(cross_entropy(task), optax.sgd(0.1), optax.sgd(1.0), q=1.0,
      ...                       learning_rate=0.1)
      >>> algo = federated_algorithm(parts, sampler=uniform(10), local_steps=8, batch_size=32,
      ...                            weighting="uniform")
    """
    if isinstance(q, (int, float)) and not q >= 0:  # a traced value was checked by the config
        raise ValueError(f"qffl.q must be >= 0, got {q}")
    if isinstance(learning_rate, (int, float)) and not learning_rate > 0:
        raise ValueError(f"q-FedAvg's client learning_rate must be > 0, got {learning_rate}")
    parts = fedavg_parts(
        objective,
        client_tx,
        server_tx,
        aggregator=qffl_mean(q, learning_rate),
        unroll=unroll,
        **options,
    )
    start_loss = make_start_loss(objective, unroll=unroll)

    def client_update(state: ServerState, clients: ClientData, inputs: ClientInput):
        output: ClientOutput = parts.client_update(state, clients, inputs)
        model_state = inputs.client_state.get("model_state", state.model_state)
        loss = start_loss(state.params, model_state, clients, inputs.indices_JxB, inputs.mask_JxB)
        return output._replace(extras={**output.extras, "loss": loss})

    return parts._replace(client_update=client_update)
