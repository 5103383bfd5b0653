r"""FedBN (Li et al. 2021) with ResNet-20 (BatchNorm) on CIFAR-100, Dirichlet(0.5) over 100
clients: every client keeps its BatchNorm parameters and statistics; evaluation uses each
client's own.

  python -m fedjax_sim --config configs/fedbn_cifar100.py --workdir runs/fedbn_cifar100

FedAvg with the same model: `--config.algorithm=fedavg` (statistics averaged;
`--config.model_state=local` keeps them local, parameters averaged); with it,
`--config.model.norm=group` (or layer, none) for the normalization study (fedbn needs batch).
Needs the CIFAR-100 archive (see configs/fedavg_cifar100.py). Expected: not yet measured (no
CIFAR-100 on this project's machines).
Smoke (synthetic CIFAR-shaped data, seconds): --config configs/fedbn_cifar100.py:smoke
"""

from fedjax_sim.config.presets import cifar100_federated


def get_config(arg=None):
    config = cifar100_federated("fedbn", arg)
    config.model.name = "resnet20"
    config.model.norm = "batch"
    return config
