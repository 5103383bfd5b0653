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
  * ``"given"``: worker ``k``'s every job takes ``durations[k]`` (a measured cluster), e.g.
    ``"1,1,2,4"`` for K = 4 (`parse_durations`).

A duration depends on nothing but (seed, worker, job number), so a rerun, a resume or a
recomputation of the same job sees the same clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

SPEED_MODELS = ("fixed", "lognormal", "straggler", "given")


def parse_durations(text: str | None, num_workers: int | None = None) -> tuple[float, ...]:
    """The ``"given"`` model's per-worker job durations from ``speed.durations``, a comma list.

    Raises:
      ValueError: not a comma list of positive numbers, or not ``num_workers`` of them (when
        given); the message names ``speed.durations``.
    """
    try:
        durations = tuple(float(part) for part in (text or "").split(","))
    except ValueError:
        durations = ()
    if not durations or not all(math.isfinite(d) and d > 0 for d in durations):
        raise ValueError(
            f"speed.durations must be a comma list of positive numbers, one per worker (e.g. "
            f"'1,1,2,4'), got {text!r}"
        )
    if num_workers is not None and len(durations) != num_workers:
        raise ValueError(
            f"speed.durations gives {len(durations)} durations for {num_workers} workers; give "
            f"one per worker"
        )
    return durations


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
    durations: str | None = None,
) -> Callable:
    """``durations(workers_K, jobs_K) -> [K] float32``: how long job ``jobs_K[i]`` of worker
    ``workers_K[i]`` takes, in nominal jobs (see the module docstring); jit-able.

    ``durations`` is the ``"given"`` model's comma list (`parse_durations`), one per worker.

    Raises:
      ValueError: an unknown ``model``, a negative parameter or bad ``durations``.
    """
    if model not in SPEED_MODELS:
        raise ValueError(f"speed.model must be one of {list(SPEED_MODELS)}, got {model!r}")
    if sigma < 0 or not 0 <= straggler_fraction <= 1 or slowdown <= 0:
        raise ValueError(
            "speed: sigma must be >= 0, straggler_fraction in [0, 1] and slowdown > 0, got "
            f"{sigma}, {straggler_fraction}, {slowdown}"
        )
    if model == "given":
        given_K = np.asarray(parse_durations(durations, num_workers), np.float32)
        return lambda workers_K, jobs_K: jnp.asarray(given_K)[workers_K]
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
