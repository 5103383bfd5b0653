"""Winograd minimal-filtering convolution F(m x m, r x r) (Lavin & Gray 2016), fast on XLA:CPU.

A VALID, stride-1 convolution of an NHWC input with an r x r HWIO kernel, computed in tiles of
m x m outputs: each (m + r - 1)^2 input tile d and the kernel g are taken to a transformed
domain, ``V = B^T d B`` and ``U = G g G^T``, multiplied position by position, summed over the
input channels (one matrix product per position, over all tiles and examples at once), and
brought back, ``Y = A^T (sum_c U ⊙ V) A``. For the course CNN's second layer (5x5, 64 -> 64
channels, 10x10 outputs) F(4x4, 5x5) does 64 products per 16 outputs where the direct
convolution does 400, and the input gradient needs no padded "full" convolution: autodiff of
the same transforms gives all three convolutions of a training step.

The result equals the convolution in exact arithmetic; in float32 its rounding differs from the
direct sum's, by a few times more (tests/models/test_winograd.py bounds it against float64).

The transforms are linear maps over short axes; their transposes are written out (custom VJPs)
because autodiff's pads of slices run slowly on XLA:CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Interpolation points of the Cook-Toom construction (plus the point at infinity), small and
# symmetric for float32 accuracy.
POINTS = {2: (0.0, 1.0, -1.0, 2.0, -0.5), 4: (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)}


def winograd_matrices(m: int, r: int, points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T [m, a], G [a, r], B^T [a, a])`` of F(m, r), ``a = m + r - 1``, in float64.

    A^T and G are the Cook-Toom (Vandermonde) matrices of ``points`` and infinity; B^T is the
    unique solution of ``A^T[j, i] G[i, k] B^T[i, l] = [l == j + k]`` summed over i, which says
    ``A^T ((G g) ⊙ (B^T d)) = correlate(d, g)`` for every d and g.

    Raises:
      ValueError: if ``points`` are not ``a - 1`` distinct values.
    """
    alpha = m + r - 1
    a = np.asarray(points, np.float64)
    if a.shape != (alpha - 1,) or len(set(a.tolist())) != alpha - 1:
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} distinct points, got {points}")
    a_t, g = np.zeros((m, alpha)), np.zeros((alpha, r))
    for i, point in enumerate(a):
        a_t[:, i] = point ** np.arange(m)
        g[i] = point ** np.arange(r) / np.prod(point - np.delete(a, i))
    a_t[m - 1, alpha - 1] = g[alpha - 1, r - 1] = 1.0
    # One equation per (j, k, l), linear in B^T's entries: coefficient of B^T[i, q] is
    # A^T[j, i] G[i, k] [q == l]; equation (j, k, l) equals [l == j + k].
    system = np.einsum("ji,ik,lq->jkliq", a_t, g, np.eye(alpha)).reshape(-1, alpha * alpha)
    rhs = np.array([float(q == j + k) for j in range(m) for k in range(r) for q in range(alpha)])
    b_t = np.linalg.lstsq(system, rhs, rcond=None)[0]
    assert np.abs(system @ b_t - rhs).max() < 1e-9, "the Cook-Toom system has no exact solution"
    return a_t, g, b_t.reshape(alpha, alpha)


def _constant(matrix: np.ndarray) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in matrix)


@functools.cache
def _matrices(m, r, points):
    """`winograd_matrices`, A^T and B^T as the nested tuples `apply_along` takes."""
    a_t, g, b_t = winograd_matrices(m, r, points)
    return _constant(a_t), g, _constant(b_t)


def _combination(coefficients, parts):
    """``sum_k coefficients[k] * parts[k]``, skipping zeros and multiplications by +-1."""
    total = None
    for c, part in zip(coefficients, parts, strict=True):
        if c == 0:
            continue
        term = part if c == 1 else -part if c == -1 else c * part
        total = term if total is None else total + term
    return total


def _apply(matrix, x, axis):
    parts = [jax.lax.index_in_dim(x, k, axis, keepdims=False) for k in range(x.shape[axis])]
    return jnp.stack([_combination(row, parts) for row in matrix], axis=axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 2))
def apply_along(matrix: tuple, x: jax.Array, axis: int) -> jax.Array:
    """``y[.., i, ..] = sum_k matrix[i][k] x[.., k, ..]`` along ``axis``; ``matrix`` is a tuple of
    tuples of Python floats (a constant: its zeros and ones cost nothing)."""
    return _apply(matrix, x, axis)


def _apply_forward(matrix, x, axis):
    return _apply(matrix, x, axis), None


def _apply_backward(matrix, axis, _, dy):
    return (_apply(tuple(zip(*matrix, strict=True)), dy, axis),)


apply_along.defvjp(_apply_forward, _apply_backward)


def _windows(x, axis, stride, size, count):
    # Windows overlap by size - stride; with stride | size each is size // stride blocks of
    # `stride` consecutive rows, so they are slices of x reshaped into such blocks.
    blocks = size // stride
    rows = x.shape[axis] // stride * stride
    x = jax.lax.slice_in_dim(x, 0, rows, axis=axis)
    x = x.reshape(x.shape[:axis] + (rows // stride, stride) + x.shape[axis + 1 :])
    parts = [jax.lax.slice_in_dim(x, j, j + count, axis=axis) for j in range(blocks)]
    w = jnp.stack(parts, axis=axis + 1)  # [.., count, blocks, stride, ..]
    return w.reshape(w.shape[:axis] + (count, size) + w.shape[axis + 3 :])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def windows(x: jax.Array, axis: int, stride: int, size: int, count: int) -> jax.Array:
    """``count`` windows of ``size`` along ``axis`` at ``stride`` (``stride`` divides ``size``):
    ``[.., L, ..] -> [.., count, size, ..]``, window t holding rows ``t*stride ...``."""
    return _windows(x, axis, stride, size, count)


def _windows_forward(x, axis, stride, size, count):
    return _windows(x, axis, stride, size, count), x.shape


def _windows_backward(axis, stride, size, count, shape, dw):
    # The transpose: each window's gradient added back at its rows (an overlap-add of shifts).
    blocks, length = size // stride, shape[axis]
    dw = dw.reshape(dw.shape[:axis] + (count, blocks, stride) + dw.shape[axis + 2 :])
    total = None
    for j in range(blocks):
        part = jax.lax.index_in_dim(dw, j, axis + 1, keepdims=False)  # [.., count, stride, ..]
        pads = [(0, 0, 0)] * part.ndim
        pads[axis] = (j, length // stride - count - j, 0)
        part = jax.lax.pad(part, jnp.zeros((), part.dtype), pads)
        total = part if total is None else total + part
    dx = total.reshape(shape[:axis] + (length // stride * stride,) + shape[axis + 1 :])
    pads = [(0, 0, 0)] * dx.ndim
    pads[axis] = (0, length % stride, 0)
    return (jax.lax.pad(dx, jnp.zeros((), dx.dtype), pads),)


windows.defvjp(_windows_forward, _windows_backward)


def winograd_conv_valid(x_BxHxWxC: jax.Array, kernel_HWIO: jax.Array, m: int = 4) -> jax.Array:
    """VALID, stride-1 convolution of NHWC ``x`` with a square HWIO ``kernel`` by F(m x m, r x r).

    Equals ``lax.conv_general_dilated(x, kernel, (1, 1), "VALID")`` up to float rounding, in
    values and (by autodiff) gradients. Outputs that do not fill whole m x m tiles are computed
    on zero-padded input and dropped.

    Raises:
      ValueError: for a non-square kernel, or an ``m`` without points in `POINTS` or for which
        ``m`` does not divide ``m + r - 1``.
    """
    r = kernel_HWIO.shape[0]
    alpha = m + r - 1
    points = POINTS.get(m, ())[: alpha - 1]
    if kernel_HWIO.shape[1] != r or len(points) != alpha - 1 or alpha % m:
        raise ValueError(
            f"Winograd F({m}, {kernel_HWIO.shape[:2]}) needs a square kernel, m in "
            f"{sorted(POINTS)} with enough points, and m dividing m + r - 1"
        )
    a_t, g, b_t = _matrices(m, r, points)
    batch, height, width, _ = x_BxHxWxC.shape
    out_h, out_w = height - r + 1, width - r + 1
    tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
    x = jnp.pad(x_BxHxWxC, ((0, 0), (0, tiles_h * m - out_h), (0, tiles_w * m - out_w), (0, 0)))
    # Input transform B^T d B, rows then columns: [B, th, alpha, tw, alpha, C].
    t = apply_along(b_t, windows(x, 1, m, alpha, tiles_h), 2)
    t = apply_along(b_t, windows(t, 3, m, alpha, tiles_w), 4)
    v = jnp.transpose(t, (2, 4, 0, 1, 3, 5)).reshape(alpha * alpha, -1, t.shape[-1])
    g = jnp.asarray(g, kernel_HWIO.dtype)
    u = jnp.einsum("ah,hwco,bw->abco", g, kernel_HWIO, g).reshape(
        alpha * alpha, -1, kernel_HWIO.shape[-1]
    )
    # One [tiles, C] x [C, O] product per transformed position.
    product = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))
    product = product.reshape(alpha, alpha, batch, tiles_h, tiles_w, -1)
    # Output transform A^T M A: [m, m, B, th, tw, O].
    y = apply_along(a_t, apply_along(a_t, product, 0), 1)
    y = jnp.transpose(y, (2, 3, 0, 4, 1, 5)).reshape(batch, tiles_h * m, tiles_w * m, -1)
    return y[:, :out_h, :out_w]
