"""The client, centralized and outer optimizers as optax transformations built by name (the
server's FedOpt family is `fedjax_sim.core.fedopt`), with the learning-rate schedules and the
large-batch scaling rules."""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adam", "adagrad", "yogi", "lars", "lamb", "optax_lars")
# Heavy-ball momentum; layer-wise trust ratios, whose papers exclude biases and norm scales.
_MOMENTUM_OPTIMIZERS = ("sgd", "lars", "optax_lars")
_LAYERWISE_OPTIMIZERS = ("lars", "optax_lars", "lamb")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "poly", "warmup_poly")
LR_SCALING = ("none", "linear", "sqrt")


def scaled_learning_rate(
    base_learning_rate: float, batch_size: int, base_batch_size: int, rule: str = "none"
) -> float:
    """The learning rate for ``batch_size`` from one tuned at ``base_batch_size``.

    ``"linear"``: ``lr * B / B0`` (Goyal et al. 2017); ``"sqrt"``: ``lr * sqrt(B / B0)``
    (Krizhevsky 2014; Hoffer et al. 2017; the rule LAMB's paper uses); ``"none"``: unchanged.
    """
    if rule not in LR_SCALING:
        raise ValueError(f"optimizer.lr_scaling must be one of {list(LR_SCALING)}, got {rule!r}")
    if rule != "none" and base_batch_size < 1:
        raise ValueError(f"optimizer.base_batch_size must be >= 1, got {base_batch_size}")
    ratio = batch_size / base_batch_size if rule != "none" else 1.0
    return base_learning_rate * (ratio if rule == "linear" else math.sqrt(ratio))


def decay_mask(params):
    """True for the weights that weight decay and trust ratios apply to: every parameter with
    more than one dimension, i.e. not biases and normalization scales (as LARS and LAMB's
    papers, and Goyal et al. 2017, exclude them)."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def excludes_bias_and_norm(name: str, exclude: bool | None = None) -> bool:
    """Whether optimizer ``name`` spares biases and normalization scales (`decay_mask`) from
    weight decay and trust ratios: ``exclude`` when given, else the papers' choice, True for
    lars, optax_lars and lamb (You et al. 2017 and 2020) and False for the others."""
    return name in _LAYERWISE_OPTIMIZERS if exclude is None else bool(exclude)


def scale_by_you_trust_ratio(
    weight_decay: float = 0.0, trust_coefficient: float = 0.001, eps: float = 0.0
) -> optax.GradientTransformation:
    """LARS's local learning rate (You et al. 2017, eq. 6) times the decayed gradient.

    Each leaf (a layer's tensor) ``g`` of parameter ``w`` becomes ``lambda (g + beta w)`` with

        lambda = eta ||w|| / (||g|| + beta ||w|| + eps),

    ``eta`` the trust coefficient and ``beta`` the weight decay: the norm of the raw gradient
    and the decay's norm are added, where optax's `optax.scale_by_trust_ratio` divides by the
    norm of their sum. Where ``w = 0`` (and where the denominator is 0) lambda is 1, as in the
    LARS implementations of TensorFlow's reference models and NVIDIA's apex: the equation's 0
    would never move a zero-initialised tensor. Chain it before the learning rate and the
    momentum, as Algorithm 1: ``v <- m v + gamma lambda (g + beta w); w <- w - v``.

    Args:
      weight_decay: beta, the L2 weight decay added to the gradient.
      trust_coefficient: eta (the paper's 0.001, optax's default too).
      eps: added to the denominator.

    Returns:
      An `optax.GradientTransformation` whose update needs ``params``.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_you_trust_ratio needs the params")

        def scale(g, w):
            w_norm, g_norm = jnp.linalg.norm(w.ravel()), jnp.linalg.norm(g.ravel())
            denominator = g_norm + weight_decay * w_norm + eps
            safe = jnp.where(denominator > 0, denominator, 1.0)
            ratio = jnp.where((w_norm > 0) & (denominator > 0),
                              trust_coefficient * w_norm / safe, 1.0)  # fmt: skip
            return (ratio * (g + weight_decay * w)).astype(g.dtype)

        return jax.tree.map(scale, updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def lars(
    learning_rate, *, weight_decay: float = 0.0, trust_coefficient: float = 0.001,
    eps: float = 0.0, momentum: float = 0.9, nesterov: bool = False, mask=None,
) -> optax.GradientTransformation:  # fmt: skip
    """LARS as You et al. 2017 write it (Algorithm 1 with eq. 6's trust coefficient):
    `scale_by_you_trust_ratio`, the learning rate, then heavy-ball momentum (Nesterov's when
    asked, optax's `optax.trace`). ``mask`` (a pytree of bools or a function of the params,
    e.g. `decay_mask`): the leaves it leaves out get neither decay nor trust ratio, plain
    momentum SGD."""
    trust = scale_by_you_trust_ratio(weight_decay, trust_coefficient, eps)
    return optax.chain(
        trust if mask is None else optax.masked(trust, mask),
        optax.scale_by_learning_rate(learning_rate),
        optax.trace(decay=momentum, nesterov=nesterov),
    )


def make_schedule(
    learning_rate: float,
    schedule: str = "constant",
    *,
    total_steps: int = 1,
    warmup_steps: int = 0,
    power: float = 2.0,
    field: str = "optimizer",
) -> optax.Schedule | float:
    """A learning-rate schedule by name (``field`` names the config entry in errors).

    ``total_steps`` is the horizon of ``cosine`` (decay to 0 at that step, 0 after it) and of
    ``warmup_cosine`` (linear warmup from 0 over ``warmup_steps``, then cosine decay to 0 at
    ``total_steps``), of ``poly`` (``lr * (1 - t / T) ** power``, You et al. 2017's LARS
    schedule with power 2) and ``warmup_poly`` (linear warmup, then that decay over the
    remaining steps); ``constant`` ignores both.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"{field}.schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    if schedule == "constant":
        return learning_rate
    if total_steps < 1:
        raise ValueError(f"{field}: a {schedule} schedule needs a horizon >= 1, got {total_steps}")
    if schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, total_steps)
    if schedule == "poly":
        return optax.polynomial_schedule(learning_rate, 0.0, power, total_steps)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"{field}.warmup_steps must be in [0, {total_steps}) (the schedule's horizon), "
            f"got {warmup_steps}"
        )
    if schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, total_steps)
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    decay = optax.polynomial_schedule(learning_rate, 0.0, power, total_steps - warmup_steps)
    return optax.join_schedules([warmup, decay], [warmup_steps])


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    momentum: float | None = None,
    weight_decay: float = 0.0,
    eps: float | None = None,
    nesterov: bool = False,
    b1: float | None = None,
    b2: float | None = None,
    initial_accumulator: float | None = None,
    schedule: str = "constant",
    total_steps: int = 1,
    warmup_steps: int = 0,
    power: float = 2.0,
    exclude_bias_and_norm: bool | None = None,
    field: str = "optimizer",
) -> optax.GradientTransformation:
    """Builds an optax optimizer.

    Args:
      name: one of `OPTIMIZERS`.
      learning_rate: peak learning rate.
      momentum: heavy-ball momentum of ``sgd``, ``lars`` and ``optax_lars``, used as given
        (0: none); None is the optimizer's own default (none for sgd, 0.9 for the LARS).
        Other optimizers refuse it.
      weight_decay: L2 weight decay, added to the gradient (SGD-style) for sgd/adagrad/yogi,
        decoupled for adam (AdamW), lamb and the LARS (``lars``: You et al. 2017's local
        learning rate with its ``||g|| + beta ||w||`` denominator, `lars`; ``optax_lars``:
        `optax.lars`, whose denominator is ``||g + beta w||``).
      eps: the denominator's epsilon of adam, adagrad, yogi, lamb and the LARS (its trust
        ratio's); None is optax's default for that optimizer (e.g. 1e-8 for adam; 0 for the
        LARS). (The server's FedAdam/FedYogi/FedAdagrad, whose tau it is there, are
        `fedjax_sim.core.fedopt.server_optimizer`'s.)
      nesterov: Nesterov momentum for sgd and the LARS (needs momentum > 0).
      b1, b2: the first and second moment decays of adam, yogi and lamb; None is optax's
        default (optax's adagrad has no moment decays).
      initial_accumulator: the second-moment accumulator's start (v_{-1}) of adagrad and yogi;
        None is optax's default (0.1 and 1e-6).
      schedule, total_steps, warmup_steps, power: see `make_schedule`.
      exclude_bias_and_norm: no weight decay (every optimizer) and no trust ratio (the LARS,
        lamb) on one-dimensional parameters (`decay_mask`), as the LARS and LAMB papers; None:
        `excludes_bias_and_norm`, the papers' choice (True for the LARS and lamb only).
      field: the config entry named in error messages, e.g. ``"client"``.

    Raises:
      ValueError: a value outside what its field allows; the message names ``field``.

    Example:
      >>> tx = make_optimizer("sgd", 0.1, momentum=0.9, weight_decay=5e-4)
    """
    _check_optimizer_fields(
        name, learning_rate, momentum=momentum, weight_decay=weight_decay, eps=eps,
        nesterov=nesterov, b1=b1, b2=b2, initial_accumulator=initial_accumulator, field=field,
    )  # fmt: skip
    lr = make_schedule(
        learning_rate, schedule, total_steps=total_steps, warmup_steps=warmup_steps,
        power=power, field=field,
    )  # fmt: skip
    mask = decay_mask if excludes_bias_and_norm(name, exclude_bias_and_norm) else None
    tx = _optimizer_by_name(
        name, lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, mask=mask,
        eps=eps, b1=b1, b2=b2, initial_accumulator=initial_accumulator,
    )  # fmt: skip
    if weight_decay and name in ("sgd", "adagrad", "yogi"):  # SGD-style: added to the gradient
        tx = optax.chain(optax.add_decayed_weights(weight_decay, mask=mask), tx)
    return tx


def _is_number(value) -> bool:
    """Whether ``value`` is a Python or NumPy number, which can be range-checked here; a traced
    array (a vectorized sweep's hyper-parameter) cannot, and its grid was checked as numbers
    by the config before tracing."""
    return isinstance(value, numbers.Real)


def _check_optimizer_fields(
    name, learning_rate, *, momentum, weight_decay, eps, nesterov, b1, b2, initial_accumulator,
    field,
) -> None:  # fmt: skip
    """Raises `ValueError` naming ``field`` for the first of `make_optimizer`'s arguments
    outside what it allows."""
    if name not in OPTIMIZERS:
        raise ValueError(f"{field}.optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    if _is_number(learning_rate) and not learning_rate > 0:
        raise ValueError(f"{field}.learning_rate must be > 0, got {learning_rate}")
    if momentum is not None and not 0 <= momentum < 1:
        raise ValueError(f"{field}.momentum must be in [0, 1), got {momentum}")
    if momentum and name not in _MOMENTUM_OPTIMIZERS:
        raise ValueError(
            f"{field}.momentum applies to sgd, lars, optax_lars only, not {name!r}; set it to 0"
        )
    if nesterov and not (momentum or (name in ("lars", "optax_lars") and momentum is None)):
        raise ValueError(f"{field}.nesterov needs {field}.momentum > 0")
    if not weight_decay >= 0:
        raise ValueError(f"{field}.weight_decay must be >= 0, got {weight_decay}")
    if eps is not None and not eps > 0:
        raise ValueError(f"{field}.eps must be > 0 (or None: the optimizer's default), got {eps}")
    if eps is not None and name == "sgd":
        raise ValueError(f"{field}.eps does not apply to sgd; leave it None")
    for moment, value in (("b1", b1), ("b2", b2)):
        if value is not None and not 0 <= value < 1:
            raise ValueError(f"{field}.{moment} must be in [0, 1), got {value}")
    if initial_accumulator is not None and not initial_accumulator >= 0:
        raise ValueError(f"{field}.initial_accumulator must be >= 0, got {initial_accumulator}")


def _optimizer_by_name(
    name, lr, *, momentum, nesterov, weight_decay, mask, eps, b1, b2, initial_accumulator
) -> optax.GradientTransformation:
    """`make_optimizer`'s optimizer ``name`` at learning rate (or schedule) ``lr``, with its own
    weight decay where it is decoupled (adam, the LARS, lamb) and none for the others; options
    that are None take optax's defaults."""
    eps_arg = {} if eps is None else {"eps": eps}
    betas = {k: v for k, v in (("b1", b1), ("b2", b2)) if v is not None}
    accumulator = (
        {} if initial_accumulator is None else {"initial_accumulator_value": initial_accumulator}
    )
    if name == "sgd":
        return optax.sgd(lr, momentum=momentum or None, nesterov=nesterov)
    if name == "adagrad":
        return optax.adagrad(lr, **eps_arg, **accumulator)
    if name == "adam":
        return optax.adamw(lr, weight_decay=weight_decay, mask=mask, **eps_arg, **betas)
    if name == "yogi":
        # optax.yogi, with its accumulator's start exposed
        return optax.chain(
            optax.scale_by_yogi(**eps_arg, **betas, **accumulator),
            optax.scale_by_learning_rate(lr),
        )
    if name == "lars":
        return lars(
            lr, weight_decay=weight_decay, eps=eps or 0.0, nesterov=nesterov,
            mask=mask, momentum=0.9 if momentum is None else momentum,
        )  # fmt: skip
    if name == "optax_lars":
        momentum_arg = {} if momentum is None else {"momentum": momentum}
        masks = {} if mask is None else {"weight_decay_mask": mask, "trust_ratio_mask": mask}
        return optax.lars(
            lr, weight_decay=weight_decay, nesterov=nesterov, **momentum_arg, **eps_arg, **masks
        )
    if mask is None:
        return optax.lamb(lr, weight_decay=weight_decay, **eps_arg, **betas)
    # optax.lamb's chain with its trust ratio masked too (optax masks only the decay)
    return optax.chain(
        optax.scale_by_adam(**{"eps": 1e-6, **eps_arg}, **betas),
        optax.add_decayed_weights(weight_decay, mask=mask),
        optax.masked(optax.scale_by_trust_ratio(), mask),
        optax.scale_by_learning_rate(lr),
    )
