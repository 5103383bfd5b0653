r"""A2CiD2 (Nabli, Belilovsky & Oyallon 2023): decentralized gossip SGD with a continuous
momentum on K = 8 workers of the digits setting, no server: each worker takes one SGD-momentum
step (B = 16) and then averages with a ring neighbour, 8 steps per round; 56 rounds = 40
epochs, as configs/localsgd_digits.py. The constants eta and beta~ come from the ring's
Laplacian as in the paper.

  python -m fedjax_sim --config configs/a2cid2_digits.py --workdir runs/a2cid2_digits

Its baseline, plain gossip SGD: --config.gossip.accelerate=False. Random pairs instead of the
ring: --config.gossip.graph=random_pairs; more averagings per step: --config.gossip.
communications=2. Smoke: --config configs/a2cid2_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    return digits_workers("gossip", arg)
