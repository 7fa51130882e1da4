"""Vocabularies: which words get their own row, how unknown and differently cased words are looked up."""
from __future__ import annotations

import json

import pytest

from tagger.vocab import CASINGS, PAD, UNK, Index, Vocab, build_vocab, casing

TOKENS = [["The", "cat", "sat", "."], ["the", "Cat", "ran", "."], ["A", "dog", "sat", "."]]
TAGS = [["O", "B-ANIMAL", "O", "O"], ["O", "B-ANIMAL", "O", "O"], ["O", "B-ANIMAL", "O", "O"]]


def test_words_are_lower_cased_and_ordered_by_frequency():
    vocab = build_vocab(TOKENS, TAGS)
    assert vocab.words.items == [PAD, UNK, ".", "cat", "sat", "the", "a", "dog", "ran"]  # ties alphabetical
    assert "The" not in vocab.words and "the" in vocab.words
    assert vocab.word_id("CAT") == vocab.word_id("cat") == vocab.words.ids["cat"]
    assert vocab.word_id("zebra") == 1  # <unk>


def test_case_sensitive_lookup_when_lowercase_is_off():
    vocab = build_vocab(TOKENS, TAGS, lowercase=False)
    assert "The" in vocab.words and "the" in vocab.words
    assert vocab.word_id("CAT") == 1


def test_min_count_sends_rare_words_to_unk_unless_pretrained():
    vocab = build_vocab(TOKENS, TAGS, min_count=2, pretrained=["dog"])
    assert "ran" not in vocab.words and vocab.word_id("ran") == 1
    assert "dog" in vocab.words  # seen once, but it has a vector: it keeps its own row
    assert "sat" in vocab.words


def test_pretrained_words_never_seen_in_training_are_frozen():
    vocab = build_vocab(TOKENS, TAGS, pretrained=["cat", "zebra", "Paris"])
    assert vocab.frozen.items == ["Paris", "zebra"]
    assert vocab.word_id("zebra") == len(vocab.words) + vocab.frozen.find("zebra")
    assert vocab.frozen.find("yak") is None and vocab.frozen.find("zzz") is None
    assert vocab.word_id("ZEBRA") == vocab.word_id("zebra")  # lower-cased fallback reaches frozen words
    assert vocab.word_id("Paris") == len(vocab.words)  # exact form first


def test_tags_have_no_specials():
    vocab = build_vocab(TOKENS, [["O", "B-ANIMAL", "I-X", "O"]] * 3)
    assert sorted(vocab.tags.items) == ["B-ANIMAL", "I-X", "O"]
    assert vocab.tags.get("B-NEW") == -1


def test_tags_put_o_first():
    vocab = build_vocab(TOKENS, [["O", "B-ANIMAL", "I-X", "O"]] * 3)
    assert vocab.tags.items == ["O", "B-ANIMAL", "I-X"]


def test_characters_and_features():
    vocab = build_vocab(TOKENS, TAGS, feature_seqs=[[["DT", "NN", "VBD", "."]] * 3])
    assert {"T", "c", "."} <= set(vocab.chars.items) and vocab.chars.get("€") == 1
    assert vocab.features[0].items[:2] == [PAD, UNK] and "NN" in vocab.features[0]


def test_json_round_trip():
    vocab = build_vocab(TOKENS, TAGS, feature_seqs=[[["a", "b", "c", "d"]] * 3], pretrained=["zebra"],
                        source_scheme="iob2")
    data = json.loads(json.dumps(vocab.to_json()))
    again = Vocab.from_json(data)
    assert again.to_json() == vocab.to_json()
    assert again.word_id("zebra") == vocab.word_id("zebra") and again.source_scheme == "iob2"


@pytest.mark.parametrize("word, shape", [
    ("1999", "numeric"), ("12-3", "mainly_numeric"), ("paris", "lower"), ("NATO", "upper"), ("Paris", "title"),
    ("B52s", "title"), ("#1", "has_digit"), ("--", "punct"), ("iPhone", "other"), ("", "punct")])
def test_casing(word, shape):
    assert CASINGS[casing(word)] == shape


def test_index_unknown_ids():
    assert Index(["x", "y"], specials=False).get("z") == -1
    assert Index([PAD, UNK, "x"]).get("z") == 1


def test_frozen_words_must_be_sorted_since_they_are_found_by_bisection():
    data = build_vocab(TOKENS, TAGS, pretrained=["zebra", "yak"]).to_json()
    assert data["frozen_words"] == ["yak", "zebra"]
    data["frozen_words"].reverse()  # a hand-edited vocab.json
    with pytest.raises(ValueError, match="not sorted"):
        Vocab.from_json(data)
