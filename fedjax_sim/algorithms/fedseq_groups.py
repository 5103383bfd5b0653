"""FedSeq's superclients (Zaccone et al. 2022): each client's label distribution, estimated, and
groups of dissimilar clients whose pooled data looks closer to the whole population's.

Estimates (one row per client, summing to 1):
  * ``"labels"``: the histogram of the client's training labels.
  * ``"confidence"``: as the paper does, without reading labels: every client trains the same
    initial model for a few local steps, and its estimate is that model's mean softmax over an
    exemplar set the server holds (`confidence_distributions`).

Groupers (`group_clients`); a superclient is closed once it has ``max_clients`` members or
``min_examples`` training examples (the paper's two limits); the last one may fall short:
  * ``"random"``: clients in a seeded random order, in turn.
  * ``"greedy_kl"``: from a seeded random first member, repeatedly the client whose addition
    makes the superclient's pooled label distribution closest to uniform (least KL divergence
    to uniform): dissimilar clients complete each other.
  * ``"kmeans"``: k-means on the estimates (``max_clients`` clusters, seeded), then every
    superclient draws its members from different clusters in turn, largest cluster first.

Everything here runs once, on the host, before training; the groups are a static
``[G, M]`` array of client ids padded with -1 (`fedjax_sim.algorithms.fedseq`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_sim.core.finetune import make_finetuner

ESTIMATES = ("labels", "confidence")
GROUPERS = ("random", "greedy_kl", "kmeans")


def label_distributions(labels_N, client_indices, num_classes: int) -> np.ndarray:
    """``[K, L]``: each client's label histogram, normalized (uniform for an empty client)."""
    counts = np.stack(
        [np.bincount(np.asarray(labels_N)[idx], minlength=num_classes) for idx in client_indices]
    ).astype(np.float64)
    totals = counts.sum(1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / num_classes)


def confidence_distributions(task, finetune, variables, clients, exemplars_x, key) -> np.ndarray:
    """``[K, L]``: the mean softmax over ``exemplars_x`` of each client's copy of ``variables``
    after ``finetune`` (`fedjax_sim.core.finetune.make_finetuner` started from ``variables``)."""
    tuned_K = finetune(variables, clients, key)
    x = task.prepare(jnp.asarray(exemplars_x), None)

    @jax.jit
    def mean_softmax(tuned):
        def one(variables):
            logits, _ = task.model.apply(variables, x, train=False)
            return jax.nn.softmax(logits.astype(jnp.float32)).mean(0)

        return jax.lax.map(one, tuned)

    return np.asarray(mean_softmax(tuned_K), np.float64)


def build_superclients(
    config,
    task,
    dataset,
    clients,
    *,
    tx=None,
    exemplars_x=None,
    initial_variables=None,
    key=None,
) -> np.ndarray:
    """The ``[G, M]`` superclients of a FedSeq ``config`` (its ``fedseq`` fields) over
    ``dataset``'s training clients. The ``"confidence"`` estimate trains copies of
    ``initial_variables`` (the run's initial model) with ``tx`` (the client optimizer) and
    ``key``, and reads them on ``exemplars_x`` (set aside from the test split)."""

    options = config.fedseq
    if options.estimate == "labels":
        distributions = label_distributions(
            dataset.train["y"], dataset.train_client_indices, dataset.num_classes
        )
    else:
        pretrain = make_finetuner(
            task, tx, lambda variables, k: variables,
            steps=options.estimate_steps, batch_size=config.client.batch_size,
            augment=config.data.augment,
        )  # fmt: skip
        distributions = confidence_distributions(
            task, pretrain, initial_variables, clients, exemplars_x, key
        )
    return group_clients(
        distributions, dataset.client_sizes(), options.grouper, max_clients=options.max_clients,
        min_examples=options.min_examples or None, seed=config.data.seed,
    )  # fmt: skip


def kl_to_uniform(p) -> np.ndarray:
    """KL(p || uniform) along the last axis, with 0 log 0 = 0."""
    p = np.asarray(p, np.float64)
    terms = np.where(p > 0, p * np.log(np.maximum(p, 1e-300) * p.shape[-1]), 0.0)
    return terms.sum(-1)


def group_clients(
    distributions,
    counts,
    grouper: str,
    *,
    max_clients: int,
    min_examples: int | None,
    seed: int,
) -> np.ndarray:
    """Superclients: ``[G, M]`` client ids (M = the largest group), padded with -1.

    Args:
      distributions: ``[K, L]`` label distribution estimates.
      counts: ``[K]`` training examples per client.
      grouper: one of `GROUPERS` (see the module docstring).
      max_clients: a superclient's most members (>= 1).
      min_examples: a superclient is closed once its members hold this many examples (None:
        no such limit).
      seed: the grouping's randomness.

    Returns:
      every client exactly once, in its superclient's training order.
    """
    if grouper not in GROUPERS:
        raise ValueError(f"fedseq.grouper must be one of {list(GROUPERS)}, got {grouper!r}")
    if max_clients < 1:
        raise ValueError(f"fedseq.max_clients must be >= 1, got {max_clients}")
    distributions = np.asarray(distributions, np.float64)
    counts = np.asarray(counts, np.int64)
    rng = np.random.default_rng([seed, 0x5EC])
    if grouper == "random":
        groups = _fill(rng.permutation(len(counts)), counts, max_clients, min_examples)
    elif grouper == "greedy_kl":
        groups = _greedy_kl(distributions, counts, max_clients, min_examples, rng)
    else:
        groups = _kmeans(distributions, counts, max_clients, min_examples, seed)
    width = max(len(g) for g in groups)
    return np.array([g + [-1] * (width - len(g)) for g in groups], np.int64)


def _closed(group, counts, max_clients, min_examples) -> bool:
    full = min_examples is not None and counts[group].sum() >= min_examples
    return len(group) >= max_clients or full


def _fill(order, counts, max_clients, min_examples) -> list[list[int]]:
    """Clients in ``order`` into consecutive superclients."""
    groups, group = [], []
    for client in order:
        group.append(int(client))
        if _closed(group, counts, max_clients, min_examples):
            groups.append(group)
            group = []
    return groups + ([group] if group else [])


def _greedy_kl(distributions, counts, max_clients, min_examples, rng) -> list[list[int]]:
    weighted = distributions * counts[:, None]  # label counts (estimated)
    left = list(rng.permutation(len(counts)))
    groups = []
    while left:
        group = [int(left.pop(0))]
        pooled = weighted[group[0]].copy()
        while left and not _closed(group, counts, max_clients, min_examples):
            candidates = np.array(left)
            mixed = pooled[None] + weighted[candidates]
            mixed = mixed / np.maximum(mixed.sum(1, keepdims=True), 1e-300)
            best = int(candidates[np.argmin(kl_to_uniform(mixed))])  # first on ties
            left.remove(best)
            group.append(best)
            pooled += weighted[best]
        groups.append(group)
    return groups


def _kmeans(distributions, counts, max_clients, min_examples, seed) -> list[list[int]]:
    clusters = min(max_clients, len(counts))
    from sklearn.cluster import KMeans  # here: scikit-learn costs every run ~50 MB and 1.5 s

    labels = KMeans(clusters, n_init=4, random_state=seed).fit_predict(distributions)
    queues = [list(np.flatnonzero(labels == c)) for c in range(clusters)]
    groups, group, used = [], [], set()
    while any(queues):
        unused = [c for c in range(clusters) if queues[c] and c not in used]
        if not unused:  # every cluster with clients left is in the group already
            unused, used = [c for c in range(clusters) if queues[c]], set()
        cluster = max(unused, key=lambda c: len(queues[c]))  # the first largest
        group.append(int(queues[cluster].pop(0)))
        used.add(cluster)
        if _closed(group, counts, max_clients, min_examples):
            groups.append(group)
            group, used = [], set()
    return groups + ([group] if group else [])
