"""Client selection: who takes part in a round, drawn inside the compiled round from its key.

A sampler is ``sampler(key, state, clients, client_losses) -> (client_ids_C, present_C)``:
the C client ids of the round (repeats allowed when sampling with replacement) and whether
each reports back (``False``: it dropped out; it gets zero weight and its state is not
written). ``client_losses(state, clients, ids, key) -> [len(ids)]`` gives the current global
model's loss on one batch of each client (for loss-based selection).

Samplers:
  * `uniform`: C distinct clients, uniformly (FedAvg's).
  * `proportional`: probability ``n_k / n`` (with replacement by default, Li et al. 2020's
    scheme I: pair it with ``weighting="uniform"`` for an unbiased average).
  * `skewed`: fixed probabilities ``p ~ Dirichlet(gamma * 1_K)``, drawn once from a seed.
    ``gamma`` is the Dirichlet concentration: SMALL gamma = STRONG skew (a few clients take
    most rounds); gamma -> infinity = uniform.
  * `power_of_choice` (Cho et al. 2020): d candidates drawn without replacement with
    probability ``n_k / n``, the C with the highest current loss selected.
  * `with_dropout(sampler, rate)`: each selected client independently fails to report with
    probability ``rate``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_sim.data.client_data import sample_clients

Sampler = Callable

SELECTIONS = ("uniform", "proportional", "skewed", "power_of_choice")


def _check_count(clients_per_round: int, num_clients: int, replace: bool) -> None:
    if clients_per_round < 1 or (not replace and clients_per_round > num_clients):
        raise ValueError(
            f"clients_per_round must be in [1, {num_clients}] (the population), "
            f"got {clients_per_round}"
        )


def _draw(key, log_p_K, count: int, replace: bool):
    """``count`` ids with probabilities ``softmax(log_p_K)``; without replacement it is
    successive sampling (Gumbel top-k)."""
    if replace:
        return jax.random.categorical(key, log_p_K, shape=(count,)).astype(jnp.int32)
    gumbel = jax.random.gumbel(key, log_p_K.shape)
    return jax.lax.top_k(log_p_K + gumbel, count)[1].astype(jnp.int32)


def _everyone_present(ids_C):
    return jnp.ones(ids_C.shape, bool)


def uniform(clients_per_round: int) -> Sampler:
    """C distinct clients, each subset equally likely."""

    def sample(key, state, clients, client_losses):
        del state, client_losses
        ids = sample_clients(key, clients.num_clients, clients_per_round)
        return ids, _everyone_present(ids)

    return sample


def proportional(clients_per_round: int, *, replace: bool = True) -> Sampler:
    """Clients with probability proportional to their number of examples."""

    def sample(key, state, clients, client_losses):
        del state, client_losses
        _check_count(clients_per_round, clients.num_clients, replace)
        log_p = jnp.log(clients.counts_K.astype(jnp.float32))  # empty clients: never
        ids = _draw(key, log_p, clients_per_round, replace)
        return ids, _everyone_present(ids)

    return sample


def skewed_probabilities(num_clients: int, gamma: float, seed: int) -> np.ndarray:
    """The fixed participation probabilities ``p ~ Dirichlet(gamma * 1_K)`` of `skewed`."""
    if not gamma > 0:
        raise ValueError(f"selection.gamma must be > 0, got {gamma}")
    p = np.random.default_rng(seed).dirichlet(np.full(num_clients, float(gamma)))
    return np.maximum(p, 1e-30) / np.maximum(p, 1e-30).sum()


def skewed(
    clients_per_round: int, num_clients: int, gamma: float, *, seed: int = 0, replace=True
) -> Sampler:
    """Clients with the fixed probabilities `skewed_probabilities` (small gamma: skewed)."""
    _check_count(clients_per_round, num_clients, replace)
    log_p = jnp.asarray(np.log(skewed_probabilities(num_clients, gamma, seed)), jnp.float32)

    def sample(key, state, clients, client_losses):
        del state, client_losses
        ids = _draw(key, log_p, clients_per_round, replace)
        return ids, _everyone_present(ids)

    return sample


def power_of_choice(clients_per_round: int, candidates: int) -> Sampler:
    """Cho et al. 2020: ``candidates`` (d) clients drawn with probability ``n_k / n`` without
    replacement, then the C of them with the highest loss of the current global model."""
    if candidates < clients_per_round:
        raise ValueError(
            f"selection.candidates must be >= clients_per_round={clients_per_round}, "
            f"got {candidates}"
        )

    def sample(key, state, clients, client_losses):
        _check_count(candidates, clients.num_clients, False)
        draw_key, loss_key = jax.random.split(key)
        log_p = jnp.log(clients.counts_K.astype(jnp.float32))
        candidates_D = _draw(draw_key, log_p, candidates, replace=False)
        losses_D = client_losses(state, clients, candidates_D, loss_key)
        ids = candidates_D[jax.lax.top_k(losses_D, clients_per_round)[1]]
        return ids, _everyone_present(ids)

    return sample


def with_dropout(sampler: Sampler, rate: float) -> Sampler:
    """``sampler`` whose selected clients each fail to report with probability ``rate``."""
    if not 0 <= rate < 1:
        raise ValueError(f"selection.dropout must be in [0, 1), got {rate}")
    if rate == 0:
        return sampler

    def sample(key, state, clients, client_losses):
        select_key, drop_key = jax.random.split(key)
        ids, present = sampler(select_key, state, clients, client_losses)
        return ids, present & (jax.random.uniform(drop_key, ids.shape) >= rate)

    return sample


def make_sampler(
    name: str,
    clients_per_round: int,
    num_clients: int,
    *,
    gamma: float = 1.0,
    candidates: int = 0,
    replace: bool = True,
    dropout: float = 0.0,
    seed: int = 0,
) -> Sampler:
    """A sampler by name (one of `SELECTIONS`), optionally with dropouts."""
    if name == "uniform":
        sampler = uniform(clients_per_round)
    elif name == "proportional":
        sampler = proportional(clients_per_round, replace=replace)
    elif name == "skewed":
        sampler = skewed(clients_per_round, num_clients, gamma, seed=seed, replace=replace)
    elif name == "power_of_choice":
        sampler = power_of_choice(clients_per_round, candidates or 2 * clients_per_round)
    else:
        raise ValueError(f"selection.name must be one of {list(SELECTIONS)}, got {name!r}")
    return with_dropout(sampler, dropout)
