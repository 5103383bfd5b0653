r"""LocalSGD on the digits setting with a batch that grows with the gradient noise scale
(McCandlish et al. 2018): B_simple is estimated every round from the K = 8 workers' gradients
(B and 8 B examples), smoothed, and each worker's batch doubles from 2 up to 16 as
B_simple / K rises; H = 8. The run reports noise_scale and batch_size every round.

  python -m fedjax_sim --config configs/adaptive_batch_digits.py --workdir runs/adaptive_batch

Only estimate B_simple, at a fixed batch: --config.localsgd.batch_schedule=constant
--config.localsgd.noise_scale=True. Smoke: --config configs/adaptive_batch_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    config = digits_workers("localsgd", arg)
    config.localsgd.sync_momentum = "keep"
    config.localsgd.batch_schedule = "noise_scale"
    if arg == "smoke":
        config.localsgd.initial_batch_size = 4
    else:
        config.client.batch_size = 16  # the largest batch (the static shape)
        config.localsgd.initial_batch_size = 2
        config.rounds = 60
        config.eval_every = 6
        config.checkpoint_every = 6
    return config
