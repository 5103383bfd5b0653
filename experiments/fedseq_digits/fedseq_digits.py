r"""FedSeq against FedAvg: rounds to a target test accuracy under strong label skew, the
comparison of Zaccone et al. 2022, on the digits.

  python experiments/fedseq_digits/fedseq_digits.py --workdir runs/fedseq \
      --out experiments/fedseq_digits/fedseq_digits [--smoke]

configs/fedseq_digits.py's setting (K = 50 clients, Dirichlet(0.1), J = 8 SGD steps of
B = 16 per client, 60 rounds) as one sweep (fedjax_sim.experiment.sweep, resumable per cell): FedAvg
with 10 clients per round against FedSeq with 2 superclients of 5 clients per round (the same
10 clients' local work per round, done in sequence inside a superclient), the superclients
grouped at random, by greedy KL and by k-means on the clients' label histograms, and by greedy
KL on the paper's confidence estimate; each at client learning rates 0.05 (FedAvg's) and 0.02,
seeds 0 and 1. Writes OUT.md (rounds to the target, last accuracy) and
OUT.png. The confidence cell sets 100 test examples aside as the server's exemplars, so it is
evaluated on the other 259.
"""

from __future__ import annotations

import os
import sys

from fedjax_sim.experiment.xla_flags import apply_xla_flags

apply_xla_flags("auto", "cnn")  # before JAX starts: the CNN's measured best on CPU

# experiments/ is not installed: the repository root on the path makes experiments.tools importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from experiments.tools.report_sweep import sweep_experiment  # noqa: E402
from fedjax_sim.config import files as config_files  # noqa: E402
from fedjax_sim.experiment.script import run_script  # noqa: E402

TARGET = 0.8
# algorithm : clients (or superclients) per round : grouper : estimate
CELLS = ("fedavg:10:greedy_kl:labels,fedseq:2:random:labels,fedseq:2:greedy_kl:labels,"
         "fedseq:2:kmeans:labels,fedseq:2:greedy_kl:confidence")  # fmt: skip


def sweep_config(smoke: bool):
    config = config_files.load_config("configs/fedseq_digits.py" + (":smoke" if smoke else ""))
    config.eval_every = config.checkpoint_every = 1 if smoke else 5
    cells = "fedavg:3:random:labels,fedseq:1:greedy_kl:confidence" if smoke else CELLS
    grid = "" if smoke else "seed=0,1;client.learning_rate=0.05,0.02;"
    config.sweep = f"{grid}algorithm+clients_per_round+fedseq.grouper+fedseq.estimate={cells}"
    return config


if __name__ == "__main__":
    run_script(sweep_experiment, __doc__.splitlines()[0], sweep_config, TARGET)
