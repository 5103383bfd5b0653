"""Hands back to the operating system the host memory that eager model initialization leaves.

Flax initializes a model op by op, outside `jax.jit`: JAX compiles each distinct op into an
executable of its own and caches it. For LEAF's LSTM that is a large share of the process's
resident set before the round is even compiled, and it stays for the whole run; the round's
compilation then grows the heap further instead of reusing it. `release_init_memory` drops
those cached executables and returns the freed heap pages, so the compilation that follows
starts from a smaller process (docs/performance.md, Memory, has the measurements).

Only the caches go: the arrays already made (parameters, data) are untouched, and every result
is the same, bit for bit (a later call of an evicted function compiles it again).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

import jax


def _malloc_trim() -> bool:
    """glibc's ``malloc_trim(0)``: returns free heap pages to the OS; False where there is none
    (macOS, musl), where freed memory simply stays with the process."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def release_init_memory() -> bool:
    """Clears JAX's compilation caches and trims the C heap; call it once the initial state is
    built and before the round compiles.

    Returns:
      Whether the heap was trimmed (glibc); the caches are cleared either way.
    """
    jax.clear_caches()
    gc.collect()  # the executables go when their Python owners do
    return _malloc_trim()
