r"""LocalSGD (Stich 2019) on K = 8 workers: the course CNN on scikit-learn's digits (real data,
no download), sharded IID, H = 8 local SGD-momentum steps of B = 16 between synchronizations,
each worker keeping its momentum buffer; 40 epochs (56 rounds, seconds on 2 cores).

  python -m fedjax_sim --config configs/localsgd_digits.py --workdir runs/localsgd_digits

Other H and K: --config.client.local_steps=32 --config.data.num_clients=4 (rounds for the same
epochs: 40 * 1438 / (K * 16 * H)). The momentum at a sync: --config.localsgd.sync_momentum=
reset|keep|average. SlowMo, DiLoCo and post-local SGD are configs of this algorithm
(configs/slowmo_digits.py, configs/diloco_digits.py, configs/postlocal_digits.py).
Smoke: --config configs/localsgd_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    config = digits_workers("localsgd", arg)
    config.localsgd.sync_momentum = "keep"
    return config
