"""How long each worker's jobs take: the speed model of the simulated clock.

A job is one worker's round of work (its H inner steps and the exchange with the server); its
duration is in units of a nominal job, so 1.0 everywhere is a homogeneous cluster. The
synchronous family waits for its slowest worker (a round lasts ``max_k d_k``); asynchronous
training applies each job when it finishes (`fedjax_sim.algorithms.async_sgd`).

Models (``speed.model``):
  * ``"fixed"``: every job takes 1.
  * ``"lognormal"``: job ``n`` of worker ``k`` takes ``exp(sigma z - sigma^2 / 2)``, ``z``
    standard normal drawn from ``(seed, k, n)``: mean 1, heavy right tail (a shared cluster).
  * ``"straggler"``: ``round(fraction K)`` workers, chosen by the seed, take ``slowdown`` for
    every job, the others 1 (a slow node).

A duration depends on nothing but (seed, worker, job number), so a rerun, a resume or a
recomputation of the same job sees the same clock.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

SPEED_MODELS = ("fixed", "lognormal", "straggler")


def straggler_workers(num_workers: int, fraction: float, seed: int) -> np.ndarray:
    """The sorted ids of the ``round(fraction K)`` slow workers of the ``"straggler"`` model."""
    count = int(round(fraction * num_workers))
    return np.sort(np.random.default_rng(seed).permutation(num_workers)[:count])


def make_job_durations(
    model: str,
    *,
    num_workers: int,
    seed: int = 0,
    sigma: float = 0.5,
    straggler_fraction: float = 0.25,
    slowdown: float = 4.0,
) -> Callable:
    """``durations(workers_K, jobs_K) -> [K] float32``: how long job ``jobs_K[i]`` of worker
    ``workers_K[i]`` takes, in nominal jobs (see the module docstring); jit-able.

    Raises:
      ValueError: an unknown ``model`` or a negative parameter.
    """
    if model not in SPEED_MODELS:
        raise ValueError(f"speed.model must be one of {list(SPEED_MODELS)}, got {model!r}")
    if sigma < 0 or not 0 <= straggler_fraction <= 1 or slowdown <= 0:
        raise ValueError(
            "speed: sigma must be >= 0, straggler_fraction in [0, 1] and slowdown > 0, got "
            f"{sigma}, {straggler_fraction}, {slowdown}"
        )
    if model == "fixed":
        return lambda workers_K, jobs_K: jnp.ones(jnp.shape(workers_K), jnp.float32)
    if model == "straggler":
        slow_K = np.ones(num_workers, np.float32)
        slow_K[straggler_workers(num_workers, straggler_fraction, seed)] = slowdown
        return lambda workers_K, jobs_K: jnp.asarray(slow_K)[workers_K]

    def lognormal(workers_K, jobs_K):
        def one(worker, job):
            key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), worker), job)
            return jnp.exp(sigma * jax.random.normal(key) - 0.5 * sigma**2)

        return jax.vmap(one)(workers_K, jobs_K).astype(jnp.float32)

    return lognormal
