"""CIFAR-100 loaders on tiny archives in the official formats, download, augmentation."""

import hashlib
import io
import os
import pickle
import sys
import tarfile
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_sim.data import cifar100
from fedjax_sim.data.dataset import DataError, FederatedDataset

NAMES = [f"class_{c:02d}" for c in range(100)]


def _raw_split(n, seed):
    """Official row layout: [N, 3072] uint8, the R, G, B planes of 32x32 one after the other."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[0] = 0
    data[0, 0 * 1024 + 0 * 32 + 1] = 255  # R at (row 0, col 1)
    data[0, 1 * 1024 + 2 * 32 + 3] = 7  # G at (row 2, col 3)
    data[0, 2 * 1024 + 31 * 32 + 0] = 9  # B at (row 31, col 0)
    return {
        "data": data,
        "fine": rng.integers(0, 100, n).tolist(),
        "coarse": rng.integers(0, 20, n).tolist(),
    }


SPLITS = {"train": _raw_split(10, 0), "test": _raw_split(5, 1)}


def _python_files():
    files = {
        split: pickle.dumps(
            {
                b"filenames": [b"img_%d.png" % i for i in range(len(raw["fine"]))],
                b"batch_label": split.encode(),
                b"fine_labels": raw["fine"],
                b"coarse_labels": raw["coarse"],
                b"data": raw["data"],
            },
            protocol=2,
        )
        for split, raw in SPLITS.items()
    }
    files["meta"] = pickle.dumps(
        {
            b"fine_label_names": [n.encode() for n in NAMES],
            b"coarse_label_names": [b"super_%d" % c for c in range(20)],
        },
        protocol=2,
    )
    return files


def _binary_files():
    files = {}
    for split, raw in SPLITS.items():
        labels = np.stack([raw["coarse"], raw["fine"]], axis=1).astype(np.uint8)
        files[f"{split}.bin"] = np.concatenate([labels, raw["data"]], axis=1).tobytes()
    files["fine_label_names.txt"] = ("\n".join(NAMES) + "\n").encode()
    files["coarse_label_names.txt"] = "\n".join(f"super_{c}" for c in range(20)).encode()
    return files


def _tar_gz(folder, files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _write(data_dir, kind, as_folder):
    folder = cifar100.ARCHIVES[kind].folder
    files = _python_files() if kind == "python" else _binary_files()
    if as_folder:
        os.makedirs(data_dir / folder)
        for name, content in files.items():
            (data_dir / folder / name).write_bytes(content)
    else:
        (data_dir / cifar100.ARCHIVES[kind].filename).write_bytes(_tar_gz(folder, files))


def _check_arrays(arrays):
    assert arrays["label_names"] == NAMES
    for split, raw in SPLITS.items():
        x = arrays[split]["x"]
        assert x.dtype == np.uint8 and x.shape == (len(raw["fine"]), 32, 32, 3)
        assert x[0, 0, 1, 0] == 255 and x[0, 2, 3, 1] == 7 and x[0, 31, 0, 2] == 9
        assert int(x[0].sum()) == 255 + 7 + 9
        planes = raw["data"].reshape(-1, 3, 32, 32)
        np.testing.assert_array_equal(x[1:, 4, 5, 2], planes[1:, 2, 4, 5])
        np.testing.assert_array_equal(x, planes.transpose(0, 2, 3, 1))
        assert arrays[split]["y"].dtype == np.int32
        np.testing.assert_array_equal(arrays[split]["y"], raw["fine"])
        np.testing.assert_array_equal(arrays[split]["y_coarse"], raw["coarse"])


@pytest.mark.parametrize("kind", ["python", "binary"])
@pytest.mark.parametrize("as_folder", [False, True], ids=["archive", "folder"])
def test_loads_official_formats(tmp_path, kind, as_folder):
    _write(tmp_path, kind, as_folder)
    _check_arrays(cifar100.load_cifar100(str(tmp_path)))
    _check_arrays(cifar100.load_cifar100(str(tmp_path), source=kind))


def test_truncated_binary_is_a_data_error(tmp_path):
    files = _binary_files()
    files["test.bin"] = files["test.bin"][:-1]
    (tmp_path / "cifar-100-binary.tar.gz").write_bytes(_tar_gz("cifar-100-binary", files))
    with pytest.raises(DataError, match="not a multiple of the 3074-byte record"):
        cifar100.load_cifar100(str(tmp_path))


def test_missing_data_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _fail_urlopen)
    with pytest.raises(DataError) as e:
        cifar100.load_cifar100(str(tmp_path / "nowhere"))
    message = str(e.value)
    assert "\n" not in message
    assert str(tmp_path / "nowhere" / "cifar-100-python.tar.gz") in message
    assert str(tmp_path / "nowhere" / "cifar-100-binary") in message
    assert "--config.data.download=True" in message


def _fail_urlopen(url, *args, **kwargs):
    raise AssertionError(f"unexpected download of {url}")


def _serve(monkeypatch, content):
    requested = []

    def urlopen(url, *args, **kwargs):
        requested.append(url)
        return io.BytesIO(content)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def test_download_verifies_and_places_archive(tmp_path, monkeypatch):
    archive = _tar_gz("cifar-100-python", _python_files())
    official = cifar100.ARCHIVES["python"]
    fake = cifar100.Archive(official.url, hashlib.md5(archive).hexdigest(), official.folder)
    monkeypatch.setitem(cifar100.ARCHIVES, "python", fake)
    requested = _serve(monkeypatch, archive)
    _check_arrays(cifar100.load_cifar100(str(tmp_path / "new"), download=True))
    assert requested == ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"]
    assert os.listdir(tmp_path / "new") == ["cifar-100-python.tar.gz"]
    # Present now: a second load reads it without downloading.
    monkeypatch.setattr(urllib.request, "urlopen", _fail_urlopen)
    _check_arrays(cifar100.load_cifar100(str(tmp_path / "new"), download=True))


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    _serve(monkeypatch, _tar_gz("cifar-100-python", _python_files()))
    with pytest.raises(DataError, match="checksum mismatch .* expected eb9058c3a382ffc7"):
        cifar100.load_cifar100(str(tmp_path), download=True)
    assert os.listdir(tmp_path) == []


def test_tfds_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match=r"pip install 'fedjax-sim\[tfds\]'"):
        cifar100.load_cifar100(str(tmp_path), source="tfds")


def test_normalize_images():
    x = jnp.array([[[[0, 255, 128]]]], jnp.uint8)
    out = jax.jit(cifar100.normalize_images)(x)
    assert out.dtype == jnp.float32 and out.shape == (1, 1, 1, 3)
    mean, std = np.array(cifar100.CIFAR100_MEAN), np.array(cifar100.CIFAR100_STD)
    expected = (np.array([0.0, 1.0, 128 / 255]) - mean) / std
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)
    assert cifar100.CIFAR100_MEAN == (0.5071, 0.4865, 0.4409)
    assert cifar100.CIFAR100_STD == (0.2673, 0.2564, 0.2762)


def _reference_crop_and_flip(x, offsets, flips, pad=4):
    _, h, w, _ = x.shape
    x_pad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.stack([x_pad[b, r : r + h, c : c + w] for b, (r, c) in enumerate(offsets)])
    return np.where(np.asarray(flips)[:, None, None, None], out[:, :, ::-1], out)


# Compiled once for all augmentation tests.
augment_batch = jax.jit(cifar100.augment_batch)
sample_augmentation = jax.jit(cifar100.sample_augmentation, static_argnums=1)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)


def test_crop_and_flip_explicit_offsets(images):
    offsets = np.array([[4, 4], [4, 4], [0, 0], [8, 8], [0, 8], [3, 5], [8, 0], [2, 2]])
    flips = np.array([False, True, False, False, True, True, False, True])
    out = np.asarray(jax.jit(cifar100.crop_and_flip)(images, offsets, flips))
    np.testing.assert_array_equal(out, _reference_crop_and_flip(images, offsets, flips))
    np.testing.assert_array_equal(out[0], images[0])  # centred, not flipped
    np.testing.assert_array_equal(out[1], images[1, :, ::-1])
    # Offset (0, 0) moves the image 4 pixels down and right, with zeros coming in.
    np.testing.assert_array_equal(out[2, 4:, 4:], images[2, :-4, :-4])
    assert not out[2, :4].any() and not out[2, :, :4].any()


def test_augment_batch_matches_reference(images):
    rng = jax.random.key(3)
    out = augment_batch(rng, images)
    assert out.shape == images.shape and out.dtype == images.dtype
    offsets, flips = sample_augmentation(rng, len(images))
    assert np.all((np.asarray(offsets) >= 0) & (np.asarray(offsets) <= 8))
    np.testing.assert_array_equal(out, _reference_crop_and_flip(images, offsets, flips))


def test_augment_batch_varies_and_vmaps(images):
    offsets, flips = sample_augmentation(jax.random.key(0), 256)
    assert len(np.unique(np.asarray(offsets), axis=0)) > 40
    assert 0.3 < np.asarray(flips).mean() < 0.7
    rngs = jax.random.split(jax.random.key(1), 2)
    x_CxBxHxWxD = np.stack([images, images[::-1]])
    out = jax.jit(jax.vmap(cifar100.augment_batch))(rngs, x_CxBxHxWxD)
    for c in range(2):
        np.testing.assert_array_equal(out[c], augment_batch(rngs[c], x_CxBxHxWxD[c]))


def _arrays(per_class=4):
    y = np.repeat(np.arange(100), per_class).astype(np.int32)
    x = np.zeros((len(y), 32, 32, 3), np.uint8)
    split = {"x": x, "y": y, "y_coarse": y // 5}
    return {"train": split, "test": {k: v[:7] for k, v in split.items()}, "label_names": NAMES}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"partition": "iid", "alpha": None, "classes_per_client": None},
        {"partition": "dirichlet", "alpha": 0.5, "classes_per_client": None},
        {"partition": "shards", "alpha": None, "classes_per_client": 2},
    ],
    ids=lambda kw: kw["partition"],
)
def test_make_federated_cifar100(kwargs):
    arrays = _arrays()
    dataset = cifar100.make_federated_cifar100(arrays, num_clients=50, seed=0, **kwargs)
    assert isinstance(dataset, FederatedDataset)
    assert (dataset.name, dataset.num_classes, dataset.num_clients) == ("cifar100", 100, 50)
    assert dataset.test_client_indices is None
    assert dataset.client_ids[:2] == ("client_00", "client_01")
    assert set(dataset.train) == {"x", "y"} and dataset.train["y"].dtype == np.int32
    assert len(dataset.test["y"]) == 7
    assert dataset.client_sizes().sum() == 400
    if kwargs["partition"] == "shards":
        for idx in dataset.train_client_indices:
            assert len(np.unique(arrays["train"]["y"][idx])) == 2


def test_make_federated_cifar100_rejects_unknown_partition():
    with pytest.raises(ValueError, match=r"data\.partition must be one of .*got 'pathological'"):
        cifar100.make_federated_cifar100(
            _arrays(),
            partition="pathological",
            num_clients=4,
            alpha=None,
            classes_per_client=None,
            seed=0,
        )
