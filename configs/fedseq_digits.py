r"""FedSeq (Zaccone et al. 2022) on scikit-learn's digits (real data, no download): K = 50
clients with strong label skew, Dirichlet(0.1), grouped by their label histograms into
superclients of at most 5 dissimilar clients (greedy KL); 2 superclients per round, each
trained through its members in sequence (J = 8 SGD steps of B = 16 per member, client lr 0.02),
so a round trains 10 clients, as configs/fedavg_digits.py's FedAvg does in parallel. 60 rounds.
At FedAvg's lr 0.05 the 40-step chains through one- or two-digit clients can collapse to chance
(experiments/fedseq_digits/fedseq_digits.md); at 0.02 every grouper beats FedAvg there.

  python -m fedjax_sim --config configs/fedseq_digits.py --workdir runs/fedseq_digits

Groupers: --config.fedseq.grouper=random|greedy_kl|kmeans; the paper's estimate from a briefly
trained model's predictions on server-held exemplars: --config.fedseq.estimate=confidence;
members in a new random order every round: --config.fedseq.order=shuffle. dataset.json lists
the superclients. Smoke: --config configs/fedseq_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_federated


def get_config(arg=None):
    config = digits_federated("fedseq", arg)
    config.data.alpha = 0.1
    config.data.num_clients = 50
    config.clients_per_round = 2  # superclients per round
    config.fedseq.max_clients = 5
    config.client.learning_rate = 0.02
    if arg == "smoke":
        config.data.num_clients = 6
        config.fedseq.max_clients = 2
        config.fedseq.estimate_steps = 2
        config.fedseq.exemplars = 20
    return config
