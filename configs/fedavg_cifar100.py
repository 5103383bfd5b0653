r"""FedAvg on CIFAR-100 with the course CNN, label skew Dirichlet(alpha) over 100 clients.

  python -m fedjax_sim --config configs/fedavg_cifar100.py --workdir runs/fedavg_cifar \
      --config.data.download=True          # first time, with internet (or place the archive)

10 clients per round, J = 8 local SGD steps of B = 64 (lr 0.05), server SGD lr 1, random-crop
and flip augmentation. `--config.data.partition=shards --config.data.classes_per_client=5` for
the Nc-classes split, `=iid` for IID. Without the archive the run stops with a one-line error.
Expected: not yet measured by this project (CIFAR-100 cannot be downloaded on its machines); the
smoke variant finishes in about 20 s with accuracy near chance (synthetic data, 2-4 steps).
Smoke (synthetic CIFAR-shaped data, seconds): --config configs/fedavg_cifar100.py:smoke
"""

from fedjax_sim.config.presets import cifar100_federated


def get_config(arg=None):
    return cifar100_federated("fedavg", arg)
