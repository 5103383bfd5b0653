"""2-D convolutions whose three convolutions (forward, input and kernel gradients) XLA:CPU runs
fast inside loops.

Autodiff of `jax.lax.conv_general_dilated` expresses the kernel gradient as a convolution whose
"batch" is the input channels and whose "features" are the examples, and the input gradient as
a convolution with the kernel's in/out roles swapped. Outside loops XLA:CPU transposes both into
its fast NHWC/HWIO form; inside a `lax.scan`/`lax.map` body it does not, and those two
convolutions fall to a generic loop nest (jax-ml/jax#12868): measured at batch 64 on the course
CNN's second layer, kernel gradient ~1 s instead of 10 ms, input gradient 75 ms instead of 19.

Here the backward pass transposes the operands itself, so all three convolutions are plain
NHWC x HWIO -> NHWC in every context, and local steps and clients can run in rolled loops at
the speed of unrolled code. Values and gradients equal `lax.conv_general_dilated`'s (to float
tolerance in tests/models/test_conv.py; bit for bit in the course CNN's layers, measured).

Strides and SAME padding (the ResNets') are built around that VALID, stride-1 core: the input is
padded as XLA pads it for SAME, and a stride-s convolution is the stride-1 one read at every s-th
output (a 1x1 kernel reads every s-th input instead, at no extra cost). The strided 3x3 layers
thus compute s^2 times their outputs, two layers of ResNet-20's nineteen; measured on the digits
this still made its FedAvg round over 10x faster in rolled loops than `flax.linen.Conv`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_sim.models.winograd import winograd_conv_valid

_NHWC_HWIO = ("NHWC", "HWIO", "NHWC")


def _conv(x_NHWC, kernel_HWIO):
    return jax.lax.conv_general_dilated(
        x_NHWC, kernel_HWIO, (1, 1), "VALID", dimension_numbers=_NHWC_HWIO
    )


@jax.custom_vjp
def conv_valid(x_BxHxWxC: jax.Array, kernel_HWIO: jax.Array) -> jax.Array:
    """VALID, stride-1 convolution of NHWC ``x`` with an HWIO ``kernel`` (no bias)."""
    return _conv(x_BxHxWxC, kernel_HWIO)


def _forward(x, kernel):
    return _conv(x, kernel), (x, kernel)


def _backward(residuals, dy_BxHoxWoxO):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    # d_kernel[i, j, c, o] = sum_{b,h,w} x[b, h+i, w+j, c] dy[b, h, w, o]: a convolution of x
    # with channels as its batch and examples as its features, by dy as an HWIO kernel.
    x_CxHxWxB = jnp.transpose(x, (3, 1, 2, 0))
    dy_HoxWoxBxO = jnp.transpose(dy_BxHoxWoxO, (1, 2, 0, 3))
    d_kernel = jnp.transpose(_conv(x_CxHxWxB, dy_HoxWoxBxO), (1, 2, 0, 3))
    # dx: the "full" convolution of dy with the kernel flipped in space, in/out swapped.
    padded = jnp.pad(dy_BxHoxWoxO, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    flipped_HWOI = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
    return _conv(padded, flipped_HWOI), d_kernel


conv_valid.defvjp(_forward, _backward)


def conv2d(x_BxHxWxC, kernel_HWIO, strides=(1, 1), padding="VALID"):
    """``lax.conv_general_dilated`` (NHWC x HWIO), ``padding`` "VALID" or "SAME", by `conv_valid`.

    Values equal XLA's (SAME pads as `jax.lax.padtype_to_pads` does); gradients are autodiff's of
    the pad and the strided read around `conv_valid`'s hand-written VJP.
    """
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"padding must be one of ['VALID', 'SAME'], got {padding!r}")
    kh, kw = kernel_HWIO.shape[:2]
    sh, sw = strides
    if padding == "SAME":
        pads = jax.lax.padtype_to_pads(x_BxHxWxC.shape[1:3], (kh, kw), strides, "SAME")
        x_BxHxWxC = jnp.pad(x_BxHxWxC, ((0, 0), *pads, (0, 0)))
    if (kh, kw) == (1, 1):  # each output reads one input: subsample first
        return conv_valid(x_BxHxWxC[:, ::sh, ::sw], kernel_HWIO)
    return conv_valid(x_BxHxWxC, kernel_HWIO)[:, ::sh, ::sw]


class LoopFriendlyConv(nn.Module):
    """``nn.Conv(features, kernel_size, strides, padding, use_bias)`` computed by `conv2d`.

    Its parameters (``kernel`` HWIO, ``bias``) have the names, shapes and initializers of
    `flax.linen.Conv`, so the two are interchangeable. ``algorithm="winograd"`` computes a VALID,
    stride-1 layer by `winograd_conv_valid` (F(4x4, r x r)) instead of the direct convolution.
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: str = "VALID"
    use_bias: bool = True
    algorithm: str = "direct"

    @nn.compact
    def __call__(self, x_BxHxWxC):
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, x_BxHxWxC.shape[-1], self.features),
        )
        if self.algorithm == "winograd":
            if self.padding != "VALID" or tuple(self.strides) != (1, 1):
                raise ValueError("algorithm='winograd' supports padding='VALID', strides=(1, 1)")
            y = winograd_conv_valid(x_BxHxWxC, kernel)
        else:
            y = conv2d(x_BxHxWxC, kernel, tuple(self.strides), self.padding)
        if not self.use_bias:
            return y
        return y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
