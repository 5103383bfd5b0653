"""`Model`: a pure pair of functions over variables, so the engine can add a client axis.

Variables are ``{"params": params, "state": model_state}``: ``params`` are trained and
averaged, ``model_state`` holds what the forward pass itself updates (BatchNorm statistics, as
flax collections such as ``{"batch_stats": ...}``; ``{}`` for a stateless model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax

Params = Any
Variables = dict  # {"params": Params, "state": dict of flax collections}

INPUT_KINDS = ("images", "tokens", "features")


class Model(NamedTuple):
    """A model as pure functions.

    Attributes:
      init: ``init(rng) -> variables`` (``{"params": ..., "state": ...}``).
      apply: ``apply(variables, x, *, train=False, rng=None, mask=None) -> (logits,
        new_state)``; ``x`` is one batch (no client axis). With ``train``, normalization uses
        the batch's statistics over the rows where ``mask`` (``[B]`` bool) is true and returns
        the updated running statistics; otherwise ``new_state`` is the given state.
      example_shape: shape of one input example (without the batch axis).
      name: the registry name (logs, checkpoints).
      inputs: what raw examples are: ``"images"`` (uint8 NHWC, normalized and augmented by the
        task), ``"tokens"`` (integer ids) or ``"features"`` (numeric vectors).
      cpu_client_axis: the client formulation measured fastest for this model on XLA:CPU
        (`fedjax_sim.core.engine.resolve_client_axis`).
      cpu_unroll: ``unroll`` of the local-step scan on XLA:CPU.
    """

    init: Callable[[jax.Array], Variables]
    apply: Callable[..., tuple[jax.Array, dict]]
    example_shape: tuple[int, ...]
    name: str
    inputs: str = "features"
    cpu_client_axis: str = "vmap"
    cpu_unroll: int | bool = 1


def variables(params: Params, state: dict | None = None) -> Variables:
    """``{"params": params, "state": state or {}}``."""
    return {"params": params, "state": {} if state is None else state}


def stateless(
    init_params: Callable[[jax.Array], Params],
    apply_params: Callable[[Params, jax.Array], jax.Array],
    example_shape: tuple[int, ...],
    name: str,
    **fields,
) -> Model:
    """A `Model` from ``init_params(rng) -> params`` and ``apply_params(params, x) -> logits``."""

    def init(rng):
        return variables(init_params(rng))

    def apply(variables_, x, *, train=False, rng=None, mask=None):
        del train, rng, mask
        return apply_params(variables_["params"], x), variables_["state"]

    return Model(init, apply, tuple(example_shape), name, **fields)


def from_linen(
    module: nn.Module, example_x: jax.Array, name: str, *, stateful: bool = False, **fields
) -> Model:
    """Wraps a linen module into a `Model`.

    Args:
      module: a stateless module called as ``module(x)``, or with ``stateful`` one called as
        ``module(x, train=..., mask=...)`` whose non-``params`` collections (e.g.
        ``batch_stats``) are its state.
      example_x: one example batch, for initialization.
      name, fields: `Model` attributes.
    """
    if not stateful:
        return stateless(
            lambda rng: module.init(rng, example_x)["params"],
            lambda params, x: module.apply({"params": params}, x),
            example_x.shape[1:],
            name,
            **fields,
        )

    def init(rng):
        collections = dict(module.init(rng, example_x, train=False))
        return variables(collections.pop("params"), collections)

    def apply(variables_, x, *, train=False, rng=None, mask=None):
        state = variables_["state"]
        rngs = {} if rng is None else {"dropout": rng}
        inputs = {"params": variables_["params"], **state}
        if not train or not state:
            return module.apply(inputs, x, train=train, mask=mask, rngs=rngs), state
        logits, new_state = module.apply(
            inputs, x, train=True, mask=mask, rngs=rngs, mutable=list(state)
        )
        return logits, dict(new_state)

    return Model(init, apply, tuple(example_x.shape[1:]), name, **fields)
