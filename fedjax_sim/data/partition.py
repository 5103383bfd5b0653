"""Splitting a centralized dataset into clients: IID, Dirichlet label skew, class shards, natural.

Every partitioner returns one sorted int64 array of example indices per client; no example goes to
two clients. ``seed`` is anything `numpy.random.default_rng` accepts (an int or a `Generator`).

Shape letters: N examples, K clients, C classes.

Example:
  idx = dirichlet_partition(labels, num_clients=100, alpha=0.1, seed=0)
  print(format_statistics(partition_statistics(labels, idx, num_classes=100)))
"""

from __future__ import annotations

import dataclasses

import numpy as np


def iid_partition(num_examples: int, num_clients: int, seed) -> list[np.ndarray]:
    """A uniformly random split into ``num_clients`` parts whose sizes differ by at most one."""
    _check_num_clients(num_clients, num_examples)
    perm = np.random.default_rng(seed).permutation(num_examples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, num_clients)]


def dirichlet_partition(
    labels: np.ndarray, num_clients: int, alpha: float, seed, *, num_classes: int | None = None
) -> list[np.ndarray]:
    """Label skew of Hsu, Qi & Brown 2019 (arXiv:1909.06335) with equal client sizes.

    Each client in turn draws a class distribution ``q ~ Dir(alpha * p)``, ``p`` the global label
    distribution, and then its examples from ``q`` without replacement; once a class is used up,
    its draws go to the remaining classes in proportion to ``q``. Clients get ``N // K`` examples,
    the first ``N % K`` clients one more, so all data is used. ``alpha -> 0`` gives one class per
    client (while that class lasts), ``alpha -> inf`` an IID split.

    Args:
      labels: int labels ``[N]``.
      num_clients: K.
      alpha: concentration, > 0.
      seed: seed or `numpy.random.Generator`.
      num_classes: C; defaults to ``labels.max() + 1``.

    Returns:
      K sorted int64 index arrays.
    """
    if not alpha > 0:
        raise ValueError(f"data.alpha must be > 0, got {alpha}")
    labels, num_classes = _check_labels(labels, num_classes)
    _check_num_clients(num_clients, len(labels))
    rng = np.random.default_rng(seed)
    counts_C = np.bincount(labels, minlength=num_classes)
    prior_C = counts_C / counts_C.sum()
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    used_C = np.zeros(num_classes, np.int64)
    out = []
    for k in range(num_clients):
        size = len(labels) // num_clients + (k < len(labels) % num_clients)
        log_q_C = _log_dirichlet(rng, alpha * prior_C)
        take_C = _draw_class_counts(rng, log_q_C, counts_C - used_C, size)
        idx = [pools[c][used_C[c] : used_C[c] + take_C[c]] for c in np.flatnonzero(take_C)]
        used_C += take_C
        out.append(np.sort(np.concatenate(idx)).astype(np.int64))
    return out


def _log_dirichlet(rng: np.random.Generator, concentration_C: np.ndarray) -> np.ndarray:
    """Unnormalized log of a Dirichlet draw; exact even where plain gamma draws underflow to 0.

    Uses ``Gamma(a) = Gamma(a + 1) * U ** (1 / a)``, U uniform on (0, 1]; classes with zero
    concentration get -inf.
    """
    present = concentration_C > 0
    a = concentration_C[present]
    log_q = np.full(concentration_C.shape, -np.inf)
    log_u = np.log1p(-rng.uniform(size=a.shape))
    log_q[present] = np.log(rng.gamma(a + 1.0)) + log_u / a
    return log_q


def _draw_class_counts(rng, log_q_C, available_C, size) -> np.ndarray:
    """Per-class counts of ``size`` sequential draws from ``q`` restricted to classes not used up.

    Same law as drawing one example at a time: multinomial draws, capped at what is available,
    with the overflow redrawn over the classes left; each pass uses up at least one class.
    """
    take_C = np.zeros_like(available_C)
    while (remaining := size - take_C.sum()) > 0:
        log_w = np.where(take_C < available_C, log_q_C, -np.inf)
        w = np.exp(log_w - log_w.max())
        draw_C = rng.multinomial(remaining, w / w.sum())
        take_C += np.minimum(draw_C, available_C - take_C)
    return take_C


def shard_partition(
    labels: np.ndarray, num_clients: int, classes_per_client: int, seed
) -> list[np.ndarray]:
    """Each client gets one shard of each of ``classes_per_client`` distinct classes.

    The sort-and-shard scheme of McMahan et al. 2017, made exact: the K * Nc shards are spread over
    the classes present in ``labels`` as evenly as possible, each class is split into its shards of
    (near) equal size, and every client's Nc shards come from Nc different classes. All data is
    used when K * Nc is a multiple of the number of classes. Clients take the classes with the
    most shards left, ties broken at random, which never gets stuck (Ryser's greedy construction).

    Args:
      labels: int labels ``[N]``.
      num_clients: K.
      classes_per_client: Nc, between 1 and the number of classes.
      seed: seed or `numpy.random.Generator`.

    Returns:
      K sorted int64 index arrays.
    """
    labels, _ = _check_labels(labels, None)
    _check_num_clients(num_clients, len(labels))
    classes = np.unique(labels)
    num_classes = len(classes)
    if not 1 <= classes_per_client <= num_classes:
        raise ValueError(
            f"data.classes_per_client must be in [1, {num_classes}], got {classes_per_client}"
        )
    rng = np.random.default_rng(seed)
    num_shards = num_clients * classes_per_client
    shards_C = np.full(num_classes, num_shards // num_classes, np.int64)
    shards_C[rng.permutation(num_classes)[: num_shards % num_classes]] += 1
    counts_C = np.bincount(np.searchsorted(classes, labels), minlength=num_classes)
    short = np.flatnonzero(counts_C < shards_C)
    if short.size:
        c = short[0]
        raise ValueError(
            f"data.classes_per_client={classes_per_client} with {num_clients} clients needs "
            f"{shards_C[c]} shards of class {classes[c]}, which has only {counts_C[c]} examples"
        )
    shards = [
        np.array_split(rng.permutation(np.flatnonzero(labels == cls)), max(shards_C[c], 1))
        for c, cls in enumerate(classes)
    ]
    left_C = shards_C.copy()
    out = []
    for _ in range(num_clients):
        # Random fractions only break ties between equal integer counts.
        chosen = np.argsort(-(left_C + rng.random(num_classes)))[:classes_per_client]
        left_C[chosen] -= 1
        out.append(np.sort(np.concatenate([shards[c][left_C[c]] for c in chosen])).astype(np.int64))
    return out


def natural_partition(keys: np.ndarray) -> list[np.ndarray]:
    """One client per distinct value of ``keys`` (e.g. a writer id), in order of first appearance.

    The key of client k is ``keys[result[k][0]]``.
    """
    keys = np.asarray(keys)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    return [groups[g].astype(np.int64) for g in np.argsort(first)]


PARTITIONS = ("iid", "dirichlet", "shards")


def partition_labels(
    labels: np.ndarray,
    *,
    partition: str,
    num_clients: int,
    alpha: float | None = None,
    classes_per_client: int | None = None,
    seed=0,
    num_classes: int | None = None,
) -> list[np.ndarray]:
    """Runs the partitioner named by the config field ``data.partition``, one of `PARTITIONS`.

    ``"dirichlet"`` needs ``alpha`` and ``"shards"`` needs ``classes_per_client``.
    """
    if partition == "iid":
        return iid_partition(len(labels), num_clients, seed)
    if partition == "dirichlet":
        if alpha is None:
            raise ValueError("data.alpha must be set when data.partition='dirichlet'")
        return dirichlet_partition(labels, num_clients, alpha, seed, num_classes=num_classes)
    if partition == "shards":
        if classes_per_client is None:
            raise ValueError("data.classes_per_client must be set when data.partition='shards'")
        return shard_partition(labels, num_clients, classes_per_client, seed)
    raise ValueError(f"data.partition must be one of {list(PARTITIONS)}, got {partition!r}")


@dataclasses.dataclass(frozen=True)
class PartitionStats:
    """Per-client statistics of a partition.

    Attributes:
      examples_per_client: ``[K]`` number of examples.
      classes_per_client: ``[K]`` number of distinct labels.
      emd: ``[K]`` earth mover's distance of each client's label distribution to the global one,
        as defined by Zhao et al. 2018 ("Federated learning with non-IID data"):
        ``sum_c |p_client(c) - p_global(c)|``, the L1 distance, in ``[0, 2]``; NaN for an empty
        client.
    """

    examples_per_client: np.ndarray
    classes_per_client: np.ndarray
    emd: np.ndarray

    def summary(self) -> dict[str, float]:
        """``{"num_clients", "<field>_mean", "<field>_std", "<field>_min", "<field>_max"}``."""
        out = {"num_clients": float(len(self.emd))}
        for name in ("examples_per_client", "classes_per_client", "emd"):
            values = np.asarray(getattr(self, name), np.float64)
            stat_fns = (
                ("mean", np.nanmean),
                ("std", np.nanstd),
                ("min", np.nanmin),
                ("max", np.nanmax),
            )
            for stat, fn in stat_fns:
                out[f"{name}_{stat}"] = float(fn(values)) if np.isfinite(values).any() else np.nan
        return out


def partition_statistics(labels: np.ndarray, client_indices, num_classes: int) -> PartitionStats:
    """Examples, distinct classes and EMD to the global label distribution of every client.

    The global distribution is that of all of ``labels``.
    """
    labels, num_classes = _check_labels(labels, num_classes)
    global_C = np.bincount(labels, minlength=num_classes) / max(len(labels), 1)
    sizes, classes, emd = [], [], []
    for idx in client_indices:
        counts_C = np.bincount(labels[np.asarray(idx, np.int64)], minlength=num_classes)
        n = counts_C.sum()
        sizes.append(n)
        classes.append(np.count_nonzero(counts_C))
        emd.append(np.abs(counts_C / n - global_C).sum() if n else np.nan)
    return PartitionStats(np.array(sizes, np.int64), np.array(classes, np.int64), np.array(emd))


def format_statistics(stats: PartitionStats) -> str:
    """A one-paragraph human summary of `PartitionStats`."""
    s = stats.summary()
    return (
        f"{int(s['num_clients'])} clients; examples per client mean "
        f"{s['examples_per_client_mean']:.1f} (std {s['examples_per_client_std']:.1f}, "
        f"min {s['examples_per_client_min']:.0f}, max {s['examples_per_client_max']:.0f}); "
        f"classes per client mean {s['classes_per_client_mean']:.2f} "
        f"(min {s['classes_per_client_min']:.0f}, max {s['classes_per_client_max']:.0f}); "
        f"EMD to the global label distribution mean {s['emd_mean']:.3f} "
        f"(std {s['emd_std']:.3f}, min {s['emd_min']:.3f}, max {s['emd_max']:.3f})."
    )


def _check_labels(labels, num_classes: int | None) -> tuple[np.ndarray, int]:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    top = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise ValueError(f"labels must be < num_classes={num_classes}, got {top - 1}")
    return labels.astype(np.int64), num_classes


def _check_num_clients(num_clients: int, num_examples: int) -> None:
    if not 1 <= num_clients <= num_examples:
        raise ValueError(f"data.num_clients must be in [1, {num_examples}], got {num_clients}")
