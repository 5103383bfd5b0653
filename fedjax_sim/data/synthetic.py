"""Synthetic CIFAR-shaped images for smoke runs and benchmarks where CIFAR-100 is not on disk.

Each class has its own mean color pattern plus noise, so a model can learn something; the arrays
have exactly the layout `fedjax_sim.data.cifar100.load_cifar100` returns.
"""

from __future__ import annotations

import numpy as np


def synthetic_images(
    num_train: int, num_test: int, *, num_classes: int = 100, seed: int = 0, image_shape=(32, 32, 3)
) -> dict:
    """``{"train": {"x", "y"}, "test": {"x", "y"}, "label_names"}`` with uint8 NHWC images."""
    rng = np.random.default_rng(seed)
    class_means = rng.uniform(40, 215, (num_classes, *image_shape))

    def split(n):
        y = rng.integers(0, num_classes, n).astype(np.int32)
        x = class_means[y] + rng.normal(0, 40, (n, *image_shape))
        return {"x": np.clip(x, 0, 255).astype(np.uint8), "y": y}

    return {
        "train": split(num_train),
        "test": split(num_test),
        "label_names": [f"class_{c}" for c in range(num_classes)],
    }
