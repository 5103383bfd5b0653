"""CIFAR-style ResNets (He et al. 2016) with a choice of normalization, for the FL norm study.

ResNet-20: a 3x3 stem of 16 channels, three stages of 3 basic blocks (16, 32, 64 channels,
stride 2 entering stages 2 and 3), global average pooling, a dense classifier. ResNet-18 (the
CIFAR variant: 3x3 stem of 64, no max-pool): four stages of 2 basic blocks (64, 128, 256, 512).
A block whose shape changes gets a 1x1 convolution plus norm as its shortcut (option B).

``norm``: ``"batch"`` (BatchNorm; its running statistics are the model state, and in training
the batch statistics use only the rows where ``mask`` is true, so padding never enters them),
``"group"`` (GroupNorm, ``groups`` groups; Hsieh et al. 2020 use 2 for FL), ``"layer"``
(LayerNorm over each example's H, W, C) or ``"none"`` (convolutions get biases instead).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fedjax_sim.models.conv import LoopFriendlyConv
from fedjax_sim.models.model import Model, from_linen

NORMS = ("batch", "group", "layer", "none")
DEPTHS = {"resnet20": ((16, 32, 64), 3), "resnet18": ((64, 128, 256, 512), 2)}


class Norm(nn.Module):
    """The configured normalization of an NHWC activation."""

    kind: str
    groups: int = 2

    @nn.compact
    def __call__(self, x, *, train: bool, mask=None):
        if self.kind == "batch":
            # Statistics over the unmasked rows only; flax wants the mask broadcast to x.
            mask_x = None
            if mask is not None:
                mask_x = jnp.broadcast_to(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(
                x, mask=mask_x if train else None
            )
        if self.kind == "group":
            return nn.GroupNorm(num_groups=min(self.groups, x.shape[-1]), epsilon=1e-5)(x)
        if self.kind == "layer":
            axes = tuple(range(1, x.ndim))
            return nn.LayerNorm(reduction_axes=axes, feature_axes=-1, epsilon=1e-5)(x)
        return x


class BasicBlock(nn.Module):
    features: int
    stride: int
    norm: str
    groups: int

    @nn.compact
    def __call__(self, x, *, train: bool, mask=None):
        bias = self.norm == "none"
        conv = lambda f, k, s, name: LoopFriendlyConv(  # noqa: E731
            f, (k, k), (s, s), padding="SAME" if k == 3 else "VALID", use_bias=bias, name=name
        )
        norm = lambda name: Norm(self.norm, self.groups, name=name)  # noqa: E731
        y = conv(self.features, 3, self.stride, "conv1")(x)
        y = nn.relu(norm("norm1")(y, train=train, mask=mask))
        y = conv(self.features, 3, 1, "conv2")(y)
        y = norm("norm2")(y, train=train, mask=mask)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = conv(self.features, 1, self.stride, "shortcut_conv")(x)
            x = norm("shortcut_norm")(x, train=train, mask=mask)
        return nn.relu(x + y)


class ResNet(nn.Module):
    stage_features: tuple[int, ...]
    blocks_per_stage: int
    num_classes: int
    norm: str = "batch"
    groups: int = 2

    @nn.compact
    def __call__(self, x_BxHxWxC, *, train: bool = False, mask=None):
        x = LoopFriendlyConv(
            self.stage_features[0],
            (3, 3),
            padding="SAME",
            use_bias=self.norm == "none",
            name="Conv_0",
        )(x_BxHxWxC)
        x = nn.relu(Norm(self.norm, self.groups, name="stem_norm")(x, train=train, mask=mask))
        for stage, features in enumerate(self.stage_features):
            for block in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(features, stride, self.norm, self.groups)(x, train=train, mask=mask)
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


def make_resnet(
    num_classes: int = 100,
    depth: str = "resnet20",
    norm: str = "batch",
    groups: int = 2,
    image_shape=(32, 32, 3),
) -> Model:
    """A CIFAR ResNet as a pure `Model` taking float32 NHWC images.

    Args:
      num_classes: output classes.
      depth: ``"resnet20"`` or ``"resnet18"``.
      norm: one of `NORMS`.
      groups: GroupNorm's number of groups (``norm="group"``).
      image_shape: HWC of one input.
    """
    if depth not in DEPTHS:
        raise ValueError(f"model.name must be one of {list(DEPTHS)}, got {depth!r}")
    if norm not in NORMS:
        raise ValueError(f"model.norm must be one of {list(NORMS)}, got {norm!r}")
    features, blocks = DEPTHS[depth]
    module = ResNet(features, blocks, num_classes, norm, groups)
    # The convolutions are loop-friendly (conv.py), so clients and local steps run in rolled
    # loops: ResNet-20 GroupNorm on the digits (10 clients x J=8, B=16), round 2.25 s in `map`
    # rolled (12 s compile), 2.1 s unrolled (25 s compile), 4.5 s in vmap.
    return from_linen(
        module,
        jnp.zeros((1, *image_shape), jnp.float32),
        name=depth,
        stateful=True,
        inputs="images",
        cpu_client_axis="map",
    )
