"""A small MLP on flat feature vectors (the benchmark's many-small-clients workload).

Digits-sized by default: 64 features -> 128 ReLU -> 10 classes (9,610 parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fedjax_sim.models.model import Model, from_linen


class MLP(nn.Module):
    hidden: Sequence[int] = (128,)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x_BxF):
        x = x_BxF
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


def make_mlp(
    num_classes: int = 10, features: int = 64, hidden: int | Sequence[int] = (128,)
) -> Model:
    """The MLP as a pure `Model` taking float32 ``(batch, features)`` inputs; ``hidden`` is the
    width of each hidden layer (an int: one layer)."""
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    example_x = jnp.zeros((1, features), jnp.float32)
    return from_linen(MLP(hidden, num_classes), example_x, name="mlp", inputs="features")
