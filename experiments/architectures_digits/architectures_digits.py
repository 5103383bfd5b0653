r"""FL-tailored architectures: the course CNN, ResNet-20 with BatchNorm, GroupNorm and
LayerNorm, and a small ViT as the label skew grows, the study of Qu et al. 2022 and Pieri et
al. 2023, on the digits.

  python experiments/architectures_digits/architectures_digits.py --workdir runs/architectures \
      --out experiments/architectures_digits/architectures_digits [--smoke]

FedAvg in configs/fedavg_digits.py's setting (K = 20 clients, 10 per round, J = 8 SGD steps of
B = 16, 60 rounds) as one sweep (fedjax_sim.experiment.sweep, resumable per cell): model (CNN and
the ResNets at client learning rate 0.05; configs/vit_digits.py's ViT, width 64, at 0.01) x
Dirichlet alpha (100: near IID; 1; 0.1: most clients hold one or two digits). BatchNorm's
statistics are averaged with the parameters (model_state=average, FedAvg's own). Writes OUT.md
(model x alpha, last test accuracy) and OUT.png.
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

# model : norm (ResNets) : client learning rate
MODELS = ("cnn:batch:0.05,resnet20:batch:0.05,resnet20:group:0.05,resnet20:layer:0.05,"
          "vit:batch:0.01")  # fmt: skip
ALPHAS = "100,1,0.1"


def sweep_config(smoke: bool):
    config = config_files.load_config("configs/fedavg_digits.py" + (":smoke" if smoke else ""))
    config.model.width = 64  # the ViT's (the other models have no width)
    config.eval_every = config.checkpoint_every = 1 if smoke else 10
    models = "cnn:batch:0.05,vit:batch:0.01" if smoke else MODELS
    alphas = "100,0.1" if smoke else ALPHAS
    config.sweep = f"model.name+model.norm+client.learning_rate={models};data.alpha={alphas}"
    return config


if __name__ == "__main__":
    run_script(sweep_experiment, __doc__.splitlines()[0], sweep_config)
