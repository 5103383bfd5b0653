r"""SlowMo (Wang et al. 2020) on LocalSGD's digits setting: the outer step is SGD with slow
momentum beta = 0.5 and outer learning rate alpha = 1.0 on the averaged pseudo-gradient
(fairscale's SlowMoDistributedDataParallel defaults); beta = 0, alpha = 1 is LocalSGD.

  python -m fedjax_sim --config configs/slowmo_digits.py --workdir runs/slowmo_digits

beta and alpha: --config.server.momentum=0.7 --config.server.learning_rate=0.8. A decaying
inner learning rate, fairscale's way (the pseudo-gradient divided by the round's rate):
--config.client.schedule=cosine.
Smoke: --config configs/slowmo_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    config = digits_workers("localsgd", arg)
    config.localsgd.sync_momentum = "keep"
    config.server.momentum = 0.5
    config.server.learning_rate = 1.0
    config.localsgd.normalize_outer = True  # fairscale's, for a scheduled client learning rate
    return config
