"""LEAF's Shakespeare model: embedding 8, two LSTM layers of 256, dense to 80 on the last step.

Gate order is (i, f, g, o) and the forget-gate bias starts at 1, as TensorFlow's
``BasicLSTMCell(forget_bias=1.0)`` that LEAF uses.

Why a layer has a hand-written VJP: the input projection ``x @ W_ih`` of all time steps is one
large matmul outside the loop, and so are the weight gradients. Autodiff of `lax.scan` instead
accumulates ``dW_hh += h_t^T dz_t`` inside the backward loop, a read-modify-write of the whole
[H, 4H] matrix at every time step; here the backward loop only carries ``dh`` and ``dc``, and
both weight gradients are ONE ``[x_t, h_{t-1}]^T dz`` product over all T*B rows afterwards
(separately, XLA:CPU transposed ``dz`` for ``dW_ih`` and ran that product off its fast path).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_sim.models.model import Model, from_linen


def _is_g_column(hidden: int):
    """[4H] bool: the columns of the g gate (tanh) among the (i, f, g, o) gates."""
    column = jnp.arange(4 * hidden)
    return (column >= 2 * hidden) & (column < 3 * hidden)


def _gate_activations(z_Bx4H):
    """sigmoid on the i, f, o gates and tanh on g, as ONE elementwise pass over all four gates.

    Why: inside the time loop every separate XLA:CPU kernel costs a few microseconds of dispatch,
    comparable to its work at these sizes; four gate slices plus a concatenate were five kernels.
    sigmoid(x) = (1 + tanh(x / 2)) / 2 because XLA:CPU's tanh is a fast rational approximation
    while its logistic is an exp and a divide (~1.5x faster loop; equal to float32 rounding).
    """
    is_g = _is_g_column(z_Bx4H.shape[-1] // 4)
    tanh = jnp.tanh(z_Bx4H * jnp.where(is_g, 1.0, 0.5))
    return jnp.where(is_g, tanh, 0.5 * tanh + 0.5)


def _scan(gates_in_TxBx4H, w_hh, unroll, residuals: bool):
    """The time loop: per step ``(c, gate activations)`` when ``residuals`` (what the backward
    pass reads), else the hidden state ``h`` alone (a fifth of their size)."""
    hidden = w_hh.shape[0]

    def step(carry, gates_in_Bx4H):
        h_BxH, c_BxH = carry
        act_Bx4H = _gate_activations(gates_in_Bx4H + h_BxH @ w_hh)
        i, f, g, o = jnp.split(act_Bx4H, 4, axis=-1)
        c_BxH = f * c_BxH + i * g
        h_BxH = o * jnp.tanh(c_BxH)
        return (h_BxH, c_BxH), ((c_BxH, act_Bx4H) if residuals else h_BxH)

    # zeros_like (not zeros) so the carry has the input's type under `shard_map` too (varying
    # over the mapped mesh axis), else scan rejects the carry.
    zeros = jnp.zeros_like(gates_in_TxBx4H[0, ..., :hidden])
    return jax.lax.scan(step, (zeros, zeros), gates_in_TxBx4H, unroll=unroll)[1]


def _forward(gates_in_TxBx4H, w_hh, unroll):
    """Hidden states, cell states and gate activations of every step (the training pass)."""
    hidden = w_hh.shape[0]
    c_TxBxH, act_TxBx4H = _scan(gates_in_TxBx4H, w_hh, unroll, residuals=True)
    # h is o * tanh(c): one vectorized pass here costs less than one more stacked loop output.
    h_TxBxH = act_TxBx4H[..., 3 * hidden :] * jnp.tanh(c_TxBxH)
    return h_TxBxH, c_TxBxH, act_TxBx4H


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def lstm_layer(x_TxBxD, w_ih, bias, w_hh, unroll=1):
    """Hidden states ``h_TxBxH`` of one LSTM layer over the inputs ``x_TxBxD``.

    Args:
      x_TxBxD: the layer's inputs, time-major.
      w_ih: input weights [D, 4H], gates in (i, f, g, o) order.
      bias: [4H].
      w_hh: recurrent weights [H, 4H].
      unroll: `lax.scan` unroll of the time loop.

    Outside differentiation (evaluation) the loop stacks only ``h``: the cell states and the four
    gates of every step, five times its size, are what the backward pass reads
    (docs/performance.md, Memory).
    """
    return _scan(x_TxBxD @ w_ih + bias, w_hh, unroll, residuals=False)


def _layer_fwd(x_TxBxD, w_ih, bias, w_hh, unroll):
    h, c, act = _forward(x_TxBxD @ w_ih + bias, w_hh, unroll)
    return h, (x_TxBxD, h, c, act, w_ih, w_hh)


def _layer_bwd(unroll, residuals, dh_TxBxH):
    x, h, c, act, w_ih, w_hh = residuals
    zero = jnp.zeros_like(h[:1])
    h_prev, c_prev = jnp.concatenate([zero, h[:-1]]), jnp.concatenate([zero, c[:-1]])
    # Everything that does not depend on the carry is computed for all steps at once, outside the
    # loop: tanh(c) and W_hh^T (a transposed operand inside the loop made each step's dot slower).
    tanh_c_TxBxH = jnp.tanh(c)
    w_hh_t = w_hh.T
    is_g = _is_g_column(w_hh.shape[0])

    def step(carry, inputs):
        dh_next, dc_next = carry
        dh_out, tanh_c, c_before, act_t = inputs
        i, f, g, o = jnp.split(act_t, 4, axis=-1)
        dh = dh_out + dh_next
        dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
        # dz of the four gates as ONE elementwise pass over [B, 4H] (one kernel, not five):
        # d(gate pre-activation) = (upstream) x (partner value) x (activation's derivative).
        upstream = jnp.concatenate([dc, dc, dc, dh], -1)
        partner = jnp.concatenate([g, c_before, i, tanh_c], -1)
        slope = jnp.where(is_g, 1 - act_t * act_t, act_t * (1 - act_t))
        dz = upstream * partner * slope
        return (dz @ w_hh_t, dc * f), dz

    _, dz_TxBx4H = jax.lax.scan(
        step,
        (zero[0], zero[0]),
        (dh_TxBxH, tanh_c_TxBxH, c_prev, act),
        reverse=True,
        unroll=unroll,
    )
    # Both weight gradients as ONE product over all T*B rows: [x_t, h_{t-1}]^T dz.
    d_in = x.shape[-1]
    inputs_TxBxDH = jnp.concatenate([x, h_prev], -1)
    dw = jnp.einsum("tbk,tbg->kg", inputs_TxBxDH, dz_TxBx4H)
    dx = dz_TxBx4H @ w_ih.T
    return dx, dw[:d_in], dz_TxBx4H.sum((0, 1)), dw[d_in:]


lstm_layer.defvjp(_layer_fwd, _layer_bwd)


def _forget_bias_init(hidden: int):
    def init(rng, shape, dtype=jnp.float32):
        del rng
        return jnp.zeros(shape, dtype).at[hidden : 2 * hidden].set(1.0)

    return init


class LSTMLayer(nn.Module):
    hidden: int
    unroll: int = 1

    @nn.compact
    def __call__(self, x_TxBxD):
        d_in, h = x_TxBxD.shape[-1], self.hidden
        w_ih = self.param("w_ih", nn.initializers.lecun_normal(), (d_in, 4 * h))
        w_hh = self.param("w_hh", nn.initializers.orthogonal(), (h, 4 * h))
        bias = self.param("bias", _forget_bias_init(h), (4 * h,))
        return lstm_layer(x_TxBxD, w_ih, bias, w_hh, self.unroll)


class ShakespeareLSTM(nn.Module):
    vocab_size: int = 80
    embed_dim: int = 8
    hidden: int = 256
    num_layers: int = 2
    unroll: int = 1

    @nn.compact
    def __call__(self, tokens_BxT):
        x = nn.Embed(self.vocab_size, self.embed_dim)(tokens_BxT.astype(jnp.int32).T)
        for _ in range(self.num_layers):
            x = LSTMLayer(self.hidden, self.unroll)(x)
        return nn.Dense(self.vocab_size)(x[-1])


def make_lstm(
    vocab_size: int = 80, seq_len: int = 80, hidden: int = 256, num_layers: int = 2, unroll: int = 1
) -> Model:
    """LEAF's character LSTM as a pure `Model` taking int token ids [B, T]."""
    example_x = jnp.zeros((1, seq_len), jnp.int32)
    module = ShakespeareLSTM(
        vocab_size=vocab_size, hidden=hidden, num_layers=num_layers, unroll=unroll
    )
    # XLA:CPU: vmap's batched per-client matmuls ran 1.3x slower than one client's; `lax.map`
    # is as fast as unrolling the clients.
    return from_linen(module, example_x, name="lstm", inputs="tokens", cpu_client_axis="map")
