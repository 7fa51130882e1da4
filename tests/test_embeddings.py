"""Pretrained vectors: GloVe and word2vec text, plain or gzipped; bad rows are named by line."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from conftest import make_sentences, write_corpus, write_toml
from tagger import commands
from tagger.api import Tagger
from tagger.embeddings import load_vectors, stack_vectors
from tagger.errors import ConfigError, InputError

GLOVE = "the 0.1 0.2 0.3\nParis 1 2 3\nberlin -1.5 0 2.25\n"
WORDS = ["the", "Paris", "berlin"]
MATRIX = np.array([[0.1, 0.2, 0.3], [1, 2, 3], [-1.5, 0, 2.25]], dtype=np.float32)


def write(tmp_path: Path, data: str | bytes, name: str = "vectors.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def assert_vectors(result, words=WORDS, matrix=MATRIX) -> None:
    got_words, got_matrix = result
    assert got_words == words
    assert got_matrix.dtype == np.float32 and got_matrix.shape == matrix.shape
    np.testing.assert_allclose(got_matrix, matrix)


def test_glove_text(tmp_path):
    assert_vectors(load_vectors(write(tmp_path, GLOVE)))


def test_word2vec_text_with_a_count_dim_header(tmp_path):
    assert_vectors(load_vectors(write(tmp_path, "3 3\n" + GLOVE)))


def test_word2vec_c_tool_output_with_trailing_spaces(tmp_path):
    text = "3 3\n" + "".join(line + " \n" for line in GLOVE.splitlines())
    assert_vectors(load_vectors(write(tmp_path, text)))


def test_gzipped_file(tmp_path):
    assert_vectors(load_vectors(write(tmp_path, gzip.compress(GLOVE.encode()), "vectors.txt.gz")))
    assert_vectors(load_vectors(write(tmp_path, gzip.compress(("3 3\n" + GLOVE).encode()), "w2v.gz")))


def test_crlf_and_bom(tmp_path):
    assert_vectors(load_vectors(write(tmp_path, b"\xef\xbb\xbf" + GLOVE.replace("\n", "\r\n").encode())))
    assert_vectors(load_vectors(write(tmp_path, b"\xef\xbb\xbf3 3\r\n" + GLOVE.encode(), "w2v.txt")))


def test_duplicate_words_keep_the_first_vector(tmp_path):
    words, matrix = load_vectors(write(tmp_path, GLOVE + "Paris 9 9 9\nthe 8 8 8\n"))
    assert words == WORDS
    np.testing.assert_allclose(matrix, MATRIX)


def test_unicode_words_even_with_unusual_spaces_inside(tmp_path):
    text = "Zoë 1 2\n東京 3 4\nNew\u00a0York 5 6\na\u2028b 7 8 \n"  # the trailing space forces the slow reader
    words, matrix = load_vectors(write(tmp_path, text))
    assert words == ["Zoë", "東京", "New\u00a0York", "a\u2028b"]
    np.testing.assert_allclose(matrix, [[1, 2], [3, 4], [5, 6], [7, 8]])


@pytest.mark.parametrize("text, line, fragment", [
    ("the 0.1 0.2 0.3\nParis 1 2\nberlin 1 2 3\n", 2, "row has 2 values, expected 3"),
    ("3 3\nthe 0.1 0.2 0.3\nParis 1 2 3\nberlin 1 2 3 4\n", 4, "row has 4 values, expected 3"),
    ("the 0.1 0.2 0.3\nParis 1 two 3\n", 2, "not a number"),
    ("the 0.1 0.2 0.3\nParis 1 nan 3\n", 2, "nan or inf"),
    ("the 0.1 0.2 0.3\nParis 1 inf 3\n", 2, "nan or inf"),
    (b"the 0.1 0.2 0.3\nPar\xffis 1 2 3\n", 2, "invalid UTF-8"),
])
def test_bad_rows_are_named_by_line(text, line, fragment, tmp_path):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_vectors(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_dimension_must_match_expected_dim(tmp_path):
    path = write(tmp_path, GLOVE)
    assert_vectors(load_vectors(path, expected_dim=3))
    with pytest.raises(InputError, match=r"vectors have 3 dimensions but the config asks for 50"):
        load_vectors(path, expected_dim=50)


@pytest.mark.parametrize("data, fragment", [
    (None, "no such embeddings file"), ("", "no vectors found"), (b"\x1f\x8b\x08broken", "cannot read")])
def test_unusable_files(data, fragment, tmp_path):
    path = tmp_path / "vectors.txt"
    if data is not None:
        write(tmp_path, data)
    with pytest.raises(InputError, match=fragment):
        load_vectors(path)
    with pytest.raises(InputError, match="is a directory"):
        load_vectors(tmp_path)


def test_training_with_vectors_uses_their_dimension_and_rows(tmp_path):
    sents = make_sentences(30, seed=3)
    train = write_corpus(tmp_path / "train.txt", sents[:22])
    dev = write_corpus(tmp_path / "dev.txt", sents[22:])
    rng = np.random.default_rng(0)
    rows = {"paris": rng.normal(size=6), "visited": rng.normal(size=6), "madrid": rng.normal(size=6)}
    vectors = write(tmp_path, "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()))
    config = write_toml(tmp_path / "c.toml", epochs=1)
    commands.train(str(train), str(dev), tmp_path / "m", embeddings=vectors, config_file=config)
    tagger = Tagger.load(tmp_path / "m")
    assert tagger.config.word_dim == 6  # the vectors' dimension wins over the config's 16
    assert tagger.vocab.frozen.items == ["madrid"]  # pretrained, never seen in training: kept, not trained
    np.testing.assert_allclose(tagger.tensors["words.frozen"][0], rows["madrid"].astype(np.float16))  # kept in float16
    assert tagger.vocab.word_id("Madrid") == len(tagger.vocab.words)  # looked up lower-cased
    assert len(tagger.predict_tokens([["Anna", "visited", "Madrid"]])[0]) == 3
    assert np.isfinite(tagger.tensors["words.trained"]).all()


# -- stacked vectors: --embeddings A --embeddings B ------------------------------------------------------------

def test_stacked_vectors_add_their_dimensions_and_pad_words_a_set_lacks():
    a = (["the", "paris"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    b = (["paris", "reuters", "the"], np.array([[5, 6, 7], [8, 9, 10], [11, 12, 13]], dtype=np.float32))
    words, matrix = stack_vectors([a, b])
    assert words == ["the", "paris", "reuters"]  # every word, in order of first appearance
    assert matrix.dtype == np.float32 and matrix.shape == (3, 2 + 3)
    np.testing.assert_array_equal(matrix, [[1, 2, 11, 12, 13], [3, 4, 5, 6, 7], [0, 0, 8, 9, 10]])  # unknown: 0


def test_stacked_vectors_find_a_cased_word_lower_cased_in_a_set_that_lacks_it():
    glove = (["paris"], np.array([[1, 1]], dtype=np.float32))          # lower-cased, as GloVe's
    cased = (["Paris", "paris"], np.array([[2], [3]], dtype=np.float32))
    words, matrix = stack_vectors([glove, cased])
    assert words == ["paris", "Paris"]
    np.testing.assert_array_equal(matrix, [[1, 1, 3], [1, 1, 2]])
    np.testing.assert_array_equal(stack_vectors([glove, cased], lowercase=False)[1], [[1, 1, 3], [0, 0, 2]])


def test_training_with_two_vector_files_stacks_them(tmp_path):
    sents = make_sentences(30, seed=3)
    train = write_corpus(tmp_path / "train.txt", sents[:22])
    dev = write_corpus(tmp_path / "dev.txt", sents[22:])
    first = write(tmp_path, "paris 1 2 3\nvisited 0 1 0\n", "a.txt")
    second = write(tmp_path, gzip.compress(b"madrid 4 5\nparis 6 7\n"), "b.txt.gz")
    commands.train(str(train), str(dev), tmp_path / "m", embeddings=[first, second],
                   config_file=write_toml(tmp_path / "c.toml", epochs=1))
    tagger = Tagger.load(tmp_path / "m")
    assert tagger.config.word_dim == 3 + 2
    assert tagger.info()["embeddings"] == "a.txt + b.txt.gz"
    assert tagger.vocab.frozen.items == ["madrid"]  # only in the second file: padded, kept
    np.testing.assert_allclose(tagger.tensors["words.frozen"][0], [0, 0, 0, 4, 5])
    assert len(tagger.predict_tokens([["Anna", "visited", "Madrid"]])[0]) == 3


def test_a_missing_file_among_stacked_vectors_is_named(tmp_path):
    sents = make_sentences(10, seed=3)
    train = write_corpus(tmp_path / "train.txt", sents)
    present = write(tmp_path, "paris 1 2 3\n", "a.txt")
    with pytest.raises(InputError, match="missing.txt: no such embeddings file"):
        commands.train(str(train), str(train), tmp_path / "m", embeddings=[present, tmp_path / "missing.txt"])
    assert not (tmp_path / "m").exists()


def test_jieba_vectors_cannot_be_stacked(tmp_path):
    train = write_corpus(tmp_path / "train.txt", make_sentences(10, seed=3))
    with pytest.raises(ConfigError, match="cannot be stacked"):
        commands.train(str(train), str(train), tmp_path / "m", embeddings=["jieba", write(tmp_path, GLOVE)])
