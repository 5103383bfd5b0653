"""LEAF's 80-symbol character vocabulary and a reader for LEAF's own Shakespeare JSON files.

LEAF (github.com/TalwalkarLab/leaf) writes ``data/shakespeare/data/{train,test}/*.json``, each
``{"users": [...], "num_samples": [...], "user_data": {user: {"x": [80-char strings], "y":
[1-char strings]}}}``. `load_leaf_json` turns those into a `FederatedDataset` with the same layout
that `fedjax_sim.data.shakespeare.build_shakespeare` produces, so a model trained on either sees
identical index tensors.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from fedjax_sim.data.dataset import DataError, FederatedDataset

# LEAF's ALL_LETTERS (models/utils/language_utils.py), in LEAF's order: index i is symbol i.
LEAF_VOCABULARY = (
    "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
)
SEQUENCE_LENGTH = 80

# LEAF encodes with ``ALL_LETTERS.find(c)``, which gives -1 for a symbol outside the vocabulary;
# LEAF's ``letter_to_vec`` then sets one-hot position -1, and a NumPy/JAX embedding gather reads
# row -1: both land on the LAST symbol, index 79 ('}'). We store that index explicitly (uint8 has
# no -1). '}' never occurs in the play texts, so 79 acts as the unknown symbol; in the Gutenberg
# texts only '_', '{', '@', '*' and '/' (under 100 occurrences in all) reach it.
UNKNOWN_INDEX = len(LEAF_VOCABULARY) - 1
_TABLE = np.full(256, UNKNOWN_INDEX, dtype=np.uint8)
_TABLE[[ord(c) for c in LEAF_VOCABULARY]] = np.arange(len(LEAF_VOCABULARY), dtype=np.uint8)


def encode_text(text: str) -> np.ndarray:
    """Maps each character of ``text`` to its LEAF vocabulary index.

    Args:
      text: any string; characters outside `LEAF_VOCABULARY` map to `UNKNOWN_INDEX` (79).

    Returns:
      uint8 array of shape ``[len(text)]``.

    >>> encode_text("A b").tolist()
    [25, 1, 54]
    """
    code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return _TABLE[np.minimum(code_points, 255)]


def _read_dir(path: str) -> dict[str, tuple[list[str], list[str]]]:
    """``user -> (x strings, y strings)`` over every ``*.json`` in ``path``, in file-name order."""
    if not os.path.isdir(path):
        raise DataError(f"LEAF json directory not found: {path}")
    names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
    if not names:
        raise DataError(f"no *.json files in LEAF directory {path}")
    users: dict[str, tuple[list[str], list[str]]] = {}
    for name in names:
        file_path = os.path.join(path, name)
        try:
            with open(file_path, encoding="utf-8") as f:
                blob = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{file_path} is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}); "
                "regenerate it with LEAF's preprocess.sh"
            ) from e
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read LEAF json {file_path}: {e}") from e
        try:
            for user in blob["users"]:
                xs, ys = users.setdefault(user, ([], []))
                xs.extend(blob["user_data"][user]["x"])
                ys.extend(blob["user_data"][user]["y"])
        except (KeyError, TypeError) as e:
            raise DataError(f"{file_path} is not LEAF json (missing {e}); regenerate it") from e
    return users


def _encode_split(
    user_data: dict[str, tuple[list[str], list[str]]], users: list[str], source: str
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, ...]]:
    xs_all: list[str] = []
    ys_all: list[str] = []
    indices = []
    for user in users:
        xs, ys = user_data.get(user, ([], []))
        if len(xs) != len(ys) or any(len(s) != SEQUENCE_LENGTH for s in xs):
            raise DataError(f"{source}: user {user!r} needs equal x/y counts and 80-char x strings")
        if any(len(s) != 1 for s in ys):
            raise DataError(f"{source}: user {user!r} has a y that is not one character")
        indices.append(np.arange(len(xs_all), len(xs_all) + len(xs), dtype=np.int64))
        xs_all.extend(xs)
        ys_all.extend(ys)
    x = encode_text("".join(xs_all)).reshape(len(xs_all), SEQUENCE_LENGTH)
    y = encode_text("".join(ys_all)).astype(np.int32)
    return {"x": x, "y": y}, tuple(indices)


def load_leaf_json(train_dir: str, test_dir: str) -> FederatedDataset:
    """Reads the train/test JSON files that LEAF's ``preprocess.sh -t sample`` writes.

    Args:
      train_dir: folder with LEAF's train ``*.json`` files (one or several).
      test_dir: folder with the matching test ``*.json`` files.

    Returns:
      A `FederatedDataset` named ``"shakespeare"``: ``x`` uint8 ``[N, 80]`` vocabulary indices,
      ``y`` int32 ``[N]``, per-client train and test index arrays, LEAF's user names as
      ``client_ids`` (in train file order), 80 classes. The clients are the users with training
      samples: users with none (only in the test files, or empty) would be clients that train
      on nothing yet take sampling slots, so they are dropped with a warning.

    Raises:
      DataError: a folder is missing, holds no json, or a file is not in LEAF's format.

    Example: ``load_leaf_json("leaf/data/shakespeare/data/train", ".../test")``.
    """
    train_data = _read_dir(train_dir)
    test_data = _read_dir(test_dir)
    users = [user for user, (xs, _) in train_data.items() if xs]
    dropped = len(set(train_data) | set(test_data)) - len(users)
    if not users:
        raise DataError(f"no user has training samples in the LEAF json files of {train_dir}")
    if dropped:
        logging.warning(
            "LEAF json: %d users have no training samples in %s and are not clients",
            dropped,
            train_dir,
        )
    train, train_idx = _encode_split(train_data, users, train_dir)
    test, test_idx = _encode_split(test_data, users, test_dir)
    return FederatedDataset(
        name="shakespeare",
        train=train,
        test=test,
        train_client_indices=train_idx,
        test_client_indices=test_idx,
        client_ids=tuple(users),
        num_classes=len(LEAF_VOCABULARY),
    )
