r"""q-FedAvg (Li et al. 2020, "Fair Resource Allocation in Federated Learning", Algorithm 2) on
the main job's Shakespeare setting, q = 1.

  python -m fedjax_sim --config configs/qfedavg_shakespeare.py --workdir runs/qfedavg_shakespeare

Everything as configs/fedavg_shakespeare.py; the server steps by -sum Delta_k / sum h_k, each
client weighed by its loss at the round's model to the power q (--config.qffl.q=0: FedAvg's
uniform mean). The paper's experiments draw clients in proportion to their data:
--config.selection.name=proportional.
Smoke (seconds): --config configs/qfedavg_shakespeare.py:smoke
"""

from fedjax_sim.config.presets import shakespeare_main_job


def get_config(arg=None):
    config = shakespeare_main_job("qfedavg", arg)
    config.qffl.q = 1.0
    return config
