r"""Large-batch CIFAR-100 with the course CNN: LARS (You et al. 2017) at batch 4,096 in
micro-batches of 256 (gradient accumulation), learning rate 2.0 at batch 64 scaled by the
square root, linear warmup over 5 epochs' steps then polynomial decay, no weight decay or
trust ratio on biases; 610 steps = 50 epochs.

  python -m fedjax_sim --config configs/largebatch_cifar100.py --workdir runs/largebatch_cifar

LAMB instead: --config.optimizer.name=lamb --config.optimizer.learning_rate=0.01
--config.optimizer.momentum=None. Expected: not measured by this project (CIFAR-100 cannot be
downloaded on its machines). Smoke (synthetic CIFAR-shaped data): --config
configs/largebatch_cifar100.py:smoke
"""

from fedjax_sim.config.presets import cifar100_workers


def get_config(arg=None):
    return cifar100_workers("centralized", arg)
