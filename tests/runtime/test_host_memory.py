"""What the CLI does for memory: one device evaluates (not every device of a client mesh), the
eager init's compiled ops are dropped before the round compiles, the heap is trimmed after each
compilation, and the LSTM's malloc arenas are capped. Each runs in a fresh process (2 host
devices, or caches, heap, listeners and arenas the test may change)."""

import textwrap

from tests.host_devices import run_script, run_with_host_devices


def test_evaluation_runs_on_one_device_when_parameters_are_replicated():
    run_with_host_devices(
        textwrap.dedent("""
        import jax, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        from fedjax_sim.core.tasks import make_task
        from fedjax_sim.runtime.evaluation import make_evaluator, on_one_device

        assert jax.device_count() == 2, jax.devices()
        task = make_task("lstm", 7, seq_len=5, hidden=4)
        variables = task.model.init(jax.random.key(0))
        mesh = Mesh(np.array(jax.devices()), ("clients",))
        replicated = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))
        assert all(len(a.devices()) == 2 for a in jax.tree.leaves(replicated))
        assert all(len(a.devices()) == 1 for a in jax.tree.leaves(on_one_device(replicated)))
        rng = np.random.default_rng(0)
        examples = {"x": rng.integers(0, 7, (9, 5)).astype(np.uint8),
                    "y": rng.integers(0, 7, 9).astype(np.int32)}
        evaluate = make_evaluator(task, batch_size=4)
        for a, b in zip(evaluate(replicated, examples), evaluate(variables, examples)):
            np.testing.assert_array_equal(a, b)
        print("OK")
        """),
        2,
    )


def test_release_init_memory_frees_the_eager_init_and_changes_no_result():
    run_with_host_devices(
        textwrap.dedent("""
        import jax, numpy as np
        from fedjax_sim.core.tasks import make_task
        from fedjax_sim.runtime.host_memory import release_init_memory

        def resident_mb():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

        task = make_task("lstm", 80)
        variables = task.model.init(jax.random.key(0))  # op by op: dozens of small programs
        forward = jax.jit(lambda v, x: task.model.apply(v, x)[0])
        x = np.zeros((2, 80), np.int32)
        before = np.asarray(forward(variables, x))
        held = resident_mb()
        assert release_init_memory()  # glibc (Linux): the heap was trimmed
        freed = held - resident_mb()
        assert freed > 20, f"only {freed:.0f} MB freed"
        np.testing.assert_array_equal(np.asarray(forward(variables, x)), before)  # recompiled
        print("OK")
        """),
        1,
    )


_COMPILE_GROWTH = textwrap.dedent("""
    import sys, jax, numpy as np, jax.numpy as jnp
    from fedjax_sim.core.tasks import make_task
    from fedjax_sim.runtime import host_memory

    def resident_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

    task = make_task("lstm", 80)
    variables = task.model.init(jax.random.key(0))
    host_memory.release_init_memory()
    if sys.argv[1] == "trim":
        host_memory.trim_after_each_compile()
        host_memory.trim_after_each_compile()  # idempotent: one listener
    trims = []
    trim = host_memory._malloc_trim
    host_memory._malloc_trim = lambda: trims.append(1) or trim()
    x = np.zeros((4, 80), np.int32)

    def local_steps(params):
        def loss(params):
            return jnp.mean(task.model.apply({**variables, "params": params}, x)[0])
        def step(params, _):
            grads = jax.grad(loss)(params)
            return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), None
        return jax.lax.scan(step, params, None, length=2)[0]

    before = resident_mb()
    jax.jit(local_steps).lower(variables["params"]).compile()
    print(len(trims), resident_mb() - before)
""")


def _compile_growth(mode: str) -> tuple[int, float]:
    """(trims, MB the process grew by) over one compilation of two LSTM steps."""
    trims, grown = run_script(_COMPILE_GROWTH, mode).split()
    return int(trims), float(grown)


def test_trim_after_each_compile_hands_back_what_the_compiler_freed():
    trims, grown = _compile_growth("trim")
    untrimmed_trims, untrimmed_grown = _compile_growth("none")
    assert (trims, untrimmed_trims) == (1, 0)  # one compilation, one trim; none without
    # ~10 MB against ~75 MB measured: the compiler's freed heap stays otherwise
    assert grown < untrimmed_grown / 2, (grown, untrimmed_grown)


_ARENAS = textwrap.dedent("""
    import ctypes, sys, threading
    from fedjax_sim.runtime.host_memory import limit_malloc_arenas

    if sys.argv[1] == "cap":
        assert limit_malloc_arenas(2)
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    together = threading.Barrier(6)

    def allocate():
        block = libc.malloc(4096)
        together.wait()  # six threads alive, each holding a block: each wants an arena
        libc.free(block)

    threads = [threading.Thread(target=allocate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    text, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    stream = libc.open_memstream(ctypes.byref(text), ctypes.byref(size))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(text.value.decode().count("<heap nr="))
""")


def _arenas(mode: str) -> int:
    return int(run_script(_ARENAS, mode))


def test_limit_malloc_arenas_caps_the_arenas_of_later_threads():
    assert _arenas("cap") == 2
    assert _arenas("none") > 2  # glibc's default: an arena per thread, up to 8 per core
