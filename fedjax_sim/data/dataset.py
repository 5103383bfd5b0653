"""The host-side federated dataset that every loader and partitioner produces.

Examples live in flat arrays (``train['x'][i]``, ``train['y'][i]``); a client is a list of
indices into them. Keeping one copy of the examples and small per-client index tables is what lets
`fedjax_sim.data.client_data.ClientData` put the whole population on the device and gather every
sampled client's batches inside the compiled round.
"""

from __future__ import annotations

import dataclasses

import numpy as np


class DataError(ValueError):
    """A dataset is missing or malformed; the message is one line that says what to do."""


@dataclasses.dataclass(frozen=True)
class FederatedDataset:
    """Flat example arrays plus per-client index lists.

    Attributes:
      name: short name, e.g. ``"shakespeare"`` or ``"cifar100"``.
      train: ``{"x": [N, ...], "y": [N] int32}`` training examples of all clients.
      test: ``{"x": [M, ...], "y": [M] int32}`` the central test set.
      train_client_indices: one int64 array per client, indices into ``train``.
      test_client_indices: one int64 array per client into ``test`` when the data has a natural
        per-client test split (LEAF Shakespeare), else ``None`` (label-skew partitions of CIFAR,
        whose per-client accuracy is derived from per-class accuracy instead).
      client_ids: one name per client, e.g. ``"hamlet_gut/HAMLET"``.
      num_classes: number of target classes.
    """

    name: str
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    train_client_indices: tuple[np.ndarray, ...]
    test_client_indices: tuple[np.ndarray, ...] | None
    client_ids: tuple[str, ...]
    num_classes: int

    @property
    def num_clients(self) -> int:
        return len(self.train_client_indices)

    def client_sizes(self) -> np.ndarray:
        return np.array([len(idx) for idx in self.train_client_indices], dtype=np.int64)

    def select_clients(self, keep: np.ndarray) -> FederatedDataset:
        """Clients ``keep`` (positions), in that order, with only their examples.

        The flat arrays shrink to the examples those clients own; with a per-client test split,
        the central test set becomes the union of the kept clients' test examples.
        """
        keep = [int(k) for k in keep]
        train, train_idx = _restrict(self.train, [self.train_client_indices[k] for k in keep])
        test, test_idx = self.test, self.test_client_indices
        if test_idx is not None:
            test, test_idx = _restrict(test, [test_idx[k] for k in keep])
        return dataclasses.replace(
            self,
            train=train,
            test=test,
            train_client_indices=train_idx,
            test_client_indices=test_idx,
            client_ids=tuple(self.client_ids[k] for k in keep),
        )


def keep_test_examples(dataset: FederatedDataset, keep) -> FederatedDataset:
    """``dataset`` with only the test examples at the sorted positions ``keep``; a per-client
    test split keeps each client's examples among them, renumbered."""
    keep = np.asarray(keep, np.int64)
    test_idx = dataset.test_client_indices
    new_position = np.full(len(dataset.test["y"]), -1, np.int64)
    new_position[keep] = np.arange(len(keep))
    if test_idx is not None:
        test_idx = tuple(new_position[idx][new_position[idx] >= 0] for idx in test_idx)
    return dataclasses.replace(
        dataset,
        test={name: array[keep] for name, array in dataset.test.items()},
        test_client_indices=test_idx,
    )


def set_aside_test_examples(dataset: FederatedDataset, count: int, seed: int):
    """``(examples, dataset)``: ``count`` test examples drawn at random (seeded), and
    ``dataset`` without them (the server's exemplars are never evaluated on).

    Raises:
      DataError: the test split has no more than ``count`` examples.
    """
    n = len(dataset.test["y"])
    if count >= n:
        raise DataError(f"fedseq.exemplars={count} must be below the {n} test examples")
    taken = np.sort(np.random.default_rng([seed, 0xE8E]).choice(n, count, replace=False))
    examples = {name: array[taken] for name, array in dataset.test.items()}
    return examples, keep_test_examples(dataset, np.setdiff1d(np.arange(n), taken))


def _restrict(arrays: dict, client_indices: list[np.ndarray]):
    """Only the examples that ``client_indices`` use, and the indices renumbered to match."""
    used = np.unique(np.concatenate(client_indices)) if client_indices else np.zeros(0, int)
    new_position = np.zeros(max((len(a) for a in arrays.values()), default=0), np.int64)
    new_position[used] = np.arange(len(used))
    return (
        {name: array[used] for name, array in arrays.items()},
        tuple(new_position[idx] for idx in client_indices),
    )


def label_matched_test_split(
    dataset: FederatedDataset, per_client: int, seed: int
) -> FederatedDataset:
    """``dataset`` with a test set per client drawn from its central test split: client k gets
    ``per_client`` test examples whose labels follow its training labels' distribution
    (counts by largest remainder, so the proportions are exact up to rounding), each class's
    examples drawn without replacement from that class's test examples (with replacement only
    where the class has fewer than needed), seeded.

    The test arrays become the clients' sets one after another (an example may be in several
    clients' sets), so the central test accuracy is the mean over the clients' sets.

    Raises:
      DataError: the dataset already has a per-client test split (LEAF), or a client's
        classes have no test example.
    """
    if dataset.test_client_indices is not None:
        raise DataError(
            f"data.test_per_client is for partitions of a central test set; {dataset.name} "
            "has its own per-client test split: use data.test_per_client=0"
        )
    rng = np.random.default_rng([seed, 0x7E57])
    y_train, y_test = np.asarray(dataset.train["y"]), np.asarray(dataset.test["y"])
    by_class = [np.flatnonzero(y_test == c) for c in range(dataset.num_classes)]
    chosen = []
    for idx in dataset.train_client_indices:
        if not len(idx):
            chosen.append(np.zeros(0, np.int64))
            continue
        share = np.bincount(y_train[idx], minlength=dataset.num_classes) * per_client / len(idx)
        counts = np.floor(share).astype(np.int64)
        remainder = per_client - counts.sum()
        counts[np.argsort(-(share - counts), kind="stable")[:remainder]] += 1
        picks = []
        for c in np.flatnonzero(counts):
            if not len(by_class[c]):
                raise DataError(f"data.test_per_client: class {c} has no test example")
            picks.append(rng.choice(by_class[c], counts[c], replace=counts[c] > len(by_class[c])))
        chosen.append(np.sort(np.concatenate(picks)))
    order = np.concatenate(chosen)
    bounds = np.cumsum([0, *(len(c) for c in chosen)])
    return dataclasses.replace(
        dataset,
        test={name: array[order] for name, array in dataset.test.items()},
        test_client_indices=tuple(
            np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ),  # fmt: skip
    )
