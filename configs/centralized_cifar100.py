r"""Centralized baseline on CIFAR-100 with the course CNN.

  python -m fedjax_sim --config configs/centralized_cifar100.py --workdir runs/central_cifar

SGD with momentum 0.9, weight decay 5e-4, cosine schedule, batch 64, augmentation; `rounds`
counts optimizer steps (40,000 steps = 51 epochs).
Expected: not yet measured by this project (CIFAR-100 cannot be downloaded on its machines); the
smoke variant finishes in about 20 s with accuracy near chance (synthetic data, 2-4 steps).
Smoke (synthetic CIFAR-shaped data): --config configs/centralized_cifar100.py:smoke
"""

from fedjax_sim.config.defaults import base_config, variant


def get_config(arg=None):
    config = base_config("cifar100", "centralized")
    config.data.partition = "iid"
    config.rounds = 40000
    config.eval_every = 2000
    config.checkpoint_every = 2000
    if variant(arg) == "smoke":
        config.data.source = "synthetic"
        config.data.synthetic_train = 400
        config.data.synthetic_test = 100
        config.batch_size = 8
        config.rounds = 4
        config.eval_every = 2
        config.checkpoint_every = 2
    return config
