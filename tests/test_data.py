"""tagger/data.py's checks on a training corpus: gold tags offered as a feature, and swapped columns."""
from __future__ import annotations

import pytest

from conftest import make_sentences
from corpora.conll import Sentence
from tagger.data import check_feature_columns_leak, check_tag_column
from tagger.errors import InputError


def with_columns(columns) -> list[Sentence]:
    """Sentences of `token, *columns(tokens, tags), tag` rows from the synthetic corpus."""
    out = []
    for tokens, tags in make_sentences(60, seed=1):
        extra = columns(tokens, tags)
        rows = tuple((tok, *(col[i] for col in extra), tag) for i, (tok, tag) in enumerate(zip(tokens, tags)))
        out.append(Sentence(tuple(tokens), tuple(tags), rows))
    return out


def test_the_tag_column_as_a_feature_is_refused_naming_it():
    sentences = with_columns(lambda tokens, tags: [])  # token, tag: column 1 is the tag
    with pytest.raises(InputError, match=r"^train.txt: --features: column 1 is the tag column"):
        check_feature_columns_leak(sentences, [1], "train.txt")


def test_a_feature_that_predicts_the_tags_almost_perfectly_is_a_warning():
    warnings = []
    renamed = with_columns(lambda tokens, tags: [[t.lower() for t in tags]])  # the tags, spelt otherwise
    check_feature_columns_leak(renamed, [1], "train.txt", warn=warnings.append)
    assert len(warnings) == 1 and warnings[0].startswith("warning: train.txt: feature column 1 predicts the tags")


def test_an_honest_feature_passes_silently():
    warnings = []
    casing = with_columns(lambda tokens, tags: [["Aa" if t[0].isupper() else "a" for t in tokens]])
    check_feature_columns_leak(casing, [1], "train.txt", warn=warnings.append)
    assert warnings == []


def swapped(n_words: int) -> list[Sentence]:
    """`tag token` lines read as `token tag`: the "tags" are n_words distinct words."""
    words = [f"word{i}x" for i in range(n_words)]
    return [Sentence(("O", "B-PER"), (words[i], words[(i + 1) % n_words]), (("O", words[i]), ("B-PER", words[i])))
            for i in range(n_words)]


def test_words_in_the_tag_column_stop_training_with_a_hint():
    with pytest.raises(InputError, match=r"are the columns swapped\?.*--tag-column N \(column 0 has 2 distinct"):
        check_tag_column(swapped(1500), "train.txt")


def test_a_large_tag_set_that_is_not_words_passes():
    check_tag_column(swapped(500), "train.txt")  # hundreds of values: a tag set can be that large
    tags = [f"NNMS{i}-----A----" for i in range(1500)]  # fine-grained tags (Czech PDT-like), not words
    check_tag_column([Sentence(("a",), (t,), (("a", t),)) for t in tags], "train.txt")


def test_a_feature_column_the_lines_lack_names_the_sentences_line():
    from tagger.data import check_feature_columns

    sentences = [Sentence(["EU", "rejects"], ["B-ORG", "O"], rows=[["EU", "NNP", "B-ORG"], ["rejects", "VBZ", "O"]],
                          line=4)]
    check_feature_columns(sentences, [1, -2], "train.txt")
    with pytest.raises(InputError, match="feature column 3 does not exist") as caught:
        check_feature_columns(sentences, [3], "train.txt")
    assert (caught.value.path, caught.value.line) == ("train.txt", 4)
