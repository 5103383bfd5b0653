r"""Post-local SGD (Lin et al. 2020) as torch's PostLocalSGDOptimizer runs it, on LocalSGD's
digits setting: synchronous SGD for the first 10 epochs' 112 steps (the workers' gradients
averaged, so one model and one shared momentum buffer: DDP's all-reduce), then local SGD with
each worker's own momentum buffer, the models averaged after the first local step and every
H = 8 steps after it (torch's PeriodicModelAverager); 40 epochs in all.

  python -m fedjax_sim --config configs/postlocal_digits.py --workdir runs/postlocal_digits

The switch: --config.localsgd.switch_step=N (N synchronous rounds of one step each). The
single-rule schedule (each worker steps on its own gradient and the models are averaged
before the switch; the momentum at every sync as localsgd.sync_momentum says):
--config.localsgd.before_switch=models --config.localsgd.sync_momentum=keep|average|reset.
Smoke: --config configs/postlocal_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    config = digits_workers("localsgd", arg)
    config.localsgd.schedule = "post_local"  # sync_momentum None: each worker's own after
    if arg == "smoke":
        config.localsgd.switch_step = 2
    else:
        config.localsgd.switch_step = 112  # 10 epochs: 10 * 1438 / (8 * 16)
        config.rounds = 112 + 1 + 42  # + the first local step + 30 epochs at H = 8
        config.eval_every = 14
        config.checkpoint_every = 14
    return config
