"""Write CoNLL-style corpora in the dialects corpora/conll.py reads: a sentence's rows with tags put in (the
last column replaced, or a column appended), -DOCSTART- lines written back where a document began.
"""
from __future__ import annotations

from typing import Iterable, Sequence, TextIO

from corpora.conll import CONLLU_UPOS, CONLLU_WIDTH, DOCSTART, EDGE_SPACE, Row, Sentence, check_format



def write_conll(
    sentences: Iterable[Sentence],
    out: TextIO,
    tags: Iterable[Sequence[str]] | None = None,
    format: str = "columns",
) -> None:
    """Write sentences to `out`, one `format_sentence` block each; `tags` (one sequence per sentence)
    replaces the sentences' own tags, e.g. a model's predictions."""
    check_format(format, allow_auto=False)
    if tags is None:
        for sentence in sentences:
            out.write(format_sentence(sentence, None, format))
        return
    for sentence, sentence_tags in zip(sentences, tags, strict=True):
        out.write(format_sentence(sentence, sentence_tags, format))


def format_sentence(sentence: Sentence, tags: Sequence[str] | None = None, format: str = "columns",
                    tag_column: int = -1, append: bool = False, document: bool = False) -> str:
    """The text of one sentence, ending in a blank line.

    columns: `token tag` per line (tab-separated when a field contains a space, so reading splits it back
    the same way). conll2003: the original rows with column `tag_column` (default: the last) replaced by the
    tag, or with the tag appended as a new last column when `append` (a prediction beside the gold) or the
    row has one column; `token tag` without rows. conllu: the original 10 columns with UPOS replaced, or
    minimal rows when the sentence did not come from a CoNLL-U file.
    With `document`, a sentence that opened a document (`Sentence.document`) comes after its -DOCSTART- line
    and a blank line, the line's tag column being O as every row's is changed (not in conllu).
    """
    check_format(format, allow_auto=False)
    tags = sentence.tags if tags is None else tuple(tags)
    if tags is not None and len(tags) != len(sentence.tokens):
        raise ValueError(f"{len(tags)} tags for a sentence of {len(sentence.tokens)} tokens")
    rows = _output_rows(sentence, tags, format, tag_column, append)
    text = "".join(_join(row, tab=format == "conllu") + "\n" for row in rows) + "\n"
    if document and sentence.document and format != "conllu":
        text = _join(_document_row(sentence, tags is not None, format, tag_column, append), tab=False) + "\n\n" + text
    return text


def _document_row(sentence: Sentence, tagged: bool, format: str, tag_column: int, append: bool) -> Row:
    """The -DOCSTART- line before `sentence` as its rows are written: O where their tag goes."""
    row = sentence.document
    if format == "columns" or not sentence.rows:
        return (DOCSTART, "O") if tagged else (DOCSTART,)
    if not tagged:
        return row
    if append or len(row) == 1 or not -len(row) <= tag_column < len(row):
        return row + ("O",)
    return _replace(row, tag_column, "O")


def _output_rows(sentence: Sentence, tags: Sequence[str] | None, format: str, tag_column: int = -1,
                 append: bool = False) -> list[Row]:
    if format == "conllu":
        return _conllu_rows(sentence, tags)
    if format == "conll2003" and sentence.rows:
        if tags is None:
            return list(sentence.rows)
        return [row + (tag,) if append or len(row) == 1 else _replace(row, tag_column, tag)
                for row, tag in zip(sentence.rows, tags)]
    if tags is None:
        return [(token,) for token in sentence.tokens]
    return list(zip(sentence.tokens, tags))


def _replace(row: Row, column: int, value: str) -> Row:
    fields = list(row)
    fields[column] = value
    return tuple(fields)


def _conllu_rows(sentence: Sentence, tags: Sequence[str] | None) -> list[Row]:
    from_conllu = sentence.rows and all(len(row) == CONLLU_WIDTH for row in sentence.rows)
    if from_conllu:
        rows = [list(row) for row in sentence.rows]
    else:
        rows = [[str(i), token] + ["_"] * 8 for i, token in enumerate(sentence.tokens, start=1)]
    for row, tag in zip(rows, tags or ()):
        row[CONLLU_UPOS] = tag
    return [tuple(row) for row in rows]


def _join(row: Row, tab: bool) -> str:
    """One output line: tab-separated when asked or when a field contains a space, else space-separated."""
    for field in row:
        if not field.strip(EDGE_SPACE) or any(c in field for c in "\t\n\r"):
            raise ValueError(f"cannot write field {field!r}: it is blank or contains a tab or line break")
    return "\t".join(row) if tab or any(" " in field for field in row) else " ".join(row)
