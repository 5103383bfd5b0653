"""Noisy and malicious clients: a seeded share of the population whose data or updates are bad.

Two kinds, both chosen by ``robust.attack`` for a ``robust.bad_fraction`` of the K clients drawn
by `choose_bad_clients` from the data seed (so every algorithm and aggregator of a comparison
faces the same bad clients; the run's dataset.json lists them):

Data attacks change the bad clients' TRAINING examples once, on the host, before the run
(`corrupt_dataset`); their test examples stay clean, since the question is how good a model the
federation learns:
  * ``label_flip``: label y becomes ``num_classes - 1 - y`` (the classic flip of Fang et al.
    2020, a permutation of the classes, so the client's data is consistent but wrong).
  * ``random_labels``: every label replaced by a uniform random class (seeded).
  * ``gaussian_noise``: images plus N(0, (noise_std * 255)^2) pixel noise, clipped to 0..255.
  * ``broken_sensor``: each bad client's camera has dead pixels: a ``sensor_fraction`` of the
    pixel positions, drawn per client (seeded), read 0 in all its images, and what still works
    reads with pixel noise of ``noise_std`` (the FedGW report's "broken sensor" clients, as we
    read it: the device's own fault, the same on every image it takes).
Update attacks change what the bad clients SEND (`attack_updates`, inside the compiled round,
through the ``bad`` attribute of `fedjax_sim.data.client_data.ClientData`):
  * ``sign_flip``: the delta times ``-attack_scale`` (Li et al. 2019's sign-flipping attack).
  * ``scaled``: the delta times ``attack_scale`` (boosting, Bhagoji et al. 2019).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_sim.core.round import ClientOutput, FederatedParts
from fedjax_sim.data.dataset import DataError, FederatedDataset

DATA_ATTACKS = ("label_flip", "random_labels", "gaussian_noise", "broken_sensor")
UPDATE_ATTACKS = ("sign_flip", "scaled")
ATTACKS = ("none", *DATA_ATTACKS, *UPDATE_ATTACKS)
IMAGE_ATTACKS = ("gaussian_noise", "broken_sensor")
_SEED_STREAM = 0xBAD  # the bad clients' draw, apart from every other use of the data seed


def choose_bad_clients(num_clients: int, fraction: float, seed: int) -> np.ndarray:
    """The sorted ids of ``round(fraction * K)`` clients drawn without replacement (seeded)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"robust.bad_fraction must be in [0, 1], got {fraction}")
    count = int(round(fraction * num_clients))
    rng = np.random.default_rng([seed, _SEED_STREAM])
    return np.sort(rng.choice(num_clients, count, replace=False)).astype(np.int64)


def corrupt_dataset(
    dataset: FederatedDataset,
    attack: str,
    bad_clients: np.ndarray,
    *,
    seed: int,
    noise_std: float = 0.3,
    sensor_fraction: float = 0.3,
) -> FederatedDataset:
    """``dataset`` with the training examples of ``bad_clients`` corrupted by the data
    ``attack`` (see the module docstring); unchanged for ``"none"`` and update attacks.

    Only the bad clients' examples change (an example two clients share would change for
    both); the flat arrays are copied, the test split is left as it is.

    Raises:
      DataError: an image attack on data that is not images (Shakespeare's characters).
    """
    if attack not in ATTACKS:
        raise ValueError(f"robust.attack must be one of {list(ATTACKS)}, got {attack!r}")
    if attack not in DATA_ATTACKS or not len(bad_clients):
        return dataset
    x, y = dataset.train["x"], dataset.train["y"]
    if attack in IMAGE_ATTACKS and x.ndim != 4:
        raise DataError(
            f"robust.attack={attack!r} corrupts images; data.name={dataset.name!r} is not "
            f"images: use one of {['label_flip', 'random_labels', *UPDATE_ATTACKS]}"
        )
    x, y = x.copy(), y.copy()
    for client in bad_clients:
        # one stream per client: a client's corruption does not depend on who else is bad
        rng = np.random.default_rng([seed, _SEED_STREAM, int(client)])
        idx = np.asarray(dataset.train_client_indices[client])
        if attack == "label_flip":
            y[idx] = dataset.num_classes - 1 - y[idx]
        elif attack == "random_labels":
            y[idx] = rng.integers(0, dataset.num_classes, len(idx))
        else:
            images = x[idx].astype(np.float32)
            images += rng.normal(0.0, noise_std * 255.0, images.shape)
            if attack == "broken_sensor":
                dead = rng.random(images.shape[1:3]) < sensor_fraction  # [H, W], all channels
                images[:, dead] = 0.0
            x[idx] = np.clip(np.round(images), 0, 255).astype(x.dtype)
    return dataclasses.replace(dataset, train={**dataset.train, "x": x, "y": y})


def attack_updates(parts: FederatedParts, attack: str, scale: float) -> FederatedParts:
    """``parts`` whose clients with ``info["bad"]`` send ``-scale * delta`` (``sign_flip``)
    or ``scale * delta`` (``scaled``) in place of their delta; the rest is unchanged (their
    own state, metrics and extras are those of honest training). ``parts`` as they are for
    any other ``attack``."""
    if attack not in UPDATE_ATTACKS:
        return parts
    factor = -scale if attack == "sign_flip" else scale

    def client_update(state, clients, inputs) -> ClientOutput:
        output = parts.client_update(state, clients, inputs)
        multiplier = jnp.where(inputs.info["bad"], factor, 1.0)
        delta = jax.tree.map(lambda d: d * multiplier.astype(d.dtype), output.delta)
        return output._replace(delta=delta)

    return parts._replace(client_update=client_update)


def bad_client_flags(num_clients: int, bad_clients: np.ndarray) -> np.ndarray:
    """``[K]`` bool, True for the bad clients (the ``bad`` attribute of the client data)."""
    flags = np.zeros(num_clients, bool)
    flags[np.asarray(bad_clients, np.int64)] = True
    return flags
