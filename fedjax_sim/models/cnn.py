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

CONV_IMPLEMENTATIONS = ("auto", "xla", "loop_friendly", "winograd")


class CourseCNN(nn.Module):
    num_classes: int = 100
    conv: str = "xla"

    @nn.compact
    def __call__(self, x_BxHxWxC):
        x = x_BxHxWxC
        for i in range(2):
            if self.conv in ("loop_friendly", "winograd"):  # nn.Conv's parameters and names
                # Winograd for the second layer only: the first one's 3 input channels would make
                # its per-position products 3 long.
                algorithm = "winograd" if self.conv == "winograd" and i == 1 else "direct"
                x = LoopFriendlyConv(64, (5, 5), name=f"Conv_{i}", algorithm=algorithm)(x)
            else:
                x = nn.Conv(64, (5, 5), padding="VALID")(x)
            x = max_pool_2x2(nn.relu(x))  # = nn.max_pool 2x2/2, with a fast backward
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(384)(x))
        x = nn.relu(nn.Dense(192)(x))
        return nn.Dense(self.num_classes)(x)


def resolve_conv(conv: str, backend: str | None = None) -> str:
    """``"auto"`` -> ``"winograd"`` on CPU (XLA's own backward convolutions are slow in loop
    bodies, and Winograd's second layer is the fastest measured: docs/performance.md), ``"xla"``
    elsewhere; other values pass through (checked)."""
    if conv not in CONV_IMPLEMENTATIONS:
        raise ValueError(f"model.conv must be one of {list(CONV_IMPLEMENTATIONS)}, got {conv!r}")
    if conv != "auto":
        return conv
    return "winograd" if (backend or jax.default_backend()) == "cpu" else "xla"


def make_cnn(num_classes: int = 100, image_shape=(32, 32, 3), conv: str = "auto") -> Model:
    """The course CNN as a pure `Model` taking float32 NHWC images.

    Args:
      num_classes: output classes.
      image_shape: HWC of one input.
      conv: ``"xla"`` (`flax.linen.Conv`), ``"loop_friendly"`` (`LoopFriendlyConv`: as fast
        inside loop bodies as outside on XLA:CPU), ``"winograd"`` (the same, with the second
        layer by `winograd_conv_valid`: equal up to float rounding) or ``"auto"``
        (`resolve_conv`); all have the same parameters and outputs.
    """
    conv = resolve_conv(conv)
    example_x = jnp.zeros((1, *image_shape), jnp.float32)
    # On XLA:CPU (experiments/benchmarks/bench_round.py): vmap's grouped convolutions run at
    # half speed, so clients run one after another, in a `lax.map` with the loop-friendly
    # convolution, or unrolled into the program (with fully unrolled local steps) with XLA's own.
    loop_friendly = conv in ("loop_friendly", "winograd")
    return from_linen(
        CourseCNN(num_classes, conv),
        example_x,
        name="cnn",
        inputs="images",
        cpu_client_axis="map" if loop_friendly else "sequential",
        cpu_unroll=True,
    )
