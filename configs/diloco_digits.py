r"""DiLoCo (Douillard et al. 2023) on LocalSGD's digits setting: inner AdamW (lr 1e-3, weight
decay 0.1) whose state each worker keeps across synchronizations, outer Nesterov SGD with
learning rate 0.7 and momentum 0.9 (OpenDiLoCo's and torchft's defaults), H = 32.

  python -m fedjax_sim --config configs/diloco_digits.py --workdir runs/diloco_digits

The inner AdamW's moment decays: --config.client.b1=B1 --config.client.b2=B2 (unset: optax's
0.9 and 0.999).

Smoke: --config configs/diloco_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    config = digits_workers("localsgd", arg)
    config.client.optimizer = "adam"
    config.client.learning_rate = 1e-3
    config.client.momentum = 0.0
    config.client.weight_decay = 0.1
    config.localsgd.sync_momentum = "keep"
    config.server.learning_rate = 0.7
    config.server.momentum = 0.9
    config.server.nesterov = True
    if arg != "smoke":
        config.client.local_steps = 32
        config.rounds = 14  # 40 epochs
        config.eval_every = 2
        config.checkpoint_every = 2
    return config
