r"""Centralized baseline on the same Shakespeare clients as fedavg_shakespeare (pooled).

  python -m fedjax_sim --config configs/centralized_shakespeare.py --workdir runs/central_shak

SGD with momentum 0.9, weight decay 5e-4, cosine schedule, batch 64, on the pooled training
examples of the 100 clients of the FedAvg config. `rounds` counts optimizer steps: 600 steps of
64 see 38,400 samples, against the 60,000 of the FedAvg config's 150 rounds (about 6 minutes on
2 cores). Expected: see the README's results.
Smoke: --config configs/centralized_shakespeare.py:smoke
"""

from fedjax_sim.config.defaults import base_config, variant


def get_config(arg=None):
    config = base_config("shakespeare", "centralized")
    config.data.num_clients = 100
    config.optimizer.learning_rate = 0.5
    config.rounds = 600
    config.eval_every = 100
    config.checkpoint_every = 100
    config.eval_max_examples = 2000
    if variant(arg) == "smoke":
        config.data.num_clients = 12
        config.model.hidden = 32
        config.batch_size = 8
        config.rounds = 6
        config.eval_every = 3
        config.checkpoint_every = 3
        config.eval_max_examples = 200
    return config
