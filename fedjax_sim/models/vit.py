"""A small Vision Transformer (Dosovitskiy et al. 2021) for the FL architecture study.

The image is cut into non-overlapping ``patch`` x ``patch`` patches, each flattened and
projected to ``width`` features; a learned class token is prepended and learned position
embeddings added; ``depth`` pre-LayerNorm encoder blocks follow (multi-head self-attention with
``heads`` heads, then an MLP of ``mlp_ratio * width`` GELU units, each with a residual); a final
LayerNorm and a dense classifier read the class token. No dropout, no model state (LayerNorm
only), so FedAvg averages every variable — the property Qu et al. 2022 credit for ViTs'
robustness to heterogeneity.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fedjax_sim.models.model import Model, from_linen


def patches(x_BxHxWxC, patch: int):
    """``[B, (H/p)(W/p), p*p*C]``: the non-overlapping patches, row-major, each flattened.

    A reshape instead of a strided convolution: the same linear map once followed by a dense
    layer, and XLA:CPU's convolution backward is slow inside loop bodies (jax-ml/jax#12868).
    """
    b, h, w, c = x_BxHxWxC.shape
    x = x_BxHxWxC.reshape(b, h // patch, patch, w // patch, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), patch * patch * c)


class EncoderBlock(nn.Module):
    width: int
    heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x_BxTxD):
        y = nn.LayerNorm()(x_BxTxD)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width)(y, y)
        x = x_BxTxD + y
        y = nn.LayerNorm()(x)
        y = nn.Dense(self.mlp_ratio * self.width)(y)
        y = nn.Dense(self.width)(nn.gelu(y))
        return x + y


class ViT(nn.Module):
    num_classes: int
    patch: int = 4
    depth: int = 4
    width: int = 128
    heads: int = 4
    mlp_ratio: int = 2

    @nn.compact
    def __call__(self, x_BxHxWxC):
        x = nn.Dense(self.width, name="patch_embedding")(patches(x_BxHxWxC, self.patch))
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.width))
        x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.width)), x], axis=1)
        positions = self.param(
            "positions", nn.initializers.normal(stddev=0.02), (1, x.shape[1], self.width)
        )
        x = x + positions
        for i in range(self.depth):
            x = EncoderBlock(self.width, self.heads, self.mlp_ratio, name=f"block_{i}")(x)
        return nn.Dense(self.num_classes, name="head")(nn.LayerNorm()(x)[:, 0])


def make_vit(
    num_classes: int = 100,
    patch: int = 4,
    depth: int = 4,
    width: int = 128,
    heads: int = 4,
    mlp_ratio: int = 2,
    image_shape=(32, 32, 3),
) -> Model:
    """The ViT as a pure `Model` taking float32 NHWC images.

    Args:
      num_classes: output classes.
      patch: side of a square patch; must divide the image's height and width.
      depth: encoder blocks.
      width: token features; must be a multiple of ``heads``.
      heads: attention heads.
      mlp_ratio: the MLP's hidden units per token feature.
      image_shape: HWC of one input.

    Raises:
      ValueError: a patch that does not tile the image, or a width not split by the heads.
    """
    h, w, _ = image_shape
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"model.patch must divide the image's {h}x{w}, got {patch}")
    if heads < 1 or width % heads:
        raise ValueError(f"model.width must be a multiple of model.heads={heads}, got {width}")
    module = ViT(num_classes, patch, depth, width, heads, mlp_ratio)
    return from_linen(module, jnp.zeros((1, *image_shape), jnp.float32), "vit", inputs="images")
