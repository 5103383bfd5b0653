"""The ViT against a NumPy forward pass written from the paper's equations, its parameter count
from a formula, and its patches and config checks by hand."""

import jax
import numpy as np
import pytest

from fedjax_sim.models import registry
from fedjax_sim.models.vit import make_vit, patches

SMALL = dict(patch=4, depth=2, width=8, heads=2, mlp_ratio=2, image_shape=(8, 8, 3))


def layer_norm(x, p, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def gelu(x):  # flax's default: the tanh approximation
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def attention(x_TxD, p):
    q, k, v = (np.einsum("td,dhk->htk", x_TxD, p[n]["kernel"]) + p[n]["bias"][:, None]
               for n in ("query", "key", "value"))  # fmt: skip
    logits = np.einsum("htk,hsk->hts", q, k) / np.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    heads = np.einsum("hts,hsk->htk", weights, v)
    return np.einsum("htk,hkd->td", heads, p["out"]["kernel"]) + p["out"]["bias"]


def numpy_vit(params, image_HxWxC, patch):
    h, w, c = image_HxWxC.shape
    tokens = [image_HxWxC[i : i + patch, j : j + patch].reshape(-1)
              for i in range(0, h, patch) for j in range(0, w, patch)]  # fmt: skip
    embed = params["patch_embedding"]
    x = np.stack(tokens) @ embed["kernel"] + embed["bias"]
    x = np.concatenate([params["cls"][0], x]) + params["positions"][0]
    for i in range(SMALL["depth"]):
        block = params[f"block_{i}"]
        x = x + attention(
            layer_norm(x, block["LayerNorm_0"]), block["MultiHeadDotProductAttention_0"]
        )
        y = gelu(
            layer_norm(x, block["LayerNorm_1"]) @ block["Dense_0"]["kernel"]
            + block["Dense_0"]["bias"]
        )
        x = x + y @ block["Dense_1"]["kernel"] + block["Dense_1"]["bias"]
    return (
        layer_norm(x, params["LayerNorm_0"])[0] @ params["head"]["kernel"] + params["head"]["bias"]
    )


def test_forward_pass_equals_the_papers_equations_in_numpy():
    model = make_vit(5, **SMALL)
    variables = model.init(jax.random.key(0))
    # every variable random, so zero-initialized biases and the class token count too
    leaves, treedef = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(
        treedef, [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )
    images = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    logits, state = model.apply({"params": params, "state": {}}, images)
    assert state == {}
    numpy_params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    expected = np.stack([numpy_vit(numpy_params, image.astype(np.float64), 4) for image in images])
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4)


def test_parameter_count_follows_the_formula():
    p, depth, d, r, k, c = 4, 3, 16, 2, 10, 3
    model = make_vit(
        k, patch=p, depth=depth, width=d, heads=4, mlp_ratio=r, image_shape=(16, 16, c)
    )
    tokens = (16 // p) ** 2 + 1
    per_block = 4 * d + 4 * (d * d + d) + (d * r * d + r * d) + (r * d * d + d)
    expected = (p * p * c * d + d) + d + tokens * d + depth * per_block + 2 * d + (d * k + k)
    params = model.init(jax.random.key(0))["params"]
    assert sum(x.size for x in jax.tree.leaves(params)) == expected


def test_patches_are_row_major_and_flattened_hwc():
    x = np.arange(2 * 8 * 12 * 3, dtype=np.float32).reshape(2, 8, 12, 3)
    got = np.asarray(patches(x, 4))
    assert got.shape == (2, 6, 48)
    np.testing.assert_array_equal(got[1, 4], x[1, 4:8, 4:8].reshape(-1))  # row 1, column 1
    np.testing.assert_array_equal(got[0, 2], x[0, 0:4, 8:12].reshape(-1))


def test_registry_builds_it_from_the_config_fields():
    fields = {"patch": 2, "depth": 1, "width": 12, "heads": 3, "mlp_ratio": 1, "norm": "group",
              "image_shape": (4, 4, 1)}  # fmt: skip
    model = registry.build("vit", 7, fields)
    params = model.init(jax.random.key(0))["params"]
    assert params["positions"].shape == (1, 5, 12) and params["head"]["kernel"].shape == (12, 7)
    assert "depth" not in registry.fields_of("resnet20")  # the registry binds a ResNet's depth
    with pytest.raises(ValueError, match="model.patch must divide"):
        make_vit(10, patch=3, image_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="model.width must be a multiple of model.heads=3"):
        make_vit(10, width=16, heads=3)
