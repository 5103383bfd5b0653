"""`Model`: a pure pair of functions, so the engine can add a client axis to the parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax

Params = Any


class Model(NamedTuple):
    """A model as pure functions.

    Attributes:
      init: ``init(rng) -> params``.
      apply: ``apply(params, x) -> logits``; ``x`` is one (unbatched-over-clients) batch.
      example_shape: shape of one input example (without the batch axis).
      name: for logs and checkpoints.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    example_shape: tuple[int, ...]
    name: str


def from_linen(module: nn.Module, example_x: jax.Array, name: str) -> Model:
    """Wraps a stateless linen module (no BatchNorm statistics) into a `Model`."""

    def init(rng):
        return module.init(rng, example_x)["params"]

    def apply(params, x):
        return module.apply({"params": params}, x)

    return Model(init=init, apply=apply, example_shape=tuple(example_x.shape[1:]), name=name)
