r"""FedAvg on LEAF Shakespeare built offline from the `shakespeare` package's play texts.

The README's main job:
  python -m fedjax_sim --config configs/fedavg_shakespeare.py --workdir runs/fedavg_shakespeare

100 clients drawn (seeded) from the ~1,078 (play, role) clients, 10 per round (C = 0.1), J = 4
local SGD steps of B = 10, server SGD lr 1 (plain FedAvg). Expected on 2 CPU cores: about 10
minutes, test accuracy 0.32 after 150 rounds (per-client mean 0.32, 10th percentile 0.20).
Smoke (seconds): --config configs/fedavg_shakespeare.py:smoke
"""

from fedjax_sim.config.presets import shakespeare_main_job


def get_config(arg=None):
    return shakespeare_main_job("fedavg", arg)
