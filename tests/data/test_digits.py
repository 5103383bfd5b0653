"""scikit-learn's digits as a federated dataset: the real images, split and sharded."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from fedjax_sim.data.dataset import DataError
from fedjax_sim.data.digits import make_federated_digits


def test_digits_are_split_and_sharded_iid_over_the_workers():
    dataset = make_federated_digits(num_clients=8, seed=0)
    assert dataset.train["x"].shape == (1438, 16, 16, 3) and dataset.test["x"].shape[0] == 359
    assert dataset.train["x"].dtype == np.uint8 and dataset.train["x"].max() == 255
    sizes = dataset.client_sizes()
    assert sizes.sum() == 1438 and sizes.max() - sizes.min() <= 1
    everyone = np.sort(np.concatenate(dataset.train_client_indices))
    np.testing.assert_array_equal(everyone, np.arange(1438))  # each example on one worker
    # the images are scikit-learn's, upsampled 2x: every 2x2 block is one original pixel
    original = load_digits().images
    x = dataset.train["x"][..., 0].astype(np.float64)
    assert np.array_equal(x[:, ::2, ::2], x[:, 1::2, 1::2])
    first = np.round(original * 255 / 16).astype(np.uint8)
    matches = (first[None] == x[:5, ::2, ::2][:, None]).all(axis=(2, 3))
    assert matches.any(axis=1).all()
    assert np.array_equal(make_federated_digits(num_clients=8, seed=0).test["y"], dataset.test["y"])
    assert not np.array_equal(make_federated_digits(num_clients=8, seed=1).test["y"],
                              dataset.test["y"])  # fmt: skip
    with pytest.raises(DataError, match="data.partition must be one of"):
        make_federated_digits(num_clients=8, partition="shards")
