"""Personalized federated learning: every client keeps a model of its own, all K on the device.

Split methods share part of the model and keep the rest per client (`fedavg_parts` with
``local_parameters``; the head is the model's last top-level module, `head_predicate`):
  * FedPer (Arivazhagan et al. 2019): the head is local, the body averaged.
  * LG-FedAvg (Liang et al. 2020): the body (the representation) is local, the head averaged.
  * FedRep (Collins et al. 2021): the head is local; in each round's J local steps the first
    ``head_steps`` train the head alone (body fixed), the rest the body alone (head fixed),
    each part with its own client optimizer state (`alternating_updates`).
  * FedBABU (Oh et al. 2022): the head stays frozen at its random initialization for everyone
    (only the body is trained and averaged); clients fine-tune the whole model at evaluation
    (`fedjax_sim.core.finetune`).
Two-model methods keep a full personal copy ``v_k`` per client, trained beside the global
``w`` in the same local steps by one optimizer over the pair ``{"global": w, "personal": v}``
(optax is per leaf, so this is two optimizers with the same settings); ``w``'s delta goes to
the server as FedAvg's:
  * Ditto (Li et al. 2021): ``w`` minimizes ``F_k(w)``; ``v_k`` minimizes
    ``F_k(v) + lambda/2 ||v - w_t||^2`` (``w_t``: the round's global model). The personal
    model is ``v_k``.
  * APFL (Deng et al. 2020), fixed mixing ``alpha``: ``w`` steps on ``grad F_k(w)``, ``v_k``
    on ``grad_v F_k(alpha v + (1 - alpha) w)``; the personal model is
    ``alpha v_k + (1 - alpha) w``. (The paper's adaptive alpha is not implemented.)
Two-model personal models use the global model's state (BatchNorm statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.algorithms.fedavg import fedavg_parts
from fedjax_sim.core.local import make_local_steps
from fedjax_sim.core.round import (
    ClientOutput,
    FederatedParts,
    ServerState,
    replicate_for_clients,
)
from fedjax_sim.core.tasks import Objective

PERSONALIZATION = ("fedper", "lg_fedavg", "fedrep", "fedbabu", "ditto", "apfl")


def head_predicate(params, names: str = "auto") -> Callable[[tuple[str, ...]], bool]:
    """``path -> bool``, true for the head's parameters.

    Args:
      params: the model's parameters (top-level entries in the order the model creates them).
      names: ``"auto"`` (the last top-level module: the output layer) or comma-separated
        top-level names (e.g. ``"Dense_1,Dense_2"``).

    Raises:
      ValueError: a name that is not a top-level entry of ``params``.
    """
    top = list(params)
    chosen = {top[-1]} if names == "auto" else {n.strip() for n in names.split(",")}
    unknown = sorted(chosen - set(top))
    if unknown:
        raise ValueError(f"personal.head names {unknown}, not among the model's layers {top}")
    if len(chosen) == len(top):
        raise ValueError(f"personal.head={names!r} takes every layer; the body would be empty")
    return lambda path: path[0] in chosen


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _where_path(tree, predicate, keep_true):
    """``tree`` with the leaves whose path satisfies ``predicate == keep_true`` kept, the
    others zero (``keep_true`` may be traced)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, u: jnp.where(predicate(_path_names(path)) == keep_true, u, jnp.zeros_like(u)),
        tree,
    )


class AlternatingState(NamedTuple):
    """`alternating_updates`'s state: ``count``, the updates taken since the round began, and
    ``first`` and ``second``, each part's own state of the inner optimizer."""

    count: jax.Array
    first: optax.OptState
    second: optax.OptState


def _part_mask(predicate: Callable, want: bool) -> Callable:
    return lambda tree: jax.tree_util.tree_map_with_path(
        lambda path, _: predicate(_path_names(path)) == want, tree
    )


def alternating_updates(
    inner: optax.GradientTransformation, first: Callable, first_steps: int
) -> optax.GradientTransformation:
    """FedRep's local schedule (Collins et al. 2021, Algorithm 1) as an optax transformation:
    for its first ``first_steps`` updates only the parameters with ``first(path)`` (the head)
    move, the others (the body) fixed; afterwards only the others move, the first fixed.

    Each part is trained by ``inner`` with a state of its own, which sees only that part's
    gradients and steps only in that part's phase (a momentum buffer neither collects the
    gradients of a part while it is fixed nor decays then). The states live as long as the
    optimizer state: fresh every round by default (Algorithm 1 has plain gradient steps; a
    momentum buffer then starts at zero in each phase), kept across a client's rounds with
    ``client.optimizer_state="keep"``, each part's buffer then resuming in its next phase.
    ``count`` restarts every round (`restart_phases`).
    """
    first_tx = optax.masked(inner, _part_mask(first, True))
    second_tx = optax.masked(inner, _part_mask(first, False))

    def init_fn(params):
        return AlternatingState(
            jnp.zeros((), jnp.int32), first_tx.init(params), second_tx.init(params)
        )

    def update_fn(grads, state, params=None):
        in_first = state.count < first_steps
        first_updates, first_state = first_tx.update(grads, state.first, params)
        second_updates, second_state = second_tx.update(grads, state.second, params)

        def pick(path, a, b):  # masked passes the other part's gradients through: drop them
            mine = first(_path_names(path))
            return jnp.where(in_first == mine, a if mine else b, jnp.zeros_like(a))

        updates = jax.tree_util.tree_map_with_path(pick, first_updates, second_updates)
        keep = lambda active, new, old: jax.tree.map(  # noqa: E731
            lambda n, o: jnp.where(active, n, o), new, old
        )
        return updates, AlternatingState(
            state.count + 1,
            keep(in_first, first_state, state.first),
            keep(~in_first, second_state, state.second),
        )

    return optax.GradientTransformation(init_fn, update_fn)


def restart_phases(parts: FederatedParts) -> FederatedParts:
    """``parts`` whose kept client optimizer state (an `AlternatingState`) starts each round
    at step 0 of its schedule."""

    def client_update(state, clients, inputs):
        own = inputs.client_state
        if "opt_state" in own:
            opt_state = own["opt_state"]._replace(count=jnp.zeros_like(own["opt_state"].count))
            inputs = inputs._replace(client_state={**own, "opt_state": opt_state})
        return parts.client_update(state, clients, inputs)

    return parts._replace(client_update=client_update)


def frozen(predicate: Callable) -> optax.GradientTransformation:
    """Zero updates for the parameters with ``predicate(path)`` (FedBABU's head)."""

    def update_fn(updates, state, params=None):
        del params
        return _where_path(updates, predicate, False), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def split_parts(method: str, objective: Objective, client_tx, server_tx, *, head: Callable,
                head_steps: int = 1, **options) -> FederatedParts:  # fmt: skip
    """FedPer, LG-FedAvg, FedRep or FedBABU (``method``) as `fedavg_parts`.

    Args:
      method: ``"fedper"``, ``"lg_fedavg"``, ``"fedrep"`` or ``"fedbabu"``.
      objective, client_tx, server_tx: as `fedavg_parts`.
      head: `head_predicate`'s function.
      head_steps: FedRep's head-only steps at the start of each round.
      **options: other `fedavg_parts` options (``num_clients``, ``aggregator``, ...).
    """
    body = lambda path: not head(path)  # noqa: E731
    if method == "fedper":
        return fedavg_parts(objective, client_tx, server_tx, local_parameters=head, **options)
    if method == "lg_fedavg":
        return fedavg_parts(objective, client_tx, server_tx, local_parameters=body, **options)
    if method == "fedrep":
        if head_steps < 0:
            raise ValueError(f"fedrep.head_steps must be >= 0, got {head_steps}")
        tx = alternating_updates(client_tx, head, head_steps)
        parts = fedavg_parts(objective, tx, server_tx, local_parameters=head, **options)
        return restart_phases(parts)
    if method == "fedbabu":
        tx = optax.chain(client_tx, frozen(head))
        return fedavg_parts(objective, tx, server_tx, **options)
    raise ValueError(f"method must be one of ['fedper', 'lg_fedavg', 'fedrep', 'fedbabu'], "
                     f"got {method!r}")  # fmt: skip


def _squared_distance(a, b):
    return sum(jnp.sum(jnp.square(x - y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                          strict=True))  # fmt: skip


def ditto_objective(objective: Objective, lam: float) -> Objective:
    """The pair's objective: ``F(w) + F(v) + lam/2 ||v - w_t||^2`` (``context["anchor"]`` is
    ``w_t``); metrics and model state are the global model's."""

    def pair(params, model_state, batch, rng, context):
        loss, aux = objective(params["global"], model_state, batch, rng, None)
        personal_loss, _ = objective(params["personal"], model_state, batch, rng, None)
        proximal = 0.5 * lam * _squared_distance(params["personal"], context["anchor"])
        return loss + personal_loss + proximal, aux

    return pair


def apfl_mix(alpha: float, personal, global_):
    """``alpha * v + (1 - alpha) * w``, leaf by leaf."""
    return jax.tree.map(lambda v, w: alpha * v + (1.0 - alpha) * w, personal, global_)


def apfl_objective(objective: Objective, alpha: float) -> Objective:
    """The pair's objective: ``F(w) + F(alpha v + (1 - alpha) sg(w))``, ``sg`` stopping the
    gradient, so that ``w`` follows ``grad F(w)`` alone and ``v`` follows
    ``grad_v F(mix) = alpha grad F(mix)`` (Deng et al. 2020, Algorithm 1)."""

    def pair(params, model_state, batch, rng, context):
        del context
        loss, aux = objective(params["global"], model_state, batch, rng, None)
        mixed = apfl_mix(alpha, params["personal"], jax.lax.stop_gradient(params["global"]))
        mixed_loss, _ = objective(mixed, model_state, batch, rng, None)
        return loss + mixed_loss, aux

    return pair


def two_model_parts(
    method: str,
    objective: Objective,
    client_tx: optax.GradientTransformation,
    server_tx: optax.GradientTransformation,
    *,
    num_clients: int,
    lam: float = 0.1,
    alpha: float = 0.5,
    aggregator=None,
    unroll: int | bool = 1,
) -> FederatedParts:
    """Ditto (``lam``) or APFL (``alpha``) (``method``): see the module docstring.

    The client optimizer state is fresh every round; ``server_tx`` and ``aggregator`` act on
    the global model's deltas as in FedAvg. ``lam >= 0`` and ``alpha`` in [0, 1] are not
    checked here, since they may be traced (a vectorized sweep's); the config checks
    ``personal.ditto_lambda`` and ``personal.apfl_alpha``.
    """
    if method == "ditto":
        pair_objective = ditto_objective(objective, lam)

        def personal_params(state, own):
            return own
    elif method == "apfl":
        pair_objective = apfl_objective(objective, alpha)

        def personal_params(state, own):
            return apfl_mix(alpha, own, state.params)
    else:
        raise ValueError(f"method must be one of ['ditto', 'apfl'], got {method!r}")
    base = fedavg_parts(objective, client_tx, server_tx, aggregator=aggregator, unroll=unroll)
    run_local = make_local_steps(pair_objective, client_tx, unroll=unroll)

    def init(variables) -> ServerState:
        state = base.init(variables)
        personal = replicate_for_clients({"personal": variables["params"]}, num_clients)
        return state.replace(clients=personal)

    def client_update(state: ServerState, clients, inputs) -> ClientOutput:
        pair = {"global": state.params, "personal": inputs.client_state["personal"]}
        result = run_local(
            pair, state.model_state, client_tx.init(pair), clients, inputs.indices_JxB,
            inputs.mask_JxB, inputs.rng, {"anchor": state.params},
        )  # fmt: skip
        delta = jax.tree.map(jnp.subtract, result.params["global"], state.params)
        own = {"personal": result.params["personal"]}
        return ClientOutput(delta, result.model_state, own, result.metrics, {})

    def personal(state: ServerState, client_id: int) -> dict:
        own = jax.tree.map(lambda leaf: leaf[client_id], state.clients["personal"])
        return {"params": personal_params(state, own), "state": state.model_state}

    return FederatedParts(client_update, base.server_update, init, personal)
