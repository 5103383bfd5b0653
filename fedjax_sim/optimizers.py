"""Every optimizer (client, server, centralized) as an optax transformation built by name."""

from __future__ import annotations

import optax

OPTIMIZERS = ("sgd", "adam", "adagrad", "yogi", "lars", "lamb")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


def make_schedule(
    learning_rate: float,
    schedule: str = "constant",
    *,
    total_steps: int = 1,
    warmup_steps: int = 0,
    field: str = "optimizer",
) -> optax.Schedule | float:
    """A learning-rate schedule by name (``field`` names the config entry in errors)."""
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, max(total_steps, 1))
    if schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, warmup_steps, max(total_steps, warmup_steps + 1)
        )
    raise ValueError(f"{field}.schedule must be one of {list(SCHEDULES)}, got {schedule!r}")


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    schedule: str = "constant",
    total_steps: int = 1,
    warmup_steps: int = 0,
    field: str = "optimizer",
) -> optax.GradientTransformation:
    """Builds an optax optimizer.

    Args:
      name: one of `OPTIMIZERS`.
      learning_rate: peak learning rate.
      momentum: heavy-ball momentum for ``sgd`` (0 disables it) and ``lars``.
      weight_decay: L2 weight decay, added to the gradient (SGD-style) for sgd/adagrad, decoupled
        for adam (AdamW), lars and lamb.
      schedule, total_steps, warmup_steps: see `make_schedule`.
      field: the config entry named in error messages, e.g. ``"client"``.

    Example:
      >>> tx = make_optimizer("sgd", 0.1, momentum=0.9, weight_decay=5e-4)
    """
    if learning_rate <= 0:
        raise ValueError(f"{field}.learning_rate must be > 0, got {learning_rate}")
    if not 0 <= momentum < 1:
        raise ValueError(f"{field}.momentum must be in [0, 1), got {momentum}")
    lr = make_schedule(
        learning_rate, schedule, total_steps=total_steps, warmup_steps=warmup_steps, field=field
    )
    if name == "sgd":
        tx = optax.sgd(lr, momentum=momentum or None, nesterov=nesterov)
    elif name == "adagrad":
        tx = optax.adagrad(lr)
    elif name == "adam":
        return optax.adamw(lr, weight_decay=weight_decay)
    elif name == "yogi":
        tx = optax.yogi(lr)
    elif name == "lars":
        return optax.lars(lr, weight_decay=weight_decay, momentum=momentum or 0.9)
    elif name == "lamb":
        return optax.lamb(lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"{field}.optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    if weight_decay:
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    return tx
