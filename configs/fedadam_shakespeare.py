r"""FedAdam (Reddi et al. 2021, Algorithm 2: no bias correction, tau added to sqrt(v)) on the
main job's Shakespeare setting: server lr 0.01, b1 0.9, b2 0.99, tau (eps) 1e-3, v_{-1} = tau^2.

  python -m fedjax_sim --config configs/fedadam_shakespeare.py --workdir runs/fedadam_shakespeare

The rest of the FedOpt family: FedYogi `--config.server.optimizer=yogi`, FedAdagrad
`--config.server.optimizer=adagrad` from this file (optax's bias-corrected Adam, which is not
Algorithm 2: `--config.server.optimizer=optax_adam`);
FedAvgM from configs/fedavg_shakespeare.py with `--config.server.momentum=0.9
--config.server.learning_rate=0.3`.
Smoke (seconds): --config configs/fedadam_shakespeare.py:smoke
"""

from fedjax_sim.config.presets import shakespeare_main_job


def get_config(arg=None):
    config = shakespeare_main_job("fedavg", arg)
    config.server.optimizer = "adam"
    config.server.learning_rate = 0.01
    config.server.eps = 1e-3
    return config
