"""``client.local_epochs=E`` alone means E passes over each client's data: ceil(E n_k / B)
steps for a client of n_k examples, whatever ``client.local_steps`` says; refused where it
cannot mean that, with what to set."""

import numpy as np
import pytest

from fedjax_sim.config.building_blocks import MAX_EPOCH_STEPS, with_epoch_steps
from fedjax_sim.config.checks import ConfigError, check_config
from fedjax_sim.config.files import load_config, with_overrides
from fedjax_sim.experiment.assembly import build_experiment
from fedjax_sim.runtime.simulate import simulate


def _config(**overrides):
    return with_overrides(load_config("configs/fedavg_shakespeare.py:smoke"), overrides)


def test_one_epoch_is_one_pass_over_every_clients_examples(shakespeare_cache):
    """Clients of 67 to 10,910 examples each see every example once in the round (all of them
    take part): the examples trained on are their total, not local_steps x B of each."""
    config = _config(**{"client.local_epochs": 1, "client.batch_size": 64, "rounds": 1,
                        "clients_per_round": 12, "model.hidden": 8,
                        "data.cache_dir": shakespeare_cache})  # fmt: skip
    experiment = build_experiment(config)
    sizes = experiment.dataset.client_sizes()
    assert sizes.min() * 10 < sizes.max()  # clients of very different sizes
    assert experiment.config.client.local_steps == int(np.ceil(sizes.max() / 64))
    assert config.client.local_steps == 2  # the config as given (and recorded) is unchanged
    _, history = simulate(
        experiment.algorithm.round_fn, experiment.clients, 1,
        state=experiment.initial_state, key=experiment.key, progress=False,
    )  # fmt: skip
    assert history[-1]["train_examples"] == sizes.sum()


def test_epoch_steps_follow_the_largest_client_and_are_bounded():
    config = _config(**{"client.local_epochs": 3, "client.batch_size": 10})
    assert with_epoch_steps(config, np.array([5, 41, 12])).client.local_steps == 13  # 3 x 41 / 10
    assert with_epoch_steps(_config(), np.array([5, 41])).client.local_steps == 2  # E = 0
    too_many = rf"\(4001 examples\) 1201 local steps a round, over the {MAX_EPOCH_STEPS} "
    with pytest.raises(ConfigError, match=too_many + ".*raise client.batch_size"):
        with_epoch_steps(config, np.array([4001]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"client.local_epochs": 1, "client.local_work": "proportional"},
         r"client.local_epochs=1 sets each client's work .*use 'fixed'"),
        ({"client.local_epochs": 1, "algorithm": "localsgd"},
         r"client.local_epochs=1 is for federated algorithms; localsgd's workers take .*"),
    ],
)  # fmt: skip
def test_local_epochs_refused_where_they_cannot_mean_passes(overrides, message):
    config = with_overrides(load_config("configs/fedavg_digits.py:smoke"), overrides)
    with pytest.raises(ConfigError, match=message):
        check_config(config)
