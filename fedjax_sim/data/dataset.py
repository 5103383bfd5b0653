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


def _restrict(arrays: dict, client_indices: list[np.ndarray]):
    """Only the examples that ``client_indices`` use, and the indices renumbered to match."""
    used = np.unique(np.concatenate(client_indices)) if client_indices else np.zeros(0, int)
    new_position = np.zeros(max((len(a) for a in arrays.values()), default=0), np.int64)
    new_position[used] = np.arange(len(used))
    return (
        {name: array[used] for name, array in arrays.items()},
        tuple(new_position[idx] for idx in client_indices),
    )
