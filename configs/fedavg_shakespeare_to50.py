r"""FedAvg to LEAF's 50% next-character accuracy on the main job's 100 Shakespeare clients, in
about an hour on 2 CPU cores.

  python experiments/time_to_accuracy.py --config configs/fedavg_shakespeare_to50.py \
      --workdir runs/to50 --target 0.5 --out experiments/results/time_to_50
  (or plainly: python -m fedjax_sim --config configs/fedavg_shakespeare_to50.py --workdir runs/to50)

The main job's setting (100 clients, 10 per round, B = 10, client SGD lr 1) with what the
150-round comparison favoured and a longer horizon: J = 16 local steps and server momentum
(FedAvgM, server SGD lr 0.3, momentum 0.9), 400 rounds (640,000 samples, two passes over the
323,064 training samples), evaluated every 20 rounds. On 2 cores the LSTM processes about 185
samples a second whatever B or J, so the sample budget, not the rounds, sets the wall time.
Smoke (seconds): --config configs/fedavg_shakespeare_to50.py:smoke
"""

from fedjax_sim.config_defaults import variant
from fedjax_sim.config_presets import shakespeare_main_job


def get_config(arg=None):
    config = shakespeare_main_job("fedavg", arg)
    config.server.learning_rate = 0.3
    config.server.momentum = 0.9
    if variant(arg) != "smoke":
        config.client.local_steps = 16
        config.rounds = 400
        config.eval_every = 20
        config.checkpoint_every = 20
    return config
