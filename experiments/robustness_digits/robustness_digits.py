r"""Each robust aggregator's accuracy as the share of bad clients grows, on the digits.

  python experiments/robustness_digits/robustness_digits.py --workdir runs/robustness \
      --out experiments/robustness_digits/robustness_digits [--smoke]

configs/fedavg_digits.py (K = 20 clients, Dirichlet(0.5) label skew, 10 per round, J = 8
SGD steps of B = 16, 40 rounds) as one sweep (fedjax_sim.experiment.sweep, resumable per cell):
aggregator (mean, median, trimmed mean, norm clipping, Krum, FedGW-style noise-aware) x attack
(label flipping, sign-flipped updates, broken sensors) x bad fraction (0, 0.2, 0.4 of the
clients, drawn from the data seed). The aggregators that take the number of bad clients are
told it: Krum's f and the trimmed mean's trim fraction follow the bad fraction (f = 0, 2, 3 of
the 10 per round, 3 being the most Krum's n > 2f + 2 allows for the 4 bad clients of 40%;
trim 0.1, 0.2, 0.4), an oracle setting. Norm clipping's bound is 1.0.
Writes OUT.md (every cell, and aggregator x bad fraction per attack) and OUT.png.
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

AGGREGATORS = "mean,median,trimmed_mean,norm_clipping,krum,noise_aware"
ATTACKS = "label_flip,sign_flip,broken_sensor"
FRACTIONS = "0:0:0.1,0.2:2:0.2,0.4:3:0.4"  # bad_fraction : Krum's f : trim fraction


def sweep_config(smoke: bool):
    config = config_files.load_config("configs/fedavg_digits.py" + (":smoke" if smoke else ""))
    config.rounds = 2 if smoke else 40
    config.eval_every = config.checkpoint_every = 1 if smoke else 10
    fractions = "0:0:0.1,0.5:1:0.3" if smoke else FRACTIONS
    aggregators = "mean,noise_aware" if smoke else AGGREGATORS
    attacks = "label_flip,sign_flip" if smoke else ATTACKS
    config.sweep = (
        f"robust.aggregator={aggregators};robust.attack={attacks};"
        f"robust.bad_fraction+robust.byzantine+robust.trim_fraction={fractions}"
    )
    return config


if __name__ == "__main__":
    run_script(sweep_experiment, __doc__.splitlines()[0], sweep_config)
