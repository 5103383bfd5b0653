"""The course CNN for CIFAR-100 ("[a]" in Hsu et al. 2020, after McMahan et al. 2017).

conv 5x5x64 VALID, ReLU, max-pool 2x2; conv 5x5x64 VALID, ReLU, max-pool 2x2; dense 384, ReLU;
dense 192, ReLU; dense ``num_classes``. Spatial sizes 32 -> 28 -> 14 -> 10 -> 5, so the first
dense layer sees 5*5*64 = 1600 features.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_sim.models.conv import LoopFriendlyConv
from fedjax_sim.models.model import Model, from_linen
from fedjax_sim.models.pooling import max_pool_2x2

CONV_IMPLEMENTATIONS = ("auto", "xla", "loop_friendly")


class CourseCNN(nn.Module):
    num_classes: int = 100
    conv: str = "xla"

    @nn.compact
    def __call__(self, x_BxHxWxC):
        x = x_BxHxWxC
        for i in range(2):
            if self.conv == "loop_friendly":  # nn.Conv's parameters, under its names
                x = LoopFriendlyConv(64, (5, 5), name=f"Conv_{i}")(x)
            else:
                x = nn.Conv(64, (5, 5), padding="VALID")(x)
            x = max_pool_2x2(nn.relu(x))  # = nn.max_pool 2x2/2, with a fast backward
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(384)(x))
        x = nn.relu(nn.Dense(192)(x))
        return nn.Dense(self.num_classes)(x)


def resolve_conv(conv: str, backend: str | None = None) -> str:
    """``"auto"`` -> ``"loop_friendly"`` on CPU (where XLA's own backward convolutions are slow
    in loop bodies), ``"xla"`` elsewhere; other values pass through (checked)."""
    if conv not in CONV_IMPLEMENTATIONS:
        raise ValueError(f"model.conv must be one of {list(CONV_IMPLEMENTATIONS)}, got {conv!r}")
    if conv != "auto":
        return conv
    return "loop_friendly" if (backend or jax.default_backend()) == "cpu" else "xla"


def make_cnn(num_classes: int = 100, image_shape=(32, 32, 3), conv: str = "auto") -> Model:
    """The course CNN as a pure `Model` taking float32 NHWC images.

    Args:
      num_classes: output classes.
      image_shape: HWC of one input.
      conv: ``"xla"`` (`flax.linen.Conv`), ``"loop_friendly"`` (`LoopFriendlyConv`: as fast
        inside loop bodies as outside on XLA:CPU) or ``"auto"`` (`resolve_conv`); all have the
        same parameters and outputs.
    """
    conv = resolve_conv(conv)
    example_x = jnp.zeros((1, *image_shape), jnp.float32)
    # On XLA:CPU (experiments/benchmarks/bench_round.py): vmap's grouped convolutions run at
    # half speed, so clients run one after another, in a `lax.map` with the loop-friendly
    # convolution, or unrolled into the program (with fully unrolled local steps) with XLA's own.
    loop_friendly = conv == "loop_friendly"
    return from_linen(
        CourseCNN(num_classes, conv),
        example_x,
        name="cnn",
        inputs="images",
        cpu_client_axis="map" if loop_friendly else "sequential",
        cpu_unroll=True,
    )
