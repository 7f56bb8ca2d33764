from __future__ import annotations

import json

import pytest

from rnnlab.data.vocab import LabelSet, Vocab

CORPUS = [["b", "a", "c", "a"], ["c", "a", "d"], ["b", "e"]]  # a:3, b:2, c:2, d:1, e:1


def test_specials_first_then_count_desc_ties_alphabetical() -> None:
    vocab = Vocab.build(CORPUS)
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c", "d", "e"]
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert len(vocab) == 9


def test_build_is_independent_of_input_order() -> None:
    assert Vocab.build(reversed(CORPUS)).tokens == Vocab.build(CORPUS).tokens


def test_min_freq_drops_rare_tokens() -> None:
    vocab = Vocab.build(CORPUS, min_freq=2)
    assert vocab.tokens[4:] == ["a", "b", "c"]
    assert "d" not in vocab and "a" in vocab


def test_max_size_caps_non_special_tokens() -> None:
    vocab = Vocab.build(CORPUS, max_size=2)
    assert vocab.tokens[4:] == ["a", "b"]
    assert len(vocab) == 4 + 2
    assert Vocab.build(CORPUS, max_size=0).tokens == ["<pad>", "<unk>", "<bos>", "<eos>"]


def test_special_tokens_in_data_are_not_duplicated() -> None:
    vocab = Vocab.build([["<unk>", "x", "<pad>"]])
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "x"]


def test_encode_maps_unknown_to_unk_and_decode_inverts() -> None:
    vocab = Vocab.build(CORPUS)
    ids = vocab.encode(["a", "zzz", "e"])
    assert ids == [4, vocab.unk_id, 8]
    assert vocab.decode(ids) == ["a", "<unk>", "e"]
    assert vocab.token_to_id("c") == 6
    assert vocab.token_to_id("missing") == vocab.unk_id


def test_round_trip_through_json() -> None:
    vocab = Vocab.build(CORPUS, min_freq=1, specials=("<pad>", "<unk>", "<bos>", "<eos>", "<mask>"))
    restored = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab
    assert restored.tokens == vocab.tokens
    assert restored.encode(["a", "q"]) == vocab.encode(["a", "q"])


def test_invalid_build_arguments() -> None:
    with pytest.raises(ValueError):
        Vocab.build(CORPUS, min_freq=0)
    with pytest.raises(ValueError):
        Vocab.build(CORPUS, specials=("<bos>",))


def test_label_set_sorted_unique_and_round_trip() -> None:
    labels = LabelSet.build(["pos", "neg", "pos", "neutral"])
    assert labels.labels == ["neg", "neutral", "pos"]
    assert len(labels) == 3 and "pos" in labels and "other" not in labels
    assert labels.encode("pos") == 2
    assert labels.decode(1) == "neutral"
    with pytest.raises(KeyError):
        labels.encode("other")
    restored = LabelSet.from_dict(json.loads(json.dumps(labels.to_dict())))
    assert restored == labels and restored.labels == labels.labels
