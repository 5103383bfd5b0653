"""The 8x8 handwritten digits that scikit-learn ships (UCI optdigits test set: 1,797 images of
10 classes), as a federated dataset: real data that needs no download.

Images are upsampled 2x (nearest) to 16x16 and replicated to 3 channels, so the course CNN runs
on them unchanged (16 -> 12 -> 6 -> 2 -> 1 spatially) and they go through the same uint8 image
pipeline as CIFAR; pixel values 0..16 map to 0..255.
"""

from __future__ import annotations

import numpy as np

from fedjax_sim.data import partition as partitioning
from fedjax_sim.data.dataset import DataError, FederatedDataset

PARTITIONS = ("iid", "dirichlet")
UPSAMPLE = 2
IMAGE_SIDE = 8 * UPSAMPLE  # the models see 16x16 images


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(x [1797, 16, 16, 3] uint8, y [1797] int32)`` from scikit-learn's bundled copy."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DataError(
            "data.name='digits' needs scikit-learn (pip install scikit-learn), which ships it"
        ) from error
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = images.repeat(UPSAMPLE, axis=1).repeat(UPSAMPLE, axis=2)
    return np.repeat(images[..., None], 3, axis=-1), digits.target.astype(np.int32)


def make_federated_digits(
    *,
    num_clients: int,
    partition: str = "iid",
    alpha: float = 0.5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedDataset:
    """The digits split into train and test (seeded, ``test_fraction`` held out), the training
    examples partitioned over ``num_clients`` workers or clients.

    Args:
      num_clients: K.
      partition: ``"iid"`` (sizes differ by at most one: the data-center sharding, every
        example on exactly one worker) or ``"dirichlet"`` (label skew, ``alpha``).
      alpha: Dirichlet concentration.
      test_fraction: share of the 1,797 images held out as the test set.
      seed: every random choice (the split, the partition).
    """
    if partition not in PARTITIONS:
        raise DataError(f"data.partition must be one of {list(PARTITIONS)}, got {partition!r}")
    x, y = digits_arrays()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    num_test = int(round(test_fraction * len(y)))
    test, train = np.sort(order[:num_test]), np.sort(order[num_test:])
    if partition == "iid":
        clients = partitioning.iid_partition(len(train), num_clients, rng)
    else:
        clients = partitioning.dirichlet_partition(y[train], num_clients, alpha, rng)
    return FederatedDataset(
        name="digits",
        train={"x": x[train], "y": y[train]},
        test={"x": x[test], "y": y[test]},
        train_client_indices=tuple(clients),
        test_client_indices=None,
        client_ids=tuple(f"worker_{k}" for k in range(num_clients)),
        num_classes=10,
    )
