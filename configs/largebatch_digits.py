r"""Large-batch training (You et al. 2017): LARS with batch 1024 on the digits' CNN, from a
learning rate tuned at batch 128 scaled by the square-root rule, linear warmup then polynomial
(power 2) decay, no weight decay or trust ratio on biases, gradient accumulation over
micro-batches of 128 (memory of one micro-batch); 40 epochs (56 steps).

  python -m fedjax_sim --config configs/largebatch_digits.py --workdir runs/largebatch_digits

LAMB: --config.optimizer.name=lamb --config.optimizer.learning_rate=0.01
--config.optimizer.momentum=None; SGD-momentum or AdamW the same way; other batches
--config.batch_size=4096 --config.rounds=14 (rounds = 40 * 1438 / batch).
Smoke: --config configs/largebatch_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    config = digits_workers("centralized", arg)
    opt = config.optimizer
    opt.name = "lars"
    opt.learning_rate = 1.0
    opt.momentum = 0.9
    opt.weight_decay = 1e-4
    opt.schedule = "warmup_poly"
    opt.lr_scaling = "sqrt"
    opt.base_batch_size = 128
    opt.exclude_bias_and_norm = True
    if arg == "smoke":
        config.batch_size = 64
        config.micro_batch_size = 16
        opt.warmup_steps = 1
    else:
        config.batch_size = 1024
        config.micro_batch_size = 128
        config.rounds = 56  # 40 epochs of 1,438 examples
        opt.warmup_steps = 5
        config.eval_every = 7
        config.checkpoint_every = 7
    return config
