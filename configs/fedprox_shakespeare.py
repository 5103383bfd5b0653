r"""FedProx (Li et al. 2020) on the main job's Shakespeare setting, mu = 0.01.

  python -m fedjax_sim --config configs/fedprox_shakespeare.py --workdir runs/fedprox_shakespeare

Everything as configs/fedavg_shakespeare.py; clients minimize F_k(w) + mu/2 ||w - w_t||^2.
Expected: see the README's algorithm table (150 rounds, 2 CPU cores: a few minutes).
Smoke (seconds): --config configs/fedprox_shakespeare.py:smoke
"""

from fedjax_sim.config.presets import shakespeare_main_job


def get_config(arg=None):
    config = shakespeare_main_job("fedprox", arg)
    config.fedprox.mu = 0.01
    return config
