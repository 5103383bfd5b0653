r"""FedNova (Wang et al. 2020) on the main job's Shakespeare setting with heterogeneous
local work: each client runs a number of the J = 8 local steps proportional to its data.

  python -m fedjax_sim --config configs/fednova_shakespeare.py --workdir runs/fednova_shakespeare

Compare with the same heterogeneity under plain averaging:
  --config configs/fednova_shakespeare.py --config.algorithm=fedavg
Smoke (seconds): --config configs/fednova_shakespeare.py:smoke
"""

from fedjax_sim.config.presets import shakespeare_main_job


def get_config(arg=None):
    config = shakespeare_main_job("fednova", arg)
    config.client.local_steps = 2 if arg == "smoke" else 8
    config.client.local_work = "proportional"
    return config
