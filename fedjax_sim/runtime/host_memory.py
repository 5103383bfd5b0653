"""Hands back to the operating system the host memory that eager model initialization and XLA's
compilations leave.

Flax initializes a model op by op, outside `jax.jit`: JAX compiles each distinct op into an
executable of its own and caches it. For LEAF's LSTM that is a large share of the process's
resident set before the round is even compiled, and it stays for the whole run; the round's
compilation then grows the heap further instead of reusing it. `release_init_memory` drops
those cached executables and returns the freed heap pages, so the compilation that follows
starts from a smaller process (docs/performance.md, Memory, has the measurements).

Only the caches go: the arrays already made (parameters, data) are untouched, and every result
is the same, bit for bit (a later call of an evicted function compiles it again).

A compilation itself leaves hundreds of MB of freed heap on a large round (the LSTM's), spread
over its threads' malloc arenas, where the round's own buffers, allocated from other threads,
do not reuse it: the first execution then grows the process further. `trim_after_each_compile`
returns that memory as soon as each compilation ends, before the executable first runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

import jax
import jax.monitoring

# JAX records this duration when XLA has compiled a program, before it runs
# (jax._src.dispatch.BACKEND_COMPILE_EVENT, recorded by `jit`, `lower().compile()` and eager ops).
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@functools.cache
def _glibc():
    """The C library where it is glibc (with ``malloc_trim`` and ``mallopt``), else None (macOS,
    musl). Looked up once: `ctypes.util.find_library` starts a subprocess."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        trim, option = libc.malloc_trim, libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    option.argtypes, option.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


def _malloc_trim() -> bool:
    """``malloc_trim(0)``: returns free heap pages to the OS; False without glibc, where freed
    memory simply stays with the process."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
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


def _trim_if_compiled(event: str, duration_secs: float, **metadata) -> None:
    del duration_secs, metadata
    if event == _COMPILE_EVENT:
        _malloc_trim()


@functools.cache  # registers once a process: later calls do nothing
def trim_after_each_compile() -> None:
    """From now on, trims the C heap each time XLA finishes compiling a program, before it runs.

    Process-wide and idempotent (one JAX monitoring listener); results are unchanged, each
    compilation takes the trim's few milliseconds longer. Where there is no ``malloc_trim``
    (macOS, musl) it does nothing.
    """
    jax.monitoring.register_event_duration_secs_listener(_trim_if_compiled)


_M_ARENA_MAX = -8  # glibc's mallopt parameter: the most malloc arenas the process may create


def limit_malloc_arenas(count: int) -> bool:
    """Caps glibc's malloc arenas at ``count`` for the rest of the process.

    glibc gives threads arenas of their own, up to 8 per core; memory freed in one arena is not
    reused by a thread of another. Call it before JAX's backend starts its threads (arenas made
    earlier stay). Results are unchanged.

    Returns:
      Whether the cap was set (False where there is no glibc ``mallopt``).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    libc = _glibc()
    return libc is not None and libc.mallopt(_M_ARENA_MAX, count) == 1
