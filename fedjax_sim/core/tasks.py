"""A `Task` ties a model to how its raw examples become inputs, and defines the masked loss.

Raw examples stay compact on the device (uint8 images, uint8 character ids); `Task.prepare`
turns a gathered batch into model inputs inside the compiled step, with data augmentation when an
``rng`` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_sim.data import cifar100
from fedjax_sim.models import registry
from fedjax_sim.models.model import Model


class Task(NamedTuple):
    """A model and its input pipeline.

    Attributes:
      model: the pure `Model`.
      prepare: ``prepare(x_raw, rng_or_None) -> x``; ``rng`` enables training augmentation.
      num_classes: size of the output layer.
    """

    model: Model
    prepare: Callable[[jax.Array, jax.Array | None], jax.Array]
    num_classes: int


# One client's local loss: ``objective(params, model_state, batch, rng, context) -> (loss,
# (metrics, new_model_state))``. ``batch`` is ``{"x", "y", "mask"}``; ``context`` carries the
# client's per-round tensors (anchor parameters, control variates); ``metrics`` are the sums of
# `masked_loss_and_metrics`, of the data loss alone.
Objective = Callable[..., tuple[jax.Array, tuple[dict, dict]]]


def masked_loss_and_metrics(task: Task, variables, batch, rng=None, *, train: bool = True):
    """Mean cross-entropy over the unmasked examples of ``batch`` and summed metrics.

    Args:
      task: the task.
      variables: ``{"params", "state"}`` of ``task.model``.
      batch: ``{"x", "y", "mask"}``.
      rng: enables training augmentation (and is the model's dropout key).
      train: the model's training mode (batch statistics over the unmasked rows).

    Returns:
      ``(loss, (metrics, new_model_state))`` where ``metrics`` has ``loss_sum``, ``correct`` and
      ``count`` (sums over unmasked examples), so that metrics of many batches and clients add
      up exactly.
    """
    x = task.prepare(batch["x"], rng)
    model_rng = None if rng is None else jax.random.fold_in(rng, 1)
    logits, new_state = task.model.apply(
        variables, x, train=train, rng=model_rng, mask=batch["mask"]
    )
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"].astype(jnp.int32))
    weights = batch["mask"].astype(losses.dtype)
    count = weights.sum()
    loss = (losses * weights).sum() / jnp.maximum(count, 1.0)
    correct = ((jnp.argmax(logits, -1) == batch["y"]) * weights).sum()
    metrics = {"loss_sum": (losses * weights).sum(), "correct": correct, "count": count}
    return loss, (metrics, new_state)


def cross_entropy(task: Task, *, augment: bool = True) -> Objective:
    """The plain objective: masked cross-entropy; ``context`` is ignored."""

    def objective(params, model_state, batch, rng, context):
        del context
        variables = {"params": params, "state": model_state}
        return masked_loss_and_metrics(task, variables, batch, rng if augment else None)

    return objective


def _prepare_cifar(x_uint8, rng):
    x = cifar100.normalize_images(x_uint8)
    return x if rng is None else cifar100.augment_batch(rng, x)


def _prepare_tokens(x, rng):
    del rng
    return x.astype(jnp.int32)


def _prepare_features(x, rng):
    del rng
    return x.astype(jnp.float32)


def make_task(model: str | Model, num_classes: int, *, augment: bool = True, **fields) -> Task:
    """Builds the `Task` of ``model``: a name of `fedjax_sim.models.registry` (built with
    ``fields``, e.g. ``hidden=16``) or a built `Model`.

    The input pipeline follows ``model.inputs``: ``"images"`` are uint8 NHWC (normalized, and
    augmented when ``augment`` and a training rng is given), ``"tokens"`` character ids,
    ``"features"`` vectors of any numeric dtype.
    """
    if isinstance(model, str):
        model = registry.build(model, num_classes, fields)
    if model.inputs == "images":
        prepare = _prepare_cifar if augment else (lambda x, rng: _prepare_cifar(x, None))
    elif model.inputs == "tokens":
        prepare = _prepare_tokens
    else:
        prepare = _prepare_features
    return Task(model, prepare, num_classes)
