"""The compute and communication ledger of a run: samples, FLOPs, synchronizations, bytes and
a simulated wall clock, as cumulative counters on every record of the history.

Counters are sums over rounds, not means: a record of `fedjax_sim.runtime.simulate.simulate` holds
the mean of each training metric over the rounds since the previous record, so the sum over
that window is the mean times its number of rounds (exact for the integer counts). A round
reports ``train_examples`` (samples processed) and may report ``syncs``; otherwise every
round of a federated or distributed algorithm is one synchronization and the centralized
baseline has none.

Cost model (`CostModel`), per synchronization of ``workers`` workers exchanging a model of
``P`` bytes ``copies`` times (SCAFFOLD sends its control variate too: 2):
  * ``"server"`` (federated; a parameter server): each worker receives ``P`` and sends
    ``P``; time ``2 (latency + P / bandwidth)``.
  * ``"allreduce"`` (data center; a bandwidth-optimal ring all-reduce): each worker sends and
    receives ``2 (K - 1) / K * P``; time ``2 (K - 1) (latency + P / (K bandwidth))``, the
    alpha-beta model of Thakur et al. 2005.
  * ``"gossip"`` (decentralized): every worker exchanges its model with one peer, all pairs
    at once: each sends and receives ``P``; time ``latency + P / bandwidth``.
Compute time of a round: its samples divided among the workers (they run in parallel) times
the training FLOPs per example (XLA's cost analysis of one training step) over each worker's
FLOP/s; a round under a speed model (`fedjax_sim.core.speeds`) reports
``clock_examples`` instead, the examples one nominal worker processes in the round's simulated
time (a synchronous round waits for its slowest worker). The simulated clock is compute plus
communication, no overlap. An asynchronous round reports ``syncs`` as its arrivals / K: each
arrival is one worker's exchange with the server. A FedSeq round reports ``syncs`` as the
mean number of members of its superclients (the workers): each member receives the model and
sends it on, one after another, so its hand-offs add their bytes and their time.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_sim.core.tasks import Task, masked_loss_and_metrics

TOPOLOGIES = ("server", "allreduce", "gossip")


@dataclasses.dataclass(frozen=True)
class CostModel:
    """What a sample and a synchronization cost.

    Attributes:
      flops_per_example: training FLOPs (forward and backward) per example.
      parameter_bytes: bytes of one copy of the exchanged model (P).
      workers: workers (clients) taking part in a synchronization (K, or C per round).
      train_examples: examples of one epoch (for ``ledger_epochs``).
      topology: one of `TOPOLOGIES`.
      copies: model-sized messages per direction and synchronization.
      worker_flops_per_s: each worker's sustained FLOP/s.
      bandwidth_bytes_per_s: each link's bandwidth.
      latency_s: each message's latency.
    """

    flops_per_example: float
    parameter_bytes: int
    workers: int
    train_examples: int
    topology: str = "server"
    copies: int = 1
    worker_flops_per_s: float = 1e12
    bandwidth_bytes_per_s: float = 1.25e9
    latency_s: float = 1e-3

    def __post_init__(self):
        if self.topology not in TOPOLOGIES:
            raise ValueError(
                f"ledger.topology must be one of {list(TOPOLOGIES)}, got {self.topology!r}"
            )

    def sync_bytes(self) -> tuple[float, float, float]:
        """``(sent per worker, received per worker, total on the wire)`` of one sync."""
        message = float(self.parameter_bytes * self.copies)
        if self.topology == "server":
            return message, message, 2.0 * message * self.workers
        if self.topology == "gossip":
            return message, message, message * self.workers
        k = self.workers
        share = 2.0 * (k - 1) / k * message
        return share, share, share * k

    def sync_seconds(self) -> float:
        """Simulated seconds of one synchronization."""
        message = self.parameter_bytes * self.copies
        if self.topology == "server":
            return 2.0 * (self.latency_s + message / self.bandwidth_bytes_per_s)
        if self.topology == "gossip":
            return self.latency_s + message / self.bandwidth_bytes_per_s
        k = self.workers
        return 2.0 * (k - 1) * (self.latency_s + message / (k * self.bandwidth_bytes_per_s))


def parameter_bytes(params) -> int:
    """Bytes of ``params`` by parameter count and dtype."""
    return int(sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(params)))


def training_flops_per_example(task: Task, variables, example_batch: dict) -> float:
    """XLA's FLOP count of one training step (loss and gradient) on ``example_batch``
    (``{"x", "y"}`` arrays of B examples), divided by B; compiled, not run."""
    size = example_batch["y"].shape[0]
    batch = {**example_batch, "mask": jnp.ones(size, bool)}

    def loss(params):
        inner = {"params": params, "state": variables["state"]}
        return masked_loss_and_metrics(task, inner, batch, None)[0]

    cost = jax.jit(jax.grad(loss)).lower(variables["params"]).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0)) / size


def annotate(history: list[dict], cost: CostModel, default_syncs: float) -> list[dict]:
    """Adds the cumulative ``ledger_*`` counters (samples, epochs, flops, syncs,
    bytes_sent_per_worker, bytes_received_per_worker, bytes_total, time_s) to every record of
    ``history`` (in place; recomputed from the start, so calling it again, or after a resume,
    gives the same values).

    Args:
      history: records with ``round``, ``train_examples`` and optionally ``syncs`` (means over
        the rounds since the previous record).
      cost: the cost model.
      default_syncs: synchronizations per round when a record has no ``syncs``.
    """
    sent, received, total = cost.sync_bytes()
    sync_s = cost.sync_seconds()
    samples = flops = syncs = seconds = 0.0
    previous_round = 0
    for record in history:
        rounds = record["round"] - previous_round
        previous_round = record["round"]
        window_samples = float(np.round(record.get("train_examples", 0.0) * rounds))
        # syncs come in units of 1 / K (one worker's exchange of an asynchronous arrival)
        k = cost.workers
        window_syncs = float(np.round(record.get("syncs", default_syncs) * rounds * k)) / k
        samples += window_samples
        flops += window_samples * cost.flops_per_example
        syncs += window_syncs
        clock_examples = record.get("clock_examples", window_samples / k / max(rounds, 1))
        compute_s = clock_examples * rounds * cost.flops_per_example
        seconds += compute_s / cost.worker_flops_per_s + window_syncs * sync_s
        record.update(
            ledger_samples=samples,
            ledger_epochs=samples / max(cost.train_examples, 1),
            ledger_flops=flops,
            ledger_syncs=syncs,
            ledger_bytes_sent_per_worker=syncs * sent,
            ledger_bytes_received_per_worker=syncs * received,
            ledger_bytes_total=syncs * total,
            ledger_time_s=seconds,
        )
    return history
