"""The whole client population on the device, and the on-device sampler of clients and batches.

`ClientData` holds every example once, in flat arrays, plus one flat array of example indices
grouped by client (client k's are ``order_N[offsets_K[k] : offsets_K[k] + counts_K[k]]``), so
ragged clients cost no padding: the index table of the full Shakespeare population is 13 MB,
not the 265 MB a ``[K, max_n]`` table would take. A round draws its clients and every
client's batches for all local steps from a key, inside the compiled round, so no host round trip
and no per-client Python work happens between rounds.

Sampling semantics (documented in the README):
  * Clients per round: uniform without replacement from the population.
  * Batches: a client reads its examples in shuffled passes without replacement. Position
    ``t = offset + s * B + b`` of the client's stream (step ``s``, slot ``b``) reads example
    ``perm_p(t mod n)`` of pass ``p = t div n``, where ``perm_p`` is a keyed pseudo-random
    permutation of the client's ``n`` examples. A pass never repeats an example; a client with
    ``n < B`` still fills its batches, from the following passes. Every pass of every client in
    every round has its own permutation: the client's key is ``fold_in(round_key, client_id)``
    and the pass number selects the permutation stream under that key.
  * ``example_limit`` (for local epochs): positions at or past it are masked out.

The permutations are 8-round Feistel networks over the smallest even power of two >= n with cycle
walking, so a draw costs O(B) work per step whatever the client or population size: the sampler
of a 3M-example centralized run or of a 100,000-client population is as cheap as that of a tiny one.

Shape letters: K clients in the population, N indexed examples, C clients in a round, J local
steps, B batch size.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from fedjax_sim.data.dataset import FederatedDataset

# 4 rounds left visible bias for small n (chi-square of position/value counts); 8 pass it.
_FEISTEL_ROUNDS = 8


@flax.struct.dataclass
class ClientData:
    """Every client's examples, on the device.

    Attributes:
      examples: flat example arrays, ``{"x": [N, ...], "y": [N]}``.
      order_N: example indices grouped by client, client after client.
      offsets_K: where each client's indices start in ``order_N``.
      counts_K: examples per client.
      attributes: per-client ``[K]`` arrays that reach every client update (`fedjax_sim.
        algorithms.round.ClientInput.info`), e.g. a malicious-client flag; ``{}`` by default.
    """

    examples: dict
    order_N: jax.Array
    offsets_K: jax.Array
    counts_K: jax.Array
    attributes: dict = flax.struct.field(default_factory=dict)

    @property
    def num_clients(self) -> int:
        return self.counts_K.shape[0]

    def client_indices(self, client_id: int) -> np.ndarray:
        """Client ``client_id``'s example indices, on the host."""
        start, count = int(self.offsets_K[client_id]), int(self.counts_K[client_id])
        return np.asarray(self.order_N[start : start + count])


def client_data_from_indices(examples: dict, client_indices, attributes=None) -> ClientData:
    """Builds `ClientData` from flat host arrays and one index array per client."""
    sizes = np.array([len(idx) for idx in client_indices], dtype=np.int64)
    if sizes.size == 0:
        raise ValueError("client_indices: need at least one client, got none")
    order = np.concatenate([np.asarray(idx, np.int64) for idx in client_indices] + [np.zeros(1)])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return ClientData(
        examples={name: jnp.asarray(array) for name, array in examples.items()},
        # One trailing 0 so that an empty last client still indexes in range.
        order_N=jnp.asarray(order.astype(np.int32)),
        offsets_K=jnp.asarray(offsets.astype(np.int32)),
        counts_K=jnp.asarray(sizes.astype(np.int32)),
        attributes={name: jnp.asarray(value) for name, value in (attributes or {}).items()},
    )


def train_client_data(dataset: FederatedDataset) -> ClientData:
    """The training examples of ``dataset``, one client per federated client."""
    return client_data_from_indices(dataset.train, dataset.train_client_indices)


def pooled_client_data(dataset: FederatedDataset) -> ClientData:
    """All training examples of ``dataset`` as ONE client (the centralized baseline)."""
    used = np.sort(np.concatenate(dataset.train_client_indices))
    return client_data_from_indices(dataset.train, [used])


def _mix32(x):
    """A 32-bit integer finalizer (murmur3's fmix32): every input bit reaches every output bit."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def random_permutation_at(key: jax.Array, positions, n, stream=0):
    """``perm(positions)`` for a keyed pseudo-random permutation ``perm`` of ``range(n)``.

    Args:
      key: a JAX PRNG key; ``(key, stream)`` selects the permutation.
      positions: int array with values in ``[0, n)``.
      n: scalar int >= 1 (may be traced).
      stream: int or int array broadcastable with ``positions`` (e.g. the pass number).

    Returns:
      An int32 array like ``positions``; over ``positions = range(n)`` it is a permutation.
    """
    n = jnp.maximum(jnp.asarray(n, jnp.uint32), 1)
    # ceil(log2(n)) exactly; a float log2 rounds n = 2**22 + 1 down to 22 and never terminates.
    bits = (32 - jax.lax.clz(n - 1)).astype(jnp.uint32)
    bits = jnp.maximum(bits + (bits & 1), 2)  # even, so the Feistel halves are equal
    half = bits // 2
    half_mask = (jnp.uint32(1) << half) - 1
    round_keys = jax.random.bits(key, (_FEISTEL_ROUNDS,), jnp.uint32)
    stream = _mix32(jnp.asarray(stream).astype(jnp.uint32) * jnp.uint32(0x9E3779B9))

    def feistel(x):
        left, right = x >> half, x & half_mask
        for i in range(_FEISTEL_ROUNDS):
            f = _mix32(right ^ round_keys[i] ^ stream) & half_mask
            left, right = right, left ^ f
        return (left << half) | right

    # Cycle walking: re-encrypt until the value lands in [0, n); the domain is < 4n, so the
    # expected number of walks is below 4, and it terminates because feistel is a bijection.
    x = feistel(jnp.asarray(positions).astype(jnp.uint32))
    x = jax.lax.while_loop(lambda x: jnp.any(x >= n), lambda x: jnp.where(x >= n, feistel(x), x), x)
    return x.astype(jnp.int32)


def sample_clients(key: jax.Array, num_clients: int, clients_per_round: int) -> jax.Array:
    """``clients_per_round`` distinct client ids, uniformly at random; O(C) work."""
    if not 0 < clients_per_round <= num_clients:
        raise ValueError(
            f"clients_per_round must be in [1, {num_clients}] (the population), "
            f"got {clients_per_round}"
        )
    return random_permutation_at(key, jnp.arange(clients_per_round), num_clients)


def client_batch_plan(
    key: jax.Array,
    order_N,
    start,
    count,
    *,
    num_steps: int,
    batch_size: int,
    offset=0,
    example_limit=None,
    batch_in_use=None,
):
    """The example indices and mask of one client's ``num_steps`` batches.

    Args:
      key: this client's key for the round.
      order_N, start: the client's example indices are ``order_N[start : start + count]``
        (`ClientData.order_N` and the client's `ClientData.offsets_K` entry).
      count: the client's number of examples (0 gives an all-masked plan).
      num_steps, batch_size: J and B.
      offset: stream position of the first example (0 for a fresh round; the centralized
        baseline passes ``step * B`` to continue its passes).
      example_limit: positions ``>= example_limit`` are masked (E local epochs: ``E * count``).
      batch_in_use: a (traced) batch size below the static ``batch_size``: each step reads
        the next ``batch_in_use`` positions of the stream and masks its other slots (an
        adaptive batch under a static shape); default ``batch_size``.

    Returns:
      ``(indices_JxB, mask_JxB)``: int32 indices into `ClientData.examples` and a bool mask.
    """
    shape = (num_steps, batch_size)
    if batch_in_use is None:
        t = offset + jnp.arange(num_steps * batch_size, dtype=jnp.int32)
        in_use = True
    else:
        step, slot_in_batch = jnp.arange(num_steps)[:, None], jnp.arange(batch_size)[None, :]
        t = (offset + step * batch_in_use + slot_in_batch).reshape(-1).astype(jnp.int32)
        in_use = jnp.broadcast_to(slot_in_batch < batch_in_use, shape).reshape(-1)
    n = jnp.maximum(count, 1)
    slot = random_permutation_at(key, t % n, n, stream=t // n)
    mask = jnp.broadcast_to(count > 0, t.shape) & in_use
    if example_limit is not None:
        mask = mask & (t < example_limit)
    return order_N[start + slot].reshape(shape), mask.reshape(shape)


def round_batch_plan(
    key,
    data: ClientData,
    client_ids_C,
    *,
    num_steps,
    batch_size,
    epochs=None,
    slots_C=None,
    offset=0,
    batch_in_use=None,
):
    """`client_batch_plan` for every sampled client: ``([C, J, B] indices, [C, J, B] mask)``.

    Client c's key is ``fold_in(key, slots_C[c])`` (default: its id), so that a client drawn
    twice in a round can get two slots and two independent plans. ``offset`` is the clients'
    stream position, one for all or ``[C]`` (0: a fresh round; workers continuing their passes
    give theirs); ``batch_in_use`` as in `client_batch_plan`.
    """
    slots_C = client_ids_C if slots_C is None else slots_C
    offsets_C = jnp.broadcast_to(jnp.asarray(offset, jnp.int32), jnp.shape(client_ids_C))

    def plan(client_id, slot, offset):
        count = data.counts_K[client_id]
        limit = None if epochs is None else epochs * count
        return client_batch_plan(
            jax.random.fold_in(key, slot),
            data.order_N,
            data.offsets_K[client_id],
            count,
            num_steps=num_steps,
            batch_size=batch_size,
            offset=offset,
            example_limit=limit,
            batch_in_use=batch_in_use,
        )

    return jax.vmap(plan)(client_ids_C, slots_C, offsets_C)


def gather_batch(data: ClientData, indices, mask):
    """The examples at ``indices`` as a batch dict with the ``mask`` alongside."""
    batch = {name: array[indices] for name, array in data.examples.items()}
    batch["mask"] = mask
    return batch
