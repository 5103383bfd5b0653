r"""Personalized FL on scikit-learn's digits (real data, no download): Ditto by default, any of
fedper, lg_fedavg, fedrep, fedbabu, ditto, apfl (and fedavg, fedbn) with --config.algorithm.
configs/fedavg_digits.py's setting (the course CNN, K = 20 clients, 10 per round, J = 8 SGD
steps of B = 16, 60 rounds) with strong label skew, Dirichlet(0.1), and 50 test examples per
client drawn with its own label distribution. Every evaluation reports the global model's
per-client accuracy (mean, std, worst 10%, worst client), the personalized models' (personal_*)
and every client's model fine-tuned for 5 local steps (finetuned_*).

  python -m fedjax_sim --config configs/personalized_digits.py --workdir runs/ditto_digits
  python -m fedjax_sim --config configs/personalized_digits.py --workdir runs/fedrep_digits \
      --config.algorithm=fedrep --config.personal.head_steps=4

Ditto's lambda: --config.personal.ditto_lambda; APFL's alpha: --config.personal.apfl_alpha;
the head of the split methods: --config.personal.head=Dense_1,Dense_2 (default: the last
layer). Smoke: --config configs/personalized_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_federated


def get_config(arg=None):
    config = digits_federated("ditto", arg)
    config.data.alpha = 0.1
    config.data.test_per_client = 50
    config.finetune.steps = 5
    config.personal.ditto_lambda = 0.1
    if arg == "smoke":
        config.data.test_per_client = 10
        config.finetune.steps = 2
    return config
