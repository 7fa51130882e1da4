"""Read CoNLL-style corpora (corpora/conll_writer.py writes them): one token per line, columns, blank lines between sentences.

Three dialects: `conll2003` (token POS chunk NER, -DOCSTART- lines), `columns` (any number of space- or
tab-separated columns, tag last) and `conllu` (Universal Dependencies, 10 tab-separated columns).
Reading streams line by line so large corpora never sit in memory, and every problem in a user's file is a
CorpusError that names the file and line, because users fix their files from that message.
"""
from __future__ import annotations

import gzip
import itertools
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

from corpora.errors import CorpusError
from corpora.schemes import is_span_tag

FORMATS = ("auto", "conll2003", "columns", "conllu")

DOCSTART = "-DOCSTART-"
_SPACES = re.compile(r"[ \t\f\v]+")  # ASCII only: a no-break space inside a token is part of the token
EDGE_SPACE = " \t\f\v\r\n"
_CONLLU_ID = re.compile(r"\d+([-.]\d+)?")
_CONLLU_MARKERS = ("# sent_id", "# text", "# newdoc", "# newpar", "# global.columns")
CONLLU_FORM, CONLLU_UPOS, CONLLU_WIDTH = 1, 3, 10
_DETECT_LINES = 20  # non-blank lines `auto` looks at before choosing a format
GZIP_MAGIC = b"\x1f\x8b"

Row = tuple[str, ...]
Block = list[tuple[int, list[str]]]  # (line number, fields) for each token line of one sentence


@dataclass(frozen=True)
class Sentence:
    """One sentence: its tokens, its tags (None when unlabelled) and, when read from a file, every column."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None = None
    rows: tuple[Row, ...] = ()
    line: int = 0
    document: Row = ()  # the -DOCSTART- line's fields when a document opens just before this sentence


# --- reading -------------------------------------------------------------------------------------------


def read_conll(
    path: str | os.PathLike, format: str = "auto", tag_column: int | None = None, labelled: bool = True
) -> Iterator[Sentence]:
    """Stream the sentences of a CoNLL file; see `iter_conll_lines` for the arguments.

    The path is checked at once (missing, a directory, empty); decoding problems (invalid UTF-8, a NUL
    byte) surface while iterating, with their line number. A file without a sentence is an error too.
    """
    source = os.fspath(path)
    source = source if isinstance(source, str) else os.fsdecode(source)
    _check_file(source)
    sentences = iter_conll_lines(_decoded_lines(source), source, format, tag_column, labelled)
    return _require_sentences(sentences, source)


def iter_conll_lines(
    lines: Iterable[str],
    source: str = "<input>",
    format: str = "auto",
    tag_column: int | None = None,
    labelled: bool = True,
) -> Iterator[Sentence]:
    """Parse sentences from text lines (with or without line endings); `source` names them in errors.

    `format` is one of FORMATS ("auto" looks at the first lines). The token is column 0 (FORM in CoNLL-U);
    the tag is the last column (UPOS in CoNLL-U) unless `tag_column` (0-based, negative allowed) says
    otherwise. With `labelled=False` only tokens are read and `tags` is None, so a one-column file is fine.
    """
    check_format(format, allow_auto=True)
    return _parse(lines, source, format, tag_column, labelled)


def detect_format(first_lines: list[str]) -> str:
    """Guess the dialect from a file's first lines: "conllu", "conll2003" or "columns".

    CoNLL-U: a `# sent_id`/`# text` comment, or a first data line of 10 tab-separated fields with a
    numeric id. CoNLL-2003: a -DOCSTART- line, or every line has 4 columns ending in a span tag.
    """
    lines = [line.rstrip("\r\n").lstrip("\ufeff") for line in first_lines if line.strip(EDGE_SPACE)]
    if not lines:
        return "columns"
    if any(line.startswith(_CONLLU_MARKERS) for line in lines) or _looks_like_conllu(lines):
        return "conllu"
    rows = [_split(line.strip(EDGE_SPACE)) for line in lines]
    if any(row[0] == DOCSTART for row in rows):
        return "conll2003"
    if all(len(row) == 4 and is_span_tag(row[-1]) for row in rows):
        return "conll2003"
    return "columns"


def looks_like_conll(first_lines: Iterable[str]) -> bool:
    """Whether a file's first lines look like CoNLL columns (a -DOCSTART- line, or a token and a span tag on
    every line) rather than raw text: what `predict` and `select` sniff, and raw-text readers refuse."""
    filled = [line.split() for line in first_lines if line.strip()]
    return bool(filled) and (filled[0][0] == DOCSTART or all(
        1 < len(fields) <= 10 and is_span_tag(fields[-1]) for fields in filled))


def _looks_like_conllu(lines: list[str]) -> bool:
    data = [line for line in lines if not line.startswith("#")]
    fields = data[0].split("\t") if data else []
    return len(fields) == CONLLU_WIDTH and _CONLLU_ID.fullmatch(fields[0]) is not None




def check_format(format: str, allow_auto: bool) -> None:
    allowed = FORMATS if allow_auto else FORMATS[1:]
    if format not in allowed:
        raise ValueError(f"unknown corpus format {format!r}; expected one of {', '.join(allowed)}")


def _check_file(path: str) -> None:
    """Fail early, naming the path, for things that are not a readable non-empty file."""
    if not os.path.exists(path):
        raise CorpusError(path, None, "no such file")
    if os.path.isdir(path):
        raise CorpusError(path, None, "is a directory, not a corpus file")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise CorpusError(path, None, "empty file")
    if not os.access(path, os.R_OK):
        raise CorpusError(path, None, "permission denied")


def _decoded_lines(path: str) -> Iterator[str]:
    """The file's lines as text, one at a time: UTF-8 (a BOM on line 1 is dropped), LF or CRLF endings."""
    return file_lines(path)


@contextmanager
def open_bytes(path: str) -> Iterator[IO[bytes]]:
    """A file's bytes, gunzipped when it starts with gzip's magic bytes, whatever its name: the one way
    every CoNLL file, raw-text file and `predict`/`select` input is opened."""
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise CorpusError(path, None, f"cannot read the file ({e.strerror})") from None
    with raw:
        if raw.peek(2)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
        else:
            yield raw


def file_lines(path: str) -> Iterator[str]:
    """The lines of a plain or gzipped file as decode_lines decodes them; a damaged or truncated gzip stream
    is a CorpusError naming the file."""
    with open_bytes(path) as stream:
        try:
            yield from decode_lines(stream, path)
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; EOFError: a truncated .gz
            raise CorpusError(path, None, f"damaged gzip data ({e})") from None


def decode_lines(stream: Iterable[bytes], name: str, first: int = 1) -> Iterator[str]:
    """Lines of a byte stream as text (line endings kept): UTF-8, a BOM on line 1 dropped; invalid UTF-8 and
    NUL bytes are a CorpusError naming `name` and the line. The one decoder of files and standard input.
    `first`: the number of the stream's first line (standard input decoded a burst at a time)."""
    for number, raw in enumerate(stream, start=first):
        if b"\0" in raw:
            raise CorpusError(name, number, "binary file? (found a NUL byte)")
        yield _decode(raw, name, number)


def _decode(raw: bytes, path: str, number: int) -> str:
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as e:
        message = f"invalid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})"
        raise CorpusError(path, number, message) from None


def _require_sentences(sentences: Iterator[Sentence], source: str) -> Iterator[Sentence]:
    found = False
    for sentence in sentences:
        found = True
        yield sentence
    if not found:
        raise CorpusError(source, None, "no sentences found")


def _parse(
    lines: Iterable[str], source: str, format: str, tag_column: int | None, labelled: bool
) -> Iterator[Sentence]:
    numbered = _numbered(lines)
    if format == "auto":
        head = _take_head(numbered)
        format = detect_format([line for _, line in head])
        numbered = itertools.chain(head, numbered)
    if format == "conllu":
        for block in _conllu_blocks(numbered, source):
            yield _conllu_sentence(block, source, tag_column, labelled)
    else:
        for document, block in _column_blocks(numbered):
            yield _column_sentence(block, source, tag_column, labelled, document)


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, line) from 1, without a BOM at the start of the first line."""
    for number, line in enumerate(lines, start=1):
        yield number, line.lstrip("\ufeff") if number == 1 else line


def _take_head(numbered: Iterator[tuple[int, str]]) -> list[tuple[int, str]]:
    """The first lines of the input, up to _DETECT_LINES non-blank ones (kept to be parsed afterwards)."""
    head, non_blank = [], 0
    for item in numbered:
        head.append(item)
        non_blank += bool(item[1].strip(EDGE_SPACE))
        if non_blank >= _DETECT_LINES:
            break
    return head


def _split(line: str) -> list[str]:
    """Fields of a data line: split on tabs when there is one (fields may contain spaces), else on spaces."""
    if "\t" in line:
        return [field.strip(EDGE_SPACE) for field in line.split("\t")]
    return _SPACES.split(line)


def _column_blocks(numbered: Iterable[tuple[int, str]]) -> Iterator[tuple[Row, Block]]:
    """Group token lines into sentences: blank lines and -DOCSTART- lines end a sentence. Each comes with
    the fields of the -DOCSTART- line met since the sentence before it, () if none: writers keep the
    document boundaries. (A document without a sentence, -DOCSTART- right after -DOCSTART-, is not kept.)"""
    block: Block = []
    document: Row = ()
    for number, line in numbered:
        line = line.strip(EDGE_SPACE)
        fields = _split(line) if line else []
        if not fields or fields[0] == DOCSTART:
            if block:
                yield document, block
                document = ()
            block = []
            if fields:
                document = tuple(fields)
        else:
            block.append((number, fields))
    if block:
        yield document, block


def _column_sentence(block: Block, source: str, tag_column: int | None, labelled: bool,
                     document: Row = ()) -> Sentence:
    first_number, first = block[0]
    width = len(first)
    for number, fields in block:
        if len(fields) != width:
            message = f"expected {width} columns as on line {first_number}, found {len(fields)}"
            if _looks_like_prose(first, fields):
                message = (f"this looks like raw text, not CoNLL: line {number} has {len(fields)} words where "
                           f"line {first_number} has {width} (CoNLL has a token a line, its tag in the last "
                           "column; `tagger predict` tags raw text)")
            raise CorpusError(source, number, message)
        if not fields[0]:
            raise CorpusError(source, number, "empty token (column 1)")
    tokens = tuple(fields[0] for _, fields in block)
    tags = _tags(block, source, _tag_index(source, first_number, width, tag_column)) if labelled else None
    return Sentence(tokens, tags, tuple(tuple(fields) for _, fields in block), first_number, document)


def _looks_like_prose(first: list[str], other: list[str]) -> bool:
    """Whether two lines of different widths read as sentences of raw text, not token lines: many fields
    each, and no tag (of any scheme) at the end of the first."""
    return min(len(first), len(other)) >= 5 and not is_span_tag(first[-1])


def _tag_index(source: str, number: int, width: int, tag_column: int | None) -> int:
    """The 0-based tag column for lines of `width` columns, or a CorpusError at line `number`."""
    if tag_column is None:
        if width == 1:
            raise CorpusError(source, number, "missing tag column (the line has only a token)")
        return width - 1
    if not -width <= tag_column < width:
        message = f"tag column {tag_column} is out of range: the line has {width} columns"
        raise CorpusError(source, number, message)
    return tag_column % width


def _tags(block: Block, source: str, index: int, missing: tuple[str, ...] = ("",)) -> tuple[str, ...]:
    for number, fields in block:
        if fields[index] in missing:
            raise CorpusError(source, number, f"empty tag field (column {index + 1})")
    return tuple(fields[index] for _, fields in block)


def _conllu_blocks(numbered: Iterable[tuple[int, str]], source: str) -> Iterator[Block]:
    """Group CoNLL-U word lines into sentences, skipping comments, multiword tokens and empty nodes."""
    block: Block = []
    for number, line in numbered:
        line = line.rstrip("\r\n")
        if not line.strip(EDGE_SPACE):
            if block:
                yield block
            block = []
        elif not line.startswith("#"):
            fields = line.split("\t")
            if len(fields) != CONLLU_WIDTH:
                message = f"expected {CONLLU_WIDTH} tab-separated columns (CoNLL-U), found {len(fields)}"
                raise CorpusError(source, number, message)
            if fields[0].isdigit():
                block.append((number, fields))
            elif not _CONLLU_ID.fullmatch(fields[0]):
                raise CorpusError(source, number, f"bad CoNLL-U word id {fields[0]!r}")
    if block:
        yield block


def _conllu_sentence(block: Block, source: str, tag_column: int | None, labelled: bool) -> Sentence:
    first_number = block[0][0]
    for number, fields in block:
        if not fields[CONLLU_FORM]:
            raise CorpusError(source, number, "empty FORM (column 2)")
    tokens = tuple(fields[CONLLU_FORM] for _, fields in block)
    tags = None
    if labelled:
        index = CONLLU_UPOS
        if tag_column is not None:
            index = _tag_index(source, first_number, CONLLU_WIDTH, tag_column)
        tags = _tags(block, source, index, missing=("", "_"))
    return Sentence(tokens, tags, tuple(tuple(fields) for _, fields in block), first_number)
