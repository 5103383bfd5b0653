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
from fedjax_sim.models.cnn import make_cnn
from fedjax_sim.models.lstm import make_lstm
from fedjax_sim.models.mlp import make_mlp
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


def masked_loss_and_metrics(task: Task, params, batch, rng=None):
    """Mean cross-entropy over the unmasked examples of ``batch`` and summed metrics.

    Returns:
      ``(loss, metrics)`` where ``metrics`` has ``loss_sum``, ``correct`` and ``count`` (sums over
      unmasked examples), so that metrics of many batches and clients add up exactly.
    """
    x = task.prepare(batch["x"], rng)
    logits = task.model.apply(params, x)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"].astype(jnp.int32))
    weights = batch["mask"].astype(losses.dtype)
    count = weights.sum()
    loss = (losses * weights).sum() / jnp.maximum(count, 1.0)
    correct = ((jnp.argmax(logits, -1) == batch["y"]) * weights).sum()
    return loss, {"loss_sum": (losses * weights).sum(), "correct": correct, "count": count}


def _prepare_cifar(x_uint8, rng):
    x = cifar100.normalize_images(x_uint8)
    return x if rng is None else cifar100.augment_batch(rng, x)


def _prepare_tokens(x, rng):
    del rng
    return x.astype(jnp.int32)


def _prepare_features(x, rng):
    del rng
    return x.astype(jnp.float32)


MODEL_NAMES = ("cnn", "lstm", "mlp")


def make_task(model_name: str, num_classes: int, *, augment: bool = True, **model_kwargs) -> Task:
    """Builds the `Task` for ``model_name`` in `MODEL_NAMES`.

    ``"cnn"`` takes uint8 NHWC images (normalized, and augmented when ``augment``), ``"lstm"``
    character ids, ``"mlp"`` feature vectors of any numeric dtype (``features=`` sets the width).
    """
    if model_name == "cnn":
        prepare = _prepare_cifar if augment else (lambda x, rng: _prepare_cifar(x, None))
        return Task(make_cnn(num_classes, **model_kwargs), prepare, num_classes)
    if model_name == "lstm":
        return Task(make_lstm(vocab_size=num_classes, **model_kwargs), _prepare_tokens, num_classes)
    if model_name == "mlp":
        return Task(make_mlp(num_classes, **model_kwargs), _prepare_features, num_classes)
    raise ValueError(f"model.name must be one of {list(MODEL_NAMES)}, got {model_name!r}")
