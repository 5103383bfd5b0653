"""The one place that knows every model: ``get(name)(num_classes=..., **fields)`` builds it.

Adding a model is a module with a ``make_*`` builder returning a `Model` and one line in
`MODELS`; the task, the client axis, the unroll and the config checks read what they need
from the built `Model` (its ``inputs``, ``cpu_client_axis``, ``cpu_unroll``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping

from fedjax_sim.models.cnn import make_cnn
from fedjax_sim.models.lstm import make_lstm
from fedjax_sim.models.mlp import make_mlp
from fedjax_sim.models.model import Model
from fedjax_sim.models.resnet import make_resnet
from fedjax_sim.models.vit import make_vit


def _lstm(
    num_classes: int = 80, hidden: int = 256, seq_len: int = 80, num_layers: int = 2,
    unroll: int | bool = 1,
):  # fmt: skip
    return make_lstm(
        vocab_size=num_classes, seq_len=seq_len, hidden=hidden, num_layers=num_layers,
        unroll=unroll,
    )  # fmt: skip


MODELS: dict[str, Callable[..., Model]] = {
    "cnn": make_cnn,
    "lstm": _lstm,
    "mlp": make_mlp,
    "resnet20": functools.partial(make_resnet, depth="resnet20"),
    "resnet18": functools.partial(make_resnet, depth="resnet18"),
    "vit": make_vit,
}


def get(name: str) -> Callable[..., Model]:
    """The builder of model ``name``: ``builder(num_classes=..., **fields) -> Model``.

    Raises:
      ValueError: an unknown name; the message lists the known ones.
    """
    if name not in MODELS:
        raise ValueError(f"model.name must be one of {list(MODELS)}, got {name!r}")
    return MODELS[name]


def fields_of(name: str) -> tuple[str, ...]:
    """The keyword fields model ``name``'s builder takes (besides ``num_classes`` and what the
    registry binds, such as a ResNet's depth)."""
    builder = get(name)
    bound = getattr(builder, "keywords", {})
    parameters = inspect.signature(builder).parameters
    return tuple(p for p in parameters if p != "num_classes" and p not in bound)


def build(name: str, num_classes: int, fields: Mapping) -> Model:
    """Builds model ``name`` from the entries of ``fields`` (e.g. ``config.model``) that its
    builder takes; the others (fields of other models) are ignored."""
    taken = {key: fields[key] for key in fields_of(name) if key in fields}
    return get(name)(num_classes=num_classes, **taken)
