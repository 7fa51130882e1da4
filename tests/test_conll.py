"""corpora.conll: reading the CoNLL dialects, odd files users really have, and the exact error messages."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora.conll import (
    FORMATS,
    Sentence,
    detect_format,
    iter_conll_lines,
    read_conll,
)
from corpora.conll_writer import format_sentence, write_conll
from corpora.errors import CorpusError

FIXTURES = Path(__file__).parent / "fixtures" / "corpora"
CONLL2003 = FIXTURES / "conll2003_sample.txt"
CONLLU = FIXTURES / "conllu_sample.conllu"
TWO_COLUMNS = FIXTURES / "two_columns.tsv"


def write(tmp_path: Path, content: str | bytes, name: str = "corpus.txt") -> Path:
    """A corpus file with exactly these bytes (str is written as UTF-8 with no newline translation)."""
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def error_of(path: Path, **kwargs) -> str:
    """The message of the CorpusError that reading the whole file raises."""
    with pytest.raises(CorpusError) as info:
        list(read_conll(path, **kwargs))
    return str(info.value)


# --- the three dialects --------------------------------------------------------------------------------


def test_conll2003_skips_docstart_and_keeps_every_column():
    sentences = list(read_conll(CONLL2003))
    assert [s.tokens for s in sentences] == [
        ("Maria", "Lopez", "visited", "Oslo", "."),
        ("Acme", "Corp", "grew", "."),
        ("Rain", "fell", "in", "Lisbon", "."),
    ]
    assert sentences[0].tags == ("B-PER", "I-PER", "O", "B-LOC", "O")
    assert sentences[0].rows[0] == ("Maria", "NNP", "B-NP", "B-PER")
    assert [s.line for s in sentences] == [3, 9, 16]


def test_tag_column_picks_another_column_and_may_be_negative():
    first = next(read_conll(CONLL2003, tag_column=1))
    assert first.tags == ("NNP", "NNP", "VBD", "NNP", ".")
    assert next(read_conll(CONLL2003, tag_column=-2)).tags == ("B-NP", "I-NP", "B-VP", "B-NP", "O")


def test_tab_separated_file_keeps_spaces_inside_tokens():
    sentences = list(read_conll(TWO_COLUMNS))
    assert sentences == [
        Sentence(
            ("New York", "is", "big"), ("B-LOC", "O", "O"), (("New York", "B-LOC"), ("is", "O"), ("big", "O")), 1
        ),
        Sentence(("Tom",), ("B-PER",), (("Tom", "B-PER"),), 5),
    ]


def test_conllu_skips_comments_multiword_tokens_and_empty_nodes():
    sentences = list(read_conll(CONLLU))
    assert [s.tokens for s in sentences] == [("Ana", "went", "to", "the", "market", "."), ("Bo", "sings", ".")]
    assert sentences[0].tags == ("PROPN", "VERB", "ADP", "DET", "NOUN", "PUNCT")
    assert [s.line for s in sentences] == [4, 14]
    assert len(sentences[0].rows[0]) == 10


def test_conllu_tag_column_4_reads_xpos():
    assert next(read_conll(CONLLU, tag_column=4)).tags == ("NNP", "VBD", "IN", "DT", "NN", ".")


@pytest.mark.parametrize(
    "path, expected", [(CONLL2003, "conll2003"), (CONLLU, "conllu"), (TWO_COLUMNS, "columns")]
)
def test_detect_format_on_the_fixtures(path: Path, expected: str):
    assert detect_format(path.read_text(encoding="utf-8").splitlines()[:20]) == expected


@pytest.mark.parametrize("lines, expected", [
    ([], "columns"),
    (["UN NNP B-NP B-ORG", "accepts VBZ B-VP O"], "conll2003"),  # 4 columns ending in a span tag
    (["EU NNP B-NP ORG"], "columns"),  # 4 columns, but the last is no span tag
    (["De DET O", "", "-DOCSTART- -X- O"], "conll2003"),  # -DOCSTART- anywhere in the head
    (["1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_"], "conllu"),
    (["# text = Hi", "1 Hi"], "conllu"),
    (["word\tNN", "word2\tVB"], "columns"),
])
def test_detect_format(lines: list[str], expected: str):
    assert detect_format(lines) == expected


# --- odd but valid files -------------------------------------------------------------------------------


def test_bom_and_crlf_are_invisible(tmp_path: Path):
    path = write(tmp_path, "\ufeffUN B-ORG\r\naccepts O\r\n\r\nYes O\r\n")
    sentences = [(s.tokens, s.tags) for s in read_conll(path)]
    assert sentences == [(("UN", "accepts"), ("B-ORG", "O")), (("Yes",), ("O",))]


def test_trailing_whitespace_many_blank_lines_and_no_final_newline(tmp_path: Path):
    path = write(tmp_path, "\n\n a  B-PER \t\nb O   \n\n\n  \n\nc O")
    sentences = [(s.tokens, s.tags, s.line) for s in read_conll(path)]
    assert sentences == [(("a", "b"), ("B-PER", "O"), 3), (("c",), ("O",), 9)]


def test_docstart_in_the_middle_of_a_sentence_ends_it(tmp_path: Path):
    path = write(tmp_path, "a O\n-DOCSTART- O\nb O\n")
    assert [s.tokens for s in read_conll(path)] == [("a",), ("b",)]


def test_a_sentence_that_opens_a_document_carries_its_docstart_line(tmp_path: Path):
    path = write(tmp_path, "-DOCSTART- -X- -X- O\n\na DT B-NP O\n\nb DT B-NP O\n-DOCSTART- -X- -X- O\nc DT B-NP O\n")
    assert [(s.tokens, s.document) for s in read_conll(path)] == [
        (("a",), ("-DOCSTART-", "-X-", "-X-", "O")), (("b",), ()), (("c",), ("-DOCSTART-", "-X-", "-X-", "O"))]


def test_no_break_space_is_part_of_a_token(tmp_path: Path):
    path = write(tmp_path, "10\u00a0000 O\n")
    assert next(read_conll(path)).tokens == ("10\u00a0000",)


def test_single_column_is_fine_unlabelled(tmp_path: Path):
    path = write(tmp_path, "Hello\nworld\n\nBye\n")
    sentences = [(s.tokens, s.tags) for s in read_conll(path, labelled=False)]
    assert sentences == [(("Hello", "world"), None), (("Bye",), None)]


def test_unlabelled_reading_of_a_tagged_file_keeps_the_rows(tmp_path: Path):
    first = next(read_conll(CONLL2003, labelled=False))
    assert first.tags is None and first.rows[0] == ("Maria", "NNP", "B-NP", "B-PER")


def test_iter_conll_lines_reads_text_lines():
    sentences = iter_conll_lines(["a B-X\n", "b I-X\n", "\n", "c O"], format="columns")
    expected = [(("a", "b"), ("B-X", "I-X"), 1), (("c",), ("O",), 4)]
    assert [(s.tokens, s.tags, s.line) for s in sentences] == expected


def test_reading_streams_and_reports_a_late_problem_late(tmp_path: Path):
    path = write(tmp_path, b"a O\n\n" * 30 + b"\xff O\n")  # "auto" looks at the first 20 lines only
    sentences = read_conll(path)
    assert next(sentences).tokens == ("a",)
    with pytest.raises(CorpusError, match=re.escape(f"{path}:61: invalid UTF-8")):
        list(sentences)


# --- errors: path:line: problem ------------------------------------------------------------------------


def test_ragged_line(tmp_path: Path):
    path = write(tmp_path, "x O\n\nUN NNP B-NP B-ORG\naccepts VBZ O\n")
    assert error_of(path) == f"{path}:4: expected 4 columns as on line 3, found 3"


def test_invalid_utf8(tmp_path: Path):
    path = write(tmp_path, b"ok O\ncaf\xe9 O\n")
    assert error_of(path) == f"{path}:2: invalid UTF-8 (byte 0xe9 at column 4)"


def test_nul_byte(tmp_path: Path):
    path = write(tmp_path, b"ok O\n\nbin\x00ary O\n")
    assert error_of(path) == f"{path}:3: binary file? (found a NUL byte)"


def test_empty_file(tmp_path: Path):
    path = write(tmp_path, b"")
    assert error_of(path) == f"{path}: empty file"


def test_only_blank_lines(tmp_path: Path):
    path = write(tmp_path, "\ufeff\n  \n\r\n")
    assert error_of(path) == f"{path}: no sentences found"


def test_directory_and_missing_path_fail_at_call_time(tmp_path: Path):
    with pytest.raises(CorpusError, match=re.escape(f"{tmp_path}: is a directory")):
        read_conll(tmp_path)
    with pytest.raises(CorpusError, match=re.escape(f"{tmp_path / 'nope.txt'}: no such file")):
        read_conll(tmp_path / "nope.txt")


def test_tag_column_out_of_range(tmp_path: Path):
    path = write(tmp_path, "\na B-X\n")
    assert error_of(path, tag_column=2) == f"{path}:2: tag column 2 is out of range: the line has 2 columns"
    assert error_of(path, tag_column=-3) == f"{path}:2: tag column -3 is out of range: the line has 2 columns"


def test_single_column_when_tags_are_expected(tmp_path: Path):
    path = write(tmp_path, "Hello\nworld\n")
    assert error_of(path) == f"{path}:1: missing tag column (the line has only a token)"


def test_empty_tag_field(tmp_path: Path):
    path = write(tmp_path, "a\tDT\tO\nb\t\tO\n")
    assert error_of(path, tag_column=1) == f"{path}:2: empty tag field (column 2)"


def test_conllu_wrong_column_count_and_missing_tag(tmp_path: Path):
    bad = write(tmp_path, "# text = x\n1\tx\tx\tX\t_\t_\t0\troot\t_\n", "bad.conllu")
    assert error_of(bad) == f"{bad}:2: expected 10 tab-separated columns (CoNLL-U), found 9"
    no_xpos = write(tmp_path, "# text = x\n1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n", "no_xpos.conllu")
    assert error_of(no_xpos, tag_column=4) == f"{no_xpos}:2: empty tag field (column 5)"


def test_unknown_format_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown corpus format 'conll'"):
        iter_conll_lines([], format="conll")
    assert FORMATS == ("auto", "conll2003", "columns", "conllu")


# --- writing -------------------------------------------------------------------------------------------


def test_write_columns_with_predicted_tags_then_read_back(tmp_path: Path):
    sentences = list(read_conll(CONLL2003))
    predicted = [["O"] * len(s.tokens) for s in sentences]
    out = io.StringIO()
    write_conll(sentences, out, tags=predicted)
    assert out.getvalue().startswith("Maria O\nLopez O\n")
    back = list(iter_conll_lines(out.getvalue().splitlines()))
    assert [(s.tokens, list(s.tags)) for s in back] == [(s.tokens, p) for s, p in zip(sentences, predicted)]


def test_write_conll2003_replaces_only_the_last_column():
    sentence = next(read_conll(CONLL2003, labelled=False))
    text = format_sentence(sentence, ["O", "O", "O", "B-LOC", "O"], format="conll2003")
    assert text.splitlines()[:2] == ["Maria NNP B-NP O", "Lopez NNP I-NP O"]
    assert text.endswith(". . O O\n\n")


def test_write_conll2003_appends_to_a_one_column_row(tmp_path: Path):
    sentence = next(read_conll(write(tmp_path, "Hi\n"), labelled=False))
    assert format_sentence(sentence, ["O"], format="conll2003") == "Hi O\n\n"


def test_write_with_documents_puts_the_docstart_line_back(tmp_path: Path):
    first, second, third = read_conll(CONLL2003)  # two documents: first and second, then third
    assert format_sentence(first, ["O"] * len(first.tokens), "conll2003", document=True).startswith(
        "-DOCSTART- -X- -X- O\n\nMaria NNP B-NP O\n")
    appended = format_sentence(first, ["O"] * len(first.tokens), "conll2003", append=True, document=True)
    assert appended.startswith("-DOCSTART- -X- -X- O O\n\nMaria NNP B-NP B-PER O\n")  # as wide as the rows
    assert format_sentence(first, document=True, format="columns").startswith("-DOCSTART- O\n\nMaria B-PER\n")
    assert not format_sentence(second, document=True).startswith("-DOCSTART-")  # not the first of its document
    assert format_sentence(third, document=True, format="conll2003").startswith("-DOCSTART- -X- -X- O\n\nRain ")
    assert not format_sentence(first).startswith("-DOCSTART-")  # only when asked


def test_write_conllu_replaces_upos():
    sentence = list(read_conll(CONLLU))[1]
    text = format_sentence(sentence, ["X", "X", "X"], format="conllu")
    assert text.splitlines()[0] == "1\tBo\tBo\tX\tNNP\t_\t2\tnsubj\t_\t_"
    built = format_sentence(Sentence(("a",), ("NOUN",)), format="conllu")
    assert built == "1\ta\t_\tNOUN\t_\t_\t_\t_\t_\t_\n\n"


def test_write_tokens_with_spaces_uses_tabs_and_reads_back():
    text = format_sentence(Sentence(("New York", "is"), ("B-LOC", "O")))
    assert text == "New York\tB-LOC\nis O\n\n"
    assert next(iter_conll_lines(text.splitlines())).tokens == ("New York", "is")


def test_write_rejects_mismatched_tags():
    with pytest.raises(ValueError, match="2 tags for a sentence of 1 tokens"):
        format_sentence(Sentence(("a",)), ["O", "O"])
    with pytest.raises(ValueError):
        write_conll([Sentence(("a",), ("O",))], io.StringIO(), tags=[])


_FIELD = st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=6)
_SENTENCE = st.lists(st.tuples(_FIELD, _FIELD), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(st.lists(_SENTENCE, min_size=1, max_size=4))
def test_write_then_read_gives_the_same_tokens_and_tags(pairs: list[list[tuple[str, str]]]):
    sentences = [Sentence(tuple(t for t, _ in s), tuple(g for _, g in s)) for s in pairs]
    out = io.StringIO()
    write_conll(sentences, out)
    back = list(iter_conll_lines(out.getvalue().splitlines(keepends=True), format="columns"))
    assert [(s.tokens, s.tags) for s in back] == [(s.tokens, s.tags) for s in sentences]


def test_raw_text_where_conll_is_expected_says_it_looks_like_raw_text(tmp_path):
    news = write(tmp_path, "Angela Merkel visited Paris on Monday to meet the French president there.\n"
                           "The two leaders spoke about trade , energy and the budget of the union today.\n")
    message = error_of(news)
    assert message.startswith(f"{news}:2: this looks like raw text, not CoNLL: line 2 has 15 words where line 1 "
                              "has 12")
    ragged = write(tmp_path, "John NNP B-PER\nSmith NNP I-PER\nvisited O\n", "ragged.txt")
    assert error_of(ragged) == f"{ragged}:3: expected 3 columns as on line 1, found 2"  # a column file: as before


def test_a_gzipped_corpus_reads_as_the_plain_one(tmp_path):
    import gzip

    packed = write(tmp_path, gzip.compress(CONLL2003.read_bytes()), "sample.txt.gz")
    assert list(read_conll(packed)) == list(read_conll(CONLL2003))
    damaged = write(tmp_path, gzip.compress(CONLL2003.read_bytes())[:-30], "damaged.gz")
    assert "damaged gzip data" in error_of(damaged)
