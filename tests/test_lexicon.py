"""The lexicon: trie matching equals a brute-force scan, B/M/E/S features by hand, reading lexicon files."""
import importlib.util
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.errors import InputError
from tagger.lexicon import CELLS, FEATURES, Lexicon, lexicon_path, parse_lexicon, parse_saved, read_lexicon

ALPHABET = "北京大学人民"  # few letters: random words overlap and nest often


def brute_force(lexicon: Lexicon, tokens: list[str]) -> list[tuple[int, int, float]]:
    """Every (start, end) whose joined tokens are a lexicon word: all O(T^2) substrings."""
    return [(i, j, lexicon.words[''.join(tokens[i:j])]) for i in range(len(tokens))
            for j in range(i + 1, len(tokens) + 1) if ''.join(tokens[i:j]) in lexicon.words]


@settings(max_examples=300, deadline=None)
@given(words=st.dictionaries(st.text(ALPHABET, min_size=1, max_size=5), st.integers(0, 1000), min_size=1),
       sentence=st.text(ALPHABET, max_size=30))
def test_trie_finds_exactly_the_words_a_substring_scan_finds(words, sentence):
    lexicon = Lexicon(words)
    assert lexicon.matches(list(sentence)) == brute_force(lexicon, list(sentence))


@settings(max_examples=100, deadline=None)
@given(words=st.dictionaries(st.text("ab", min_size=1, max_size=3), st.just(1), min_size=1),
       tokens=st.lists(st.text("ab", min_size=1, max_size=2), max_size=12))
def test_tokens_of_several_characters_match_as_their_joined_text(words, tokens):
    lexicon = Lexicon(words)
    assert lexicon.matches(tokens) == brute_force(lexicon, tokens)


def test_overlapping_words_at_both_edges_and_single_characters():
    lexicon = Lexicon({"北京": 5, "北京大学": 2, "大学": 7, "学": 1, "京": 1, "民": 3})
    assert lexicon.matches(list("北京大学")) == [(0, 2, 5), (0, 4, 2), (1, 2, 1), (2, 4, 7), (3, 4, 1)]
    assert lexicon.matches(list("人民")) == [(1, 2, 3)]  # a one-character word at the sentence's end
    assert lexicon.matches([]) == []


def test_features_of_a_hand_made_sentence():
    # 南京市长江大桥: 南京 (freq 3), 南京市 (1), 市长 (1), 长江 (4), 长江大桥 (2), 大桥 (1), 江 (1)
    lexicon = Lexicon({"南京": 3, "南京市": 1, "市长": 1, "长江": 4, "长江大桥": 2, "大桥": 1, "江": 1, "北": 9})
    got = lexicon.features(list("南京市长江大桥"))
    assert got.shape == (7, FEATURES) == (7, 24) and got.dtype == np.float32
    cell = {name: i for i, name in enumerate(CELLS)}
    mass = np.zeros((7, len(CELLS)))  # summed frequencies by hand
    mass[0, cell["B2"]] = 3            # 南: begins 南京
    mass[0, cell["B3"]] = 1            #     and 南京市
    mass[1, cell["E2"]] = 3            # 京: ends 南京
    mass[1, cell["M3"]] = 1            #     middle of 南京市
    mass[2, cell["E3"]] = 1            # 市: ends 南京市
    mass[2, cell["B2"]] = 1            #     begins 市长
    mass[3, cell["E2"]] = 1            # 长: ends 市长
    mass[3, cell["B2"]] = 4            #     begins 长江
    mass[3, cell["B4"]] = 2            #     begins 长江大桥
    mass[4, cell["E2"]] = 4            # 江: ends 长江
    mass[4, cell["M4"]] = 2            #     middle of 长江大桥
    mass[4, cell["S"]] = 1             #     is the word 江
    mass[5, cell["M4"]] = 2            # 大: middle of 长江大桥
    mass[5, cell["B2"]] = 1            #     begins 大桥
    mass[6, cell["E4"]] = 2            # 桥: ends 长江大桥
    mass[6, cell["E2"]] = 1            #     ends 大桥
    expected = np.concatenate([mass > 0, np.log1p(mass) / math.log1p(9)], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_words_of_five_characters_and_more_share_a_cell():
    lexicon = Lexicon({"一二三四五六": 1})
    got = lexicon.features(list("一二三四五六"))[:, : len(CELLS)]
    assert [CELLS[c] for c in np.flatnonzero(got[0])] == ["B5+"]
    assert all([CELLS[c] for c in np.flatnonzero(row)] == ["M5+"] for row in got[1:5])
    assert [CELLS[c] for c in np.flatnonzero(got[5])] == ["E5+"]


def test_a_lexicon_file_reads_with_or_without_frequencies_and_writes_back(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\ufeff北京 30 ns\n\n上海\n北京 5\n长江大桥 2.5\n", encoding="utf-8")
    lexicon = read_lexicon(path)
    assert lexicon.words == {"北京": 30, "上海": 1, "长江大桥": 2.5}  # a repeated word keeps its larger count
    assert lexicon.longest == 4
    assert parse_lexicon(lexicon.to_text().splitlines()) == lexicon


@pytest.mark.parametrize("text", ["北京 30\n上海 1\n长江大桥 2.5\n", "北京\n3\n", "北京 30 ns\n上海\n", "北京 3\n北京 5\n"])
def test_a_saved_lexicon_reads_fast_and_anything_else_as_a_lexicon_file(text):
    assert parse_saved(text) == parse_lexicon(text.splitlines())


@settings(max_examples=100, deadline=None)
@given(words=st.dictionaries(st.text(ALPHABET, min_size=1, max_size=5), st.floats(0, 1e6), min_size=1),
       sentence=st.text(ALPHABET, max_size=30))
def test_the_trie_saved_as_arrays_loads_as_the_same_lexicon(words, sentence):
    lexicon = Lexicon(words)
    arrays = lexicon.to_arrays()
    loaded = Lexicon.from_arrays(arrays)
    assert loaded.nodes == lexicon.nodes and (loaded.longest, loaded.scale, len(loaded)) == \
        (lexicon.longest, lexicon.scale, len(lexicon))
    assert loaded.matches(list(sentence)) == lexicon.matches(list(sentence))
    assert list(loaded.words.items()) == list(lexicon.words.items()) and loaded == lexicon  # order kept
    assert loaded.to_text() == lexicon.to_text()
    assert all(np.array_equal(arrays[k], Lexicon(dict(words)).to_arrays()[k]) for k in arrays)  # same bytes


def test_arrays_that_are_no_saved_trie_are_refused():
    arrays = Lexicon({"北京": 3, "北京大学": 1}).to_arrays()
    with pytest.raises(ValueError, match="not a lexicon trie"):
        Lexicon.from_arrays({**arrays, "frequencies": arrays["frequencies"].astype(np.float32)})
    with pytest.raises(ValueError, match="3 frequencies for 2 keys"):
        Lexicon.from_arrays({**arrays, "keys": np.frombuffer("北京\n北".encode(), np.uint8),
                             "frequencies": np.ones(3)})


def test_a_saved_lexicon_with_a_bad_frequency_names_its_line():
    with pytest.raises(InputError, match="2: frequency 'x' is not a number"):
        parse_saved("北京 3\n上海 x\n", "lexicon.txt")


@pytest.mark.parametrize("text,problem", [("北京 many\n", "2: frequency 'many' is not a number"),
                                          ("北京 nan\n", "2: frequency nan is not a finite number"),
                                          ("北京 -1\n", "2: frequency -1 is not a finite number >= 0"),
                                          ("\n  \n", "holds no words")])
def test_a_bad_lexicon_file_is_one_line_naming_file_and_line(tmp_path, text, problem):
    path = tmp_path / "words.txt"
    path.write_text("上海 3\n" + text if "no words" not in problem else text, encoding="utf-8")
    with pytest.raises(InputError, match=problem) as e:
        read_lexicon(path)
    assert str(path) in str(e.value)


def test_a_missing_lexicon_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no such lexicon file"):
        lexicon_path(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="is a directory"):
        lexicon_path(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("jieba") is None, reason="jieba is not installed (pip install jieba)")
def test_jieba_names_the_dictionary_of_the_installed_jieba():
    path = lexicon_path("jieba")
    assert path.name == "dict.txt" and path.is_file()
    with path.open(encoding="utf-8") as f:
        head = parse_lexicon([next(f) for _ in range(1000)], str(path))
    assert len(head) > 900 and all(freq >= 0 for freq in head.words.values())
