"""Raw text files -> sentences of tokens: what `tagger vectors` trains on and `tagger train --unlabeled` learns
from. Plain or gzipped files, one paragraph or document a line, cut into sentences and tokens by
tagger/text.py, the tokeniser `tagger predict` uses, so the tokens are those the tagger will meet.

Lines are read one at a time, never the whole file, each file opened once and read forward; every line has a
place, (file, line, byte offset), from which reading starts again at once (a resumed training continues
exactly where it stopped, without reading the lines before it).
"""
from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice, pairwise
from pathlib import Path
from typing import IO

from corpora.conll import decode_lines, looks_like_conll
from tagger.errors import InputError
from tagger.paths import check_input_file
from tagger.text import sentence_ends

SNIFF_LINES = 1000  # lines read by check_text_files for a sentence (a binary file fails on its first line)


def check_inputs(paths: Sequence[str | Path]) -> None:
    """InputError naming the first input that is missing or a directory (before any work is done)."""
    if not paths:
        raise InputError("no input files: give one or more raw text files (plain or .gz)")
    for path in paths:
        check_input_file(path)


def check_text_files(paths: Sequence[str | Path], tokenizer: str = "words") -> None:
    """check_inputs, then an error naming the file (and line) for one that is binary, not UTF-8, or has
    no sentence in its first SNIFF_LINES lines (empty, or blank lines only)."""
    check_inputs(paths)
    refuse_conll(paths)
    for path in paths:
        if not any(sentence_ends(line, tokenizer)[1] for line in islice(read_lines(path), SNIFF_LINES)):
            raise InputError("no text: the file is empty or holds only blank lines", path=str(path))


def refuse_conll(paths: Sequence[str | Path]) -> None:
    """InputError naming the first file whose first lines look like CoNLL columns, not raw text: its column
    lines would be learnt as sentences ("Hong NNP B-NP B-ORG"), tags and all."""
    for path in paths:
        if looks_like_conll(islice(read_lines(path), 20)):
            raise InputError("looks like a CoNLL file (a token and its tags a line), not raw text: give raw text, "
                             "a paragraph or a sentence a line", path=str(path))


def read_lines(path: str | Path) -> Iterator[str]:
    """The lines of a text file, gunzipped when it starts with gzip's magic bytes. A NUL byte ("binary
    file?"), invalid UTF-8 or a damaged gzip stream is an error naming the file (and line)."""
    yield from (text for _, _, text in _placed(path))


def sentences_of(line: str, tokenizer: str = "words") -> list[list[str]]:
    """One line's sentences, each a list of tokens, as `predict` cuts raw text."""
    tokens, ends = sentence_ends(line, tokenizer)
    return [tokens.texts[a:b] for a, b in pairwise([0, *ends])]


def tokenised_sentences(paths: Iterable[str | Path], tokenizer: str = "words",
                        lowercase: bool = True) -> Iterator[list[str]]:
    """Each line of each file cut into sentences of tokens (lower-cased if asked)."""
    for path in paths:
        for line in read_lines(path):
            for words in sentences_of(line, tokenizer):
                yield [w.lower() for w in words] if lowercase else words


def lines_at(paths: Sequence[str | Path], file: int = 0, line: int = 0, offset: int | None = 0
             ) -> Iterator[tuple[int, int, int, str]]:
    """(file index, line index, byte offset after the line, text) of every line from place (file, line) on, to
    the end of the last file. `offset`: where that line starts in the file's (gunzipped) bytes, from which
    reading resumes; None (a place kept without its offset) reads the lines before it again to find it."""
    for f in range(file, len(paths)):
        first, at = (line, offset) if f == file else (0, 0)
        placed = _placed(paths[f], first if at is not None else 0, at or 0)
        for n, end, text in placed:
            if n >= first:
                yield f, n, end, text


def _placed(path: str | Path, line: int = 0, offset: int = 0) -> Iterator[tuple[int, int, str]]:
    """(line index, byte offset after it, text without its line ending) of each line of one file, from line
    `line`, which starts at byte `offset` (of the gunzipped bytes, for a .gz: seeking there inflates the
    bytes before it once). Errors name the file and the line."""
    path = Path(path)
    end = offset

    def counted(stream: IO[bytes]) -> Iterator[bytes]:
        nonlocal end
        for raw_line in stream:
            end += len(raw_line)
            yield raw_line

    try:
        with path.open("rb") as raw:
            stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if raw.read(2) == b"\x1f\x8b" else raw
            raw.seek(0)
            stream.seek(offset)
            for n, text in enumerate(decode_lines(counted(stream), str(path), first=line + 1), line):
                yield n, end, text.rstrip("\r\n")
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; EOFError: a truncated .gz
        raise InputError(f"cannot read: {e}", path=str(path)) from None
