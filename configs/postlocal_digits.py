r"""Post-local SGD (Lin et al. 2020; torch's PostLocalSGDOptimizer) on LocalSGD's digits
setting: synchronous SGD (H = 1, momentum averaged: data-parallel SGD with the summed batch)
for the first 10 epochs' 112 steps, then H = 8 with local momentum; 40 epochs in all.

  python -m fedjax_sim --config configs/postlocal_digits.py --workdir runs/postlocal_digits

The switch: --config.localsgd.switch_step=N (N synchronous rounds of one step each).
Smoke: --config configs/postlocal_digits.py:smoke
"""

from fedjax_sim.config_presets import digits_workers


def get_config(arg=None):
    config = digits_workers("localsgd", arg)
    config.localsgd.schedule = "post_local"
    config.localsgd.sync_momentum = "keep"
    if arg == "smoke":
        config.localsgd.switch_step = 2
    else:
        config.localsgd.switch_step = 112  # 10 epochs: 10 * 1438 / (8 * 16)
        config.rounds = 112 + 42  # + 30 epochs at H = 8
        config.eval_every = 14
        config.checkpoint_every = 14
    return config
