"""LEAF's Shakespeare model: embedding 8, two LSTM layers of 256, dense to 80 on the last step.

The input projection of every layer is one matmul over all time steps, hoisted out of the
recurrence; only ``h @ W_hh`` stays inside the `lax.scan` over time. Gate order is (i, f, g, o) and
the forget-gate bias starts at 1, as TensorFlow's ``BasicLSTMCell(forget_bias=1.0)`` that LEAF uses.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_sim.models.model import from_linen


def _forget_bias_init(hidden: int):
    def init(rng, shape, dtype=jnp.float32):
        del rng
        return jnp.zeros(shape, dtype).at[hidden : 2 * hidden].set(1.0)

    return init


class LSTMLayer(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x_BxTxD):
        d_in, h = x_BxTxD.shape[-1], self.hidden
        w_ih = self.param("w_ih", nn.initializers.lecun_normal(), (d_in, 4 * h))
        w_hh = self.param("w_hh", nn.initializers.orthogonal(), (h, 4 * h))
        bias = self.param("bias", _forget_bias_init(h), (4 * h,))
        gates_in_TxBx4H = jnp.einsum("btd,dg->tbg", x_BxTxD, w_ih) + bias

        def step(carry, gates_in_Bx4H):
            h_BxH, c_BxH = carry
            i, f, g, o = jnp.split(gates_in_Bx4H + h_BxH @ w_hh, 4, axis=-1)
            c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_BxH = jax.nn.sigmoid(o) * jnp.tanh(c_BxH)
            return (h_BxH, c_BxH), h_BxH

        batch = x_BxTxD.shape[0]
        zeros = jnp.zeros((batch, h), x_BxTxD.dtype)
        _, h_TxBxH = jax.lax.scan(step, (zeros, zeros), gates_in_TxBx4H)
        return jnp.swapaxes(h_TxBxH, 0, 1)


class ShakespeareLSTM(nn.Module):
    vocab_size: int = 80
    embed_dim: int = 8
    hidden: int = 256
    num_layers: int = 2

    @nn.compact
    def __call__(self, tokens_BxT):
        x = nn.Embed(self.vocab_size, self.embed_dim)(tokens_BxT.astype(jnp.int32))
        for _ in range(self.num_layers):
            x = LSTMLayer(self.hidden)(x)
        return nn.Dense(self.vocab_size)(x[:, -1])


def make_lstm(vocab_size: int = 80, seq_len: int = 80, hidden: int = 256, num_layers: int = 2):
    """LEAF's character LSTM as a pure `Model` taking int token ids [B, T]."""
    example_x = jnp.zeros((1, seq_len), jnp.int32)
    module = ShakespeareLSTM(vocab_size=vocab_size, hidden=hidden, num_layers=num_layers)
    return from_linen(module, example_x, name="lstm")
