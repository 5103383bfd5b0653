r"""LocalSGD with a data-driven number of local steps on the digits setting: H starts at 1 and
doubles (up to 64) while the workers' models stay within a squared distance of 0.01 of their
average after a sync (divergence mean_k |x_k - mean_k x_k|^2, after Kamp et al. 2018's dynamic
averaging), halving above twice that; the rule is stated in fedjax_sim.algorithms.local_sgd.

  python -m fedjax_sim --config configs/adaptive_steps_digits.py --workdir runs/adaptive_steps

Increasing H on a fixed timetable instead (Haddadpour et al. 2019): --config.localsgd.schedule=
increasing --config.localsgd.double_every=10. The threshold: --config.localsgd.
divergence_threshold=0.003. Smoke: --config configs/adaptive_steps_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    config = digits_workers("localsgd", arg)
    config.localsgd.sync_momentum = "keep"
    config.localsgd.schedule = "adaptive"
    config.localsgd.initial_steps = 1
    if arg != "smoke":
        config.client.local_steps = 64  # the cap
        config.rounds = 100
        config.eval_every = 10
        config.checkpoint_every = 10
    return config
