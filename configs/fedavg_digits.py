r"""FedAvg on scikit-learn's digits (real data, no download): the course CNN, K = 20 clients
with Dirichlet(0.5) label skew over the 1,438 training images, 10 per round, J = 8 local SGD
steps of B = 16, 60 rounds (about 50 epochs; a minute on 2 cores). The federated track's
quick offline setting, used by the robustness experiment (experiments/robustness_digits/).

  python -m fedjax_sim --config configs/fedavg_digits.py --workdir runs/fedavg_digits

Bad clients: --config.robust.attack=label_flip --config.robust.bad_fraction=0.3; a robust
server: --config.robust.aggregator=median|trimmed_mean|norm_clipping|krum|noise_aware.
Smoke: --config configs/fedavg_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_federated


def get_config(arg=None):
    return digits_federated("fedavg", arg)
