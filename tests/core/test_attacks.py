"""Noisy and malicious clients: the seeded choice of bad clients, each data attack changing
exactly the bad clients' training examples, update attacks in a FedAvg round against the
clients' deltas computed one by one, FedGW-style noise-aware weighting by hand, and a run that
records its bad clients in dataset.json."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_sim.core import attacks
from fedjax_sim.core.robust_aggregation import noise_aware, noise_aware_weights
from fedjax_sim.data.dataset import DataError, FederatedDataset


def test_noise_aware_weighting_by_hand():
    deltas = jnp.array([[1.0, 1.0, 0.0], [2.0, 0.0, 0.0], [-3.0, -1.0, 1.0]])
    weights = jnp.array([1.0, 2.0, 1.0])
    median = np.array([1.0, 0.0, 0.0])  # of each coordinate
    norms = np.linalg.norm(np.asarray(deltas), axis=1)  # sqrt 2, 2, sqrt 11
    cosine = np.asarray(deltas) @ median / norms
    trust = np.maximum(cosine, 0) * np.asarray(weights)  # 1/sqrt2, 2, 0
    scale = np.median(norms) / norms
    expected = (trust * scale) @ np.asarray(deltas) / trust.sum()
    got_trust, got_scale = noise_aware_weights({"w": deltas}, weights > 0, weights)
    np.testing.assert_allclose(got_trust, trust, rtol=1e-6)
    np.testing.assert_allclose(got_scale, scale, rtol=1e-6)
    tx = noise_aware()
    got = tx.update({"w": deltas}, tx.init(None), weights=weights)[0]["w"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got_trust[2] == 0  # the one pointing against the others takes no part
    # an absent client is neither in the median nor weighted
    absent = jnp.array([1.0, 2.0, 0.0])
    reference = np.array([1.5, 0.5, 0.0])  # the median of clients 0 and 1: their mid-point
    by_hand = np.asarray(deltas[:2]) @ reference / (norms[:2] * np.linalg.norm(reference))
    got_trust, _ = noise_aware_weights({"w": deltas}, absent > 0, absent)
    np.testing.assert_allclose(got_trust, [by_hand[0], 2 * by_hand[1], 0.0], rtol=1e-6)


def test_bad_clients_are_a_seeded_fraction():
    bad = attacks.choose_bad_clients(20, 0.3, seed=4)
    assert len(bad) == 6 and len(set(bad)) == 6 and list(bad) == sorted(bad)
    np.testing.assert_array_equal(bad, attacks.choose_bad_clients(20, 0.3, seed=4))
    assert list(attacks.choose_bad_clients(20, 0.3, seed=5)) != list(bad)
    assert len(attacks.choose_bad_clients(20, 0.0, seed=4)) == 0
    with pytest.raises(ValueError, match="bad_fraction"):
        attacks.choose_bad_clients(20, 1.5, seed=0)


def _images(num_clients=4, per_client=5, seed=0):
    rng = np.random.default_rng(seed)
    n = num_clients * per_client
    return FederatedDataset(
        name="toy",
        train={"x": rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8),
               "y": rng.integers(0, 10, n).astype(np.int32)},
        test={"x": np.zeros((3, 4, 4, 3), np.uint8), "y": np.zeros(3, np.int32)},
        train_client_indices=tuple(np.arange(k, n, num_clients) for k in range(num_clients)),
        test_client_indices=None,
        client_ids=tuple(f"c{k}" for k in range(num_clients)),
        num_classes=10,
    )  # fmt: skip


@pytest.mark.parametrize("attack", attacks.DATA_ATTACKS)
def test_data_attacks_change_exactly_the_bad_clients_training_examples(attack):
    dataset = _images()
    bad = np.array([1, 3])
    out = attacks.corrupt_dataset(dataset, attack, bad, seed=0, noise_std=0.2,
                                  sensor_fraction=0.5)  # fmt: skip
    good_idx = np.concatenate([dataset.train_client_indices[k] for k in (0, 2)])
    bad_idx = np.concatenate([dataset.train_client_indices[k] for k in bad])
    for name in ("x", "y"):
        np.testing.assert_array_equal(out.train[name][good_idx], dataset.train[name][good_idx])
        assert out.train[name].dtype == dataset.train[name].dtype
    np.testing.assert_array_equal(out.test["x"], dataset.test["x"])
    changed = "y" if attack in ("label_flip", "random_labels") else "x"
    assert np.any(out.train[changed][bad_idx] != dataset.train[changed][bad_idx])
    kept = "x" if changed == "y" else "y"
    np.testing.assert_array_equal(out.train[kept], dataset.train[kept])
    if attack == "label_flip":
        np.testing.assert_array_equal(out.train["y"][bad_idx], 9 - dataset.train["y"][bad_idx])
    if attack == "broken_sensor":  # the same dead pixels in every image of a client
        for k in bad:
            images = out.train["x"][dataset.train_client_indices[k]]
            dead = np.all(images == 0, axis=(0, 3))
            assert dead.any() and not dead.all()
    again = attacks.corrupt_dataset(dataset, attack, bad, seed=0, noise_std=0.2,
                                    sensor_fraction=0.5)  # fmt: skip
    np.testing.assert_array_equal(again.train[changed], out.train[changed])  # seeded


def test_image_attacks_refuse_token_data():
    dataset = _images()
    tokens = FederatedDataset(**{**dataset.__dict__, "train": {
        "x": np.zeros((20, 80), np.int32), "y": dataset.train["y"]}})  # fmt: skip
    with pytest.raises(DataError, match="broken_sensor.*not images.*label_flip"):
        attacks.corrupt_dataset(tokens, "broken_sensor", np.array([0]), seed=0)


@pytest.mark.parametrize("attack, factor", [("sign_flip", -2.0), ("scaled", 2.0)])
def test_update_attacks_in_a_fedavg_round(attack, factor):
    from fedjax_sim.algorithms.fedavg import fedavg_parts
    from fedjax_sim.core.round import federated_round
    from fedjax_sim.core.selection import uniform
    from fedjax_sim.models.model import variables
    from tests.linear_workers import OBJECTIVE, PARAMS0, linear_workers

    workers = linear_workers(3, 4, seed=2)
    clients = workers.clients.replace(attributes={"bad": jnp.array([False, True, False])})
    parts = fedavg_parts(OBJECTIVE, optax.sgd(0.5), optax.sgd(1.0), num_clients=3)
    parts = attacks.attack_updates(parts, attack, 2.0)
    round_fn = federated_round(parts, sampler=uniform(3), local_steps=1, batch_size=4)
    state, _ = jax.jit(round_fn)(parts.init(variables(PARAMS0)), clients, jax.random.key(0))
    deltas = [jax.tree.map(lambda g: -0.5 * g, workers.grad(PARAMS0, s)) for s in workers.shards]
    sent = [deltas[0], jax.tree.map(lambda d: factor * d, deltas[1]), deltas[2]]
    expected = jax.tree.map(lambda p, *d: p + np.mean(np.stack(d), 0), PARAMS0, *sent)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_a_run_records_its_bad_clients(tmp_path):
    from fedjax_sim.config import files as config_files
    from fedjax_sim.experiment.assembly import bad_clients_of, build_experiment
    from fedjax_sim.experiment.run import run_experiment

    config = config_files.load_config("configs/fedavg_digits.py:smoke")
    config.robust.attack, config.robust.bad_fraction = "label_flip", 0.5
    config.rounds = 1
    run_experiment(config, str(tmp_path), progress=False)
    record = json.loads((tmp_path / "dataset.json").read_text())["attack"]
    bad = attacks.choose_bad_clients(6, 0.5, config.data.seed)
    assert record["name"] == "label_flip" and record["bad_clients"] == list(bad)
    np.testing.assert_array_equal(bad_clients_of(config, 6), bad)
    experiment = build_experiment(config)
    flags = np.asarray(experiment.clients.attributes["bad"])
    assert list(np.flatnonzero(flags)) == list(bad)
