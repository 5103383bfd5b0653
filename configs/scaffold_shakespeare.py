r"""SCAFFOLD (Karimireddy et al. 2020, option II) on the main job's Shakespeare setting.

  python -m fedjax_sim --config configs/scaffold_shakespeare.py --workdir runs/scaffold_shakespeare

Everything as configs/fedavg_shakespeare.py (client SGD lr 1, server SGD lr 1 = eta_g); every
one of the 100 clients keeps a control variate (100 x 817,872 parameters, 327 MB float32).
`--config.scaffold.option=I` for the gradient-based control update.
Expected: see the README's algorithm table.
Smoke (seconds): --config configs/scaffold_shakespeare.py:smoke
"""

from fedjax_sim.config.presets import shakespeare_main_job


def get_config(arg=None):
    config = shakespeare_main_job("scaffold", arg)
    config.scaffold.option = "II"
    return config
