"""Shared fixtures, built once per session so that data and compiled functions are reused.

The tiny task is a 2-layer MLP on 6 float features with 3 classes; its ``prepare`` is the
identity, so training does not depend on the rng and plain reference loops can reproduce it.
``ref_loss`` and ``ref_sgd`` are those references: written out by hand (log-softmax, explicit
SGD with heavy-ball momentum), they share no code with `fedjax_sim.core.local`.
"""

import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.core.tasks import Task, make_task
from fedjax_sim.data.client_data import client_data_from_indices
from fedjax_sim.models.model import stateless

NUM_FEATURES, NUM_HIDDEN, NUM_CLASSES = 6, 5, 3


def pytest_configure(config):
    """Each test process keeps what it compiles in its own persistent XLA cache, so a program
    built again (a resumed run, the same seed twice, a config shared by several tests) loads
    instead of compiling. Its own: the cache writes without a lock. Subprocesses (the CLI,
    notebooks, multi-process runs) compile on their own."""
    cache_dir = tempfile.mkdtemp(prefix="fedjax-sim-tests-xla-")
    config.add_cleanup(lambda: shutil.rmtree(cache_dir, ignore_errors=True))
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_collection_modifyitems(items):
    """The tests under tests/e2e/ (the CLI, the docs, the notebooks, packaging, every
    algorithm's resume) are marked ``e2e``: ``pytest -m "not e2e"`` runs the unit tests, which
    mirror the packages (tests/core/, tests/algorithms/, ...)."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)


# Client sizes of the tiny population: one client smaller than any batch, and an empty one (as
# padding would add) last, so that dropping it keeps the other clients' ids.
TINY_SIZES = (7, 3, 1, 5, 4, 0)


def _mlp_init(rng):
    k1, k2, k3 = jax.random.split(rng, 3)
    return {
        "w1": jax.random.normal(k1, (NUM_FEATURES, NUM_HIDDEN)) / np.sqrt(NUM_FEATURES),
        "b1": 0.1 * jax.random.normal(k3, (NUM_HIDDEN,)),
        "w2": jax.random.normal(k2, (NUM_HIDDEN, NUM_CLASSES)) / np.sqrt(NUM_HIDDEN),
        "b2": jnp.zeros((NUM_CLASSES,)),
    }


def _mlp_apply(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


@pytest.fixture(scope="session")
def mlp_task() -> Task:
    model = stateless(_mlp_init, _mlp_apply, (NUM_FEATURES,), "mlp")
    return Task(model=model, prepare=lambda x, rng: x, num_classes=NUM_CLASSES)


@pytest.fixture(scope="session")
def trace_counting():
    """``trace_counting(task) -> (task, traces)``: the returned task's model appends to the list
    ``traces`` each time JAX traces it, so tests can assert how often a round compiles."""

    def wrap(task: Task):
        traces = []

        def counting_apply(variables_, x, **kwargs):
            traces.append(1)
            return task.model.apply(variables_, x, **kwargs)

        return task._replace(model=task.model._replace(apply=counting_apply)), traces

    return wrap


@pytest.fixture(scope="session")
def mlp_variables(mlp_task):
    return jax.jit(mlp_task.model.init)(jax.random.key(0))


@pytest.fixture(scope="session")
def mlp_params(mlp_variables):
    return mlp_variables["params"]


@pytest.fixture(scope="session")
def tiny_examples():
    """``{"x": [24, 6] float32, "y": [24] int32}`` host arrays."""
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(24, NUM_FEATURES)).astype(np.float32),
        "y": rng.integers(0, NUM_CLASSES, size=24).astype(np.int32),
    }


def _split_indices(num_examples, sizes, seed=0):
    """Disjoint, shuffled index arrays of the given sizes."""
    order = np.random.default_rng(seed).permutation(num_examples)
    bounds = np.cumsum((0, *sizes))
    return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.fixture(scope="session")
def tiny_client_indices(tiny_examples):
    return _split_indices(len(tiny_examples["y"]), TINY_SIZES)


@pytest.fixture(scope="session")
def tiny_clients(tiny_examples, tiny_client_indices):
    """Six clients of sizes `TINY_SIZES` over `tiny_examples`."""
    return client_data_from_indices(tiny_examples, tiny_client_indices)


@pytest.fixture(scope="session")
def cnn_task() -> Task:
    """The course CNN for CIFAR-100, with augmentation."""
    return make_task("cnn", 100)


@pytest.fixture(scope="session")
def cnn_params(cnn_task):
    # jitted: eager init is 2x slower
    return jax.jit(cnn_task.model.init)(jax.random.key(0))["params"]


@pytest.fixture(scope="session")
def small_lstm_task() -> Task:
    """The Shakespeare LSTM with 16 instead of 256 units, for speed."""
    return make_task("lstm", 80, hidden=16)


@pytest.fixture(scope="session")
def small_lstm_params(small_lstm_task):
    return jax.jit(small_lstm_task.model.init)(jax.random.key(0))["params"]


@pytest.fixture(scope="session")
def ref_loss():
    """``loss(params, x, y, mask) -> (mean, sum)`` of the tiny MLP's masked cross-entropy."""

    def loss(params, x, y, mask):
        logits = _mlp_apply(params, x)
        log_probs = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
        nll = -log_probs[jnp.arange(len(y)), y]
        mask = mask.astype(nll.dtype)
        return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0), jnp.sum(nll * mask)

    return loss


@pytest.fixture(scope="session")
def ref_sgd(ref_loss):
    """``sgd(params, batches, lr, momentum=0.0) -> (params, trace, loss_sum, count)``.

    ``batches`` is a list of ``(x, y, mask)``; a fully masked batch is skipped (no step at all);
    the momentum trace follows ``m = g + momentum * m``, ``p = p - lr * m`` (optax's convention).
    ``loss_sum`` and ``count`` add the masked losses at the parameters before each step.
    """
    grad_fn = jax.jit(jax.value_and_grad(ref_loss, has_aux=True))

    def sgd(params, batches, lr, momentum=0.0):
        trace = jax.tree.map(jnp.zeros_like, params)
        loss_sum, count = 0.0, 0
        for x, y, mask in batches:
            if not np.any(mask):
                continue
            (_, batch_loss_sum), grads = grad_fn(params, x, y, mask)
            loss_sum += float(batch_loss_sum)
            count += int(np.sum(mask))
            trace = jax.tree.map(lambda g, m: g + momentum * m, grads, trace)
            params = jax.tree.map(lambda p, m: p - lr * m, params, trace)
        return params, trace, loss_sum, count

    return sgd


@pytest.fixture(scope="session")
def gather_host():
    """``gather(clients, indices_JxB, mask_JxB) -> [(x, y, mask)] * J`` from host copies."""

    def gather(clients, indices_JxB, mask_JxB):
        x, y = np.asarray(clients.examples["x"]), np.asarray(clients.examples["y"])
        indices_JxB, mask_JxB = np.asarray(indices_JxB), np.asarray(mask_JxB)
        return [(x[i], y[i], m) for i, m in zip(indices_JxB, mask_JxB, strict=True)]

    return gather


@pytest.fixture(scope="session")
def shakespeare_cache(tmp_path_factory):
    """One Shakespeare build cache for the session, so the corpus is parsed once."""
    return str(tmp_path_factory.mktemp("shakespeare_cache"))
