r"""FedAvg with a small ViT on scikit-learn's digits (real data, no download): 16x16 images in
4x4 patches (16 tokens and a class token), 4 pre-LayerNorm blocks of width 64 with 4 heads,
client SGD at 0.01 (at the CNN's 0.05 it stalled at 12% test accuracy over 10 rounds);
otherwise configs/fedavg_digits.py (K = 20 clients, Dirichlet(0.5), 10 per round, J = 8 SGD
steps of B = 16, 60 rounds). The ViT of the architecture study
(experiments/architectures_digits/: CNN vs ResNet-20 with BatchNorm, GroupNorm and
LayerNorm vs ViT as the label skew grows).

  python -m fedjax_sim --config configs/vit_digits.py --workdir runs/vit_digits

Its shape: --config.model.patch=2 --config.model.depth=6 --config.model.width=192
--config.model.heads=3 --config.model.mlp_ratio=4. Smoke: --config configs/vit_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_federated


def get_config(arg=None):
    config = digits_federated("fedavg", arg)
    config.model.name = "vit"
    config.model.width = 64
    config.client.learning_rate = 0.01
    return config
