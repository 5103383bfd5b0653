"""CIFAR-100: host-side loaders, on-device normalization and augmentation, federated builder.

`load_cifar100` reads the official archives of https://www.cs.toronto.edu/~kriz/cifar.html, either
the ``.tar.gz`` itself (read in place, no extraction) or its extracted folder, or the
tensorflow-datasets ``cifar100`` build. Images come back as uint8 ``[N, 32, 32, 3]`` (NHWC, RGB).
`normalize_images` and `augment_batch` are pure JAX, so they run inside the compiled round.

Shape letters: B examples, H height, W width, D channels.

Example:
  arrays = load_cifar100("/data/cifar100", download=True)
  dataset = make_federated_cifar100(arrays, partition="dirichlet", num_clients=100, alpha=0.1,
                                    classes_per_client=None, seed=0)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_sim.data import partition as partition_lib
from fedjax_sim.data.dataset import DataError, FederatedDataset

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
_SPLITS = ("train", "test")
IMAGE_SIDE = 32
_RECORD_BYTES = 2 + 3 * IMAGE_SIDE**2  # coarse label, fine label, R, G and B planes of 32x32


@dataclasses.dataclass(frozen=True)
class Archive:
    """One official CIFAR-100 archive: where to get it and the folder it unpacks to."""

    url: str
    md5: str
    folder: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


# md5 of the python archive as in torchvision's datasets/cifar.py; of the binary archive as in the
# md5sums of the Mila datalad mirror (github.com/datasets-mila/datasets--cifar100).
ARCHIVES = {
    "python": Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
    ),
    "binary": Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
        "cifar-100-binary",
    ),
}


def load_cifar100(data_dir: str, *, source: str = "auto", download: bool = False) -> dict:
    """Loads CIFAR-100 train and test splits into host memory.

    Args:
      data_dir: folder holding ``cifar-100-python.tar.gz`` or ``cifar-100-python/`` (or the
        ``-binary`` equivalents); for ``source="tfds"``, the tensorflow-datasets data dir.
      source: ``"python"``, ``"binary"``, ``"tfds"`` or ``"auto"`` (python, then binary).
      download: fetch the official archive (python for ``"auto"``) when it is missing, and verify
        its md5. Never happens unless asked.

    Returns:
      ``{"train": split, "test": split, "label_names": [100 fine label names]}`` where each split
      is ``{"x": uint8 [N, 32, 32, 3], "y": int32 [N] fine labels, "y_coarse": int32 [N]}``.

    Raises:
      DataError: the data is missing, malformed or fails its checksum (one-line message).
    """
    if source == "tfds":
        return _load_tfds(data_dir, download)
    if source not in ("auto", "python", "binary"):
        raise DataError(
            f"data.source must be one of 'auto', 'python', 'binary', 'tfds', got {source!r}"
        )
    kinds = ["python", "binary"] if source == "auto" else [source]
    for kind in kinds:
        path = _find(data_dir, ARCHIVES[kind])
        if path is not None:
            return _load_official(kind, path)
    if download:
        archive = ARCHIVES[kinds[0]]
        os.makedirs(data_dir, exist_ok=True)
        path = os.path.join(data_dir, archive.filename)
        download_file(archive.url, path, archive.md5)
        return _load_official(kinds[0], path)
    expected = [os.path.join(data_dir, ARCHIVES[k].filename) for k in kinds]
    expected += [os.path.join(data_dir, ARCHIVES[k].folder) for k in kinds]
    raise DataError(
        f"CIFAR-100 not found: expected one of {', '.join(expected)}; pass "
        f"--config.data.download=True to fetch {ARCHIVES[kinds[0]].url}, or place the archive at "
        f"{expected[0]}"
    )


def download_file(url: str, path: str, md5: str) -> None:
    """Downloads ``url`` to ``path`` atomically, verifying its md5; raises `DataError` if bad."""
    fd, tmp = tempfile.mkstemp(
        prefix=os.path.basename(path) + ".", suffix=".part", dir=os.path.dirname(path) or "."
    )
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(
                f"checksum mismatch for {url}: md5 {digest.hexdigest()}, expected {md5}; "
                "the partial download was deleted, try again"
            )
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"could not download {url} to {path}: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _find(data_dir: str, archive: Archive) -> str | None:
    for path in (os.path.join(data_dir, archive.folder), os.path.join(data_dir, archive.filename)):
        if os.path.exists(path):
            return path
    return None


def _read_members(path: str, folder: str, names: list[str]) -> dict[str, bytes]:
    """The bytes of files ``names`` of an archive (one pass, no extraction) or of its folder."""
    if os.path.isdir(path):
        out = {}
        for name in names:
            member = os.path.join(path, name)
            if not os.path.isfile(member):
                raise DataError(f"malformed CIFAR-100 folder: {member} is missing")
            with open(member, "rb") as f:
                out[name] = f.read()
        return out
    wanted = {f"{folder}/{name}": name for name in names}
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is not None and member.isfile():
                    out[name] = tar.extractfile(member).read()
    except (OSError, EOFError, tarfile.TarError) as e:
        raise DataError(f"cannot read CIFAR-100 archive {path}: {e!r}") from e
    missing = [f"{folder}/{name}" for name in names if name not in out]
    if missing:
        raise DataError(f"malformed CIFAR-100 archive {path}: missing {', '.join(missing)}")
    return out


def _load_official(kind: str, path: str) -> dict:
    folder = ARCHIVES[kind].folder
    if kind == "python":
        raw = _read_members(path, folder, ["train", "test", "meta"])
        splits = {split: _parse_pickle(raw[split], f"{path}:{split}") for split in _SPLITS}
        meta = _unpickle(raw["meta"], f"{path}:meta")
        names = [n.decode() for n in meta.get(b"fine_label_names", [])]
    else:
        raw = _read_members(path, folder, ["train.bin", "test.bin", "fine_label_names.txt"])
        splits = {
            split: _parse_records(raw[f"{split}.bin"], f"{path}:{split}.bin") for split in _SPLITS
        }
        names = raw["fine_label_names.txt"].decode().split()
    if len(names) != 100:
        raise DataError(f"malformed CIFAR-100 at {path}: {len(names)} fine label names, not 100")
    return {**splits, "label_names": names}


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        d = pickle.load(io.BytesIO(raw), encoding="bytes")
    except Exception as e:  # any unpickling failure means a corrupt file
        raise DataError(f"malformed CIFAR-100 pickle {where}: {e!r}") from e
    if not isinstance(d, dict):
        raise DataError(f"malformed CIFAR-100 pickle {where}: a {type(d).__name__}, not a dict")
    return d


def _parse_pickle(raw: bytes, where: str) -> dict:
    d = _unpickle(raw, where)
    if not {b"data", b"fine_labels", b"coarse_labels"} <= d.keys():
        raise DataError(f"malformed CIFAR-100 pickle {where}: keys {list(d)}")
    data = np.asarray(d[b"data"], np.uint8)
    return _split(data.reshape(len(data), -1), d[b"fine_labels"], d[b"coarse_labels"], where)


def _parse_records(raw: bytes, where: str) -> dict:
    if len(raw) % _RECORD_BYTES:
        raise DataError(
            f"malformed CIFAR-100 binary {where}: {len(raw)} bytes is not a multiple "
            f"of the {_RECORD_BYTES}-byte record"
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, _RECORD_BYTES)
    return _split(records[:, 2:], records[:, 1], records[:, 0], where)


def _split(data: np.ndarray, fine, coarse, where: str) -> dict:
    """Checks one split and turns its ``[N, 3072]`` rows of R, G, B planes into NHWC images."""
    y, y_coarse = np.asarray(fine, np.int32), np.asarray(coarse, np.int32)
    if data.shape[1] != 3072 or not len(data) == len(y) == len(y_coarse):
        raise DataError(
            f"malformed CIFAR-100 {where}: images {data.shape}, {len(y)} fine and "
            f"{len(y_coarse)} coarse labels"
        )
    if len(y) and (min(y.min(), y_coarse.min()) < 0 or y.max() >= 100 or y_coarse.max() >= 20):
        raise DataError(f"malformed CIFAR-100 {where}: labels out of range")
    x = np.ascontiguousarray(data.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1))
    return {"x": x, "y": y, "y_coarse": y_coarse}


def _load_tfds(data_dir: str, download: bool) -> dict:
    try:
        import tensorflow_datasets as tfds  # optional extra, imported only when asked for
    except ImportError as e:
        raise DataError(
            "data.source='tfds' needs tensorflow-datasets: pip install 'fedjax-sim[tfds]'"
        ) from e
    builder = tfds.builder("cifar100", data_dir=data_dir)
    try:
        if download:
            builder.download_and_prepare()
        out = {}
        for split in _SPLITS:
            arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
            out[split] = {
                "x": np.asarray(arrays["image"], np.uint8),
                "y": np.asarray(arrays["label"], np.int32),
                "y_coarse": np.asarray(arrays["coarse_label"], np.int32),
            }
    except Exception as e:  # tfds raises assorted types for missing data
        msg = str(e).replace("\n", " ")
        raise DataError(
            f"tfds cifar100 not available in {data_dir} ({msg}); pass "
            "--config.data.download=True to prepare it"
        ) from e
    return {**out, "label_names": list(builder.info.features["label"].names)}


def normalize_images(x_uint8: jax.Array) -> jax.Array:
    """Maps uint8 ``[..., 3]`` RGB images to float32 standardized with the CIFAR-100 statistics."""
    mean = jnp.asarray(CIFAR100_MEAN, jnp.float32)
    std = jnp.asarray(CIFAR100_STD, jnp.float32)
    return (jnp.asarray(x_uint8).astype(jnp.float32) / 255.0 - mean) / std


def sample_augmentation(rng: jax.Array, batch_size: int, *, pad: int = 4):
    """Draws the per-example crop offsets ``[B, 2]`` in ``[0, 2 * pad]`` and flips ``[B]``."""
    offset_rng, flip_rng = jax.random.split(rng)
    offsets_Bx2 = jax.random.randint(offset_rng, (batch_size, 2), 0, 2 * pad + 1)
    flip_B = jax.random.bernoulli(flip_rng, 0.5, (batch_size,))
    return offsets_Bx2, flip_B


def crop_and_flip(
    x_BxHxWxD: jax.Array, offsets_Bx2: jax.Array, flip_B: jax.Array, *, pad: int = 4
) -> jax.Array:
    """Crops each zero-padded image at its ``(row, col)`` offset, then mirrors it if flipped.

    Padding is with zeros of the input's own scale: on standardized images that is the mean colour.
    One gather, no loop over examples, so it jits and vmaps.
    """
    _, h, w, _ = x_BxHxWxD.shape
    x_pad = jnp.pad(x_BxHxWxD, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows_BxH = offsets_Bx2[:, :1] + jnp.arange(h)
    cols = jnp.arange(w)
    # Mirroring the crop reads its column w-1-j into column j.
    cols_BxW = offsets_Bx2[:, 1:] + jnp.where(flip_B[:, None], w - 1 - cols, cols)
    batch = jnp.arange(x_BxHxWxD.shape[0])[:, None, None]
    return x_pad[batch, rows_BxH[:, :, None], cols_BxW[:, None, :]]


def augment_batch(rng: jax.Array, x_BxHxWxD: jax.Array, *, pad: int = 4) -> jax.Array:
    """Random ``pad``-pixel-translation crop and horizontal flip, drawn per example.

    Example:
      x = augment_batch(jax.random.key(0), normalize_images(batch["x"]))
    """
    offsets_Bx2, flip_B = sample_augmentation(rng, x_BxHxWxD.shape[0], pad=pad)
    return crop_and_flip(x_BxHxWxD, offsets_Bx2, flip_B, pad=pad)


def make_federated_cifar100(
    arrays: dict,
    *,
    partition: str,
    num_clients: int,
    alpha: float | None,
    classes_per_client: int | None,
    seed: int,
) -> FederatedDataset:
    """Partitions the training split of `load_cifar100` output into ``num_clients`` clients.

    Args:
      arrays: output of `load_cifar100`.
      partition, num_clients, alpha, classes_per_client, seed: as in
        `fedjax_sim.data.partition.partition_labels`.

    Returns:
      A `FederatedDataset` named ``"cifar100"`` with uint8 images and fine labels, the central
      test set, and no per-client test split.
    """
    y = np.asarray(arrays["train"]["y"], np.int32)
    indices = partition_lib.partition_labels(
        y,
        partition=partition,
        num_clients=num_clients,
        alpha=alpha,
        classes_per_client=classes_per_client,
        seed=seed,
        num_classes=100,
    )
    width = len(str(num_clients - 1))
    return FederatedDataset(
        name="cifar100",
        train={"x": arrays["train"]["x"], "y": y},
        test={"x": arrays["test"]["x"], "y": np.asarray(arrays["test"]["y"], np.int32)},
        train_client_indices=tuple(indices),
        test_client_indices=None,
        client_ids=tuple(f"client_{k:0{width}d}" for k in range(num_clients)),
        num_classes=100,
    )
