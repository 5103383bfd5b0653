r"""FedDyn (Acar et al. 2021) on the main job's Shakespeare setting, alpha = 0.01.

  python -m fedjax_sim --config configs/feddyn_shakespeare.py --workdir runs/feddyn_shakespeare

Everything as configs/fedavg_shakespeare.py; the server step is the paper's (no server
optimizer); every client keeps its last gradient (100 x 817,872 parameters, 327 MB float32).
Expected: see the README's algorithm table.
Smoke (seconds): --config configs/feddyn_shakespeare.py:smoke
"""

from fedjax_sim.config.presets import shakespeare_main_job


def get_config(arg=None):
    config = shakespeare_main_job("feddyn", arg)
    config.feddyn.alpha = 0.01
    return config
