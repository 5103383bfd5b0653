r"""LocalSGD on CIFAR-100 with the course CNN: the 50,000 training images sharded IID over
K = 8 workers, H = 8 SGD-momentum steps (lr 0.05, momentum 0.9 kept per worker, weight decay
5e-4) of B = 32 per worker between synchronizations, augmentation; 1,221 rounds = 50 epochs.

  python -m fedjax_sim --config configs/localsgd_cifar100.py --workdir runs/localsgd_cifar

The other distributed algorithms on the same workers, by flag: SlowMo --config.server.momentum=0.5;
DiLoCo --config.client.optimizer=adam --config.client.learning_rate=1e-3
--config.server.learning_rate=0.7 --config.server.momentum=0.9 --config.server.nesterov=True;
post-local SGD --config.localsgd.schedule=post_local --config.localsgd.switch_step=1000;
asynchronous SGD --config.algorithm=asyncsgd --config.server.learning_rate=0.125
--config.speed.model=lognormal; A2CiD2 --config.algorithm=gossip.
Expected: not measured by this project (CIFAR-100 cannot be downloaded on its machines).
Smoke (synthetic CIFAR-shaped data): --config configs/localsgd_cifar100.py:smoke
"""

from fedjax_sim.config.presets import cifar100_workers


def get_config(arg=None):
    config = cifar100_workers("localsgd", arg)
    config.localsgd.sync_momentum = "keep"
    return config
