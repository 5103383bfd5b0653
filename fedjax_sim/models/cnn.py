"""The course CNN for CIFAR-100 ("[a]" in Hsu et al. 2020, after McMahan et al. 2017).

conv 5x5x64 VALID, ReLU, max-pool 2x2; conv 5x5x64 VALID, ReLU, max-pool 2x2; dense 384, ReLU;
dense 192, ReLU; dense ``num_classes``. Spatial sizes 32 -> 28 -> 14 -> 10 -> 5, so the first
dense layer sees 5*5*64 = 1600 features.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fedjax_sim.models.model import Model, from_linen
from fedjax_sim.models.pooling import max_pool_2x2


class CourseCNN(nn.Module):
    num_classes: int = 100

    @nn.compact
    def __call__(self, x_BxHxWxC):
        x = x_BxHxWxC
        for _ in range(2):
            x = nn.Conv(64, (5, 5), padding="VALID")(x)
            x = max_pool_2x2(nn.relu(x))  # = nn.max_pool 2x2/2, with a fast backward
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(384)(x))
        x = nn.relu(nn.Dense(192)(x))
        return nn.Dense(self.num_classes)(x)


def make_cnn(num_classes: int = 100, image_shape=(32, 32, 3)) -> Model:
    """The course CNN as a pure `Model` taking float32 NHWC images."""
    example_x = jnp.zeros((1, *image_shape), jnp.float32)
    return from_linen(CourseCNN(num_classes), example_x, name="cnn")
