"""What the CLI does for memory: one device evaluates (not every device of a client mesh), and
the eager init's compiled ops are dropped before the round compiles. Each runs in a fresh
process: one with 2 host devices, one whose caches and heap the test may clear."""

import textwrap

from tests.host_devices import run_with_host_devices


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
