"""The centralized family's entry: one model trained by optimizer steps on the pooled data, its
``optimizer`` group (the optimizer, its schedule, learning-rate scaling) and gradient
accumulation."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.config.fields import (
    check_optimizer,
    integer,
    number,
    one_of,
    optimizer_arguments,
    require,
)
from fedjax_sim.config.registry.entry import AlgorithmEntry, ResumedField
from fedjax_sim.core.engine import resolve_unroll
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.optimizers import (
    LR_SCALING,
    excludes_bias_and_norm,
    make_optimizer,
    scaled_learning_rate,
)
from fedjax_sim.core.tasks import Task


# algorithm="centralized"'s optimizer (fedjax_sim.core.optimizers.make_optimizer), its
# learning-rate schedule over the steps and the large-batch learning-rate scaling.
def _optimizer_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "sgd",  # sgd, adam (AdamW), adagrad, yogi, lars, lamb or optax_lars
            "learning_rate": 0.05,  # the peak learning rate, tuned at base_batch_size
            "momentum": 0.9,  # sgd, lars, optax_lars: heavy-ball momentum, used as given (0: none)
            # weight decay: added to the gradient for sgd, adagrad and yogi, decoupled for adam,
            # lamb and the LARS
            "weight_decay": 5e-4,
            "eps": config_dict.placeholder(float),  # not sgd: the denominator's eps (None: default)
            # the learning rate over the steps: constant, cosine, warmup_cosine, poly, warmup_poly
            # (power decay_power)
            "schedule": "cosine",
            # The schedule's horizon in steps (0: rounds). Set it to lengthen a finished
            # run with its schedule unchanged.
            "schedule_steps": 0,
            "warmup_steps": 0,  # warmup_cosine, warmup_poly: the linear warmup, in steps
            "decay_power": 2.0,  # poly, warmup_poly: the decay's power (LARS's paper: 2)
            # learning_rate is tuned at base_batch_size and scaled to batch_size by this
            # rule: "none", "linear" (Goyal et al. 2017) or "sqrt" (LAMB's paper)
            "lr_scaling": "none",
            "base_batch_size": 64,  # the batch size learning_rate is tuned at (lr_scaling)
            # no weight decay and no LARS/LAMB trust ratio on biases and norm scales; None:
            # the papers' choice, True for lars, optax_lars and lamb, False for the others
            "exclude_bias_and_norm": config_dict.placeholder(bool),
        }
    )


def _check_centralized(config) -> None:
    integer("batch_size", config.batch_size)
    integer("micro_batch_size", config.micro_batch_size, 0)
    require(
        not config.micro_batch_size or config.batch_size % config.micro_batch_size == 0,
        f"micro_batch_size={config.micro_batch_size} must divide batch_size={config.batch_size}",
    )
    opt = config.optimizer
    integer("optimizer.schedule_steps", opt.schedule_steps, 0)
    integer("optimizer.warmup_steps", opt.warmup_steps, 0)
    number("optimizer.decay_power", opt.decay_power, strict=True)
    one_of("optimizer.lr_scaling", opt.lr_scaling, LR_SCALING)
    integer("optimizer.base_batch_size", opt.base_batch_size)
    require(
        opt.exclude_bias_and_norm is None or isinstance(opt.exclude_bias_and_norm, bool),
        "optimizer.exclude_bias_and_norm must be True, False or None (the papers' choice), got "
        f"{opt.exclude_bias_and_norm!r}",
    )
    check_optimizer(config, "optimizer")


def _build_centralized(config, task: Task, num_clients, execution=None, **_) -> Algorithm:
    name, learning_rate, options = optimizer_arguments(config, "optimizer")
    opt = config.optimizer
    learning_rate = scaled_learning_rate(
        learning_rate, config.batch_size, opt.base_batch_size, opt.lr_scaling
    )
    tx = make_optimizer(name, learning_rate, **options)
    micro = config.micro_batch_size or config.batch_size
    accumulation = config.batch_size // micro
    return centralized(
        task, tx, batch_size=config.batch_size, accumulation_steps=accumulation,
        augment=config.data.augment, unroll=resolve_unroll(task.model, num_steps=accumulation),
    )  # fmt: skip


def _exclusion_meaning(flat: dict):
    """exclude_bias_and_norm's None is the papers' choice for the optimizer (it was False)."""
    value = flat.get("optimizer.exclude_bias_and_norm")
    return excludes_bias_and_norm(flat.get("optimizer.name", "")) if value is None else value


ENTRIES = (
    AlgorithmEntry(
        "centralized",
        "centralized",
        _build_centralized,
        smoke="configs/centralized_cifar100.py:smoke",
        group="optimizer",
        defaults=_optimizer_defaults,
        check=_check_centralized,
        resumed_fields={
            "optimizer.exclude_bias_and_norm": ResumedField(meaning=_exclusion_meaning)
        },
    ),
)
