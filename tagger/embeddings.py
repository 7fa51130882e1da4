"""Pretrained word vectors in text format (GloVe: no header; word2vec text: a `count dim` header), plain or .gz.

pyarrow (installed with `datasets`) parses the numbers in C++: 400,000 x 50 GloVe loads in about 3 s here.
Files it cannot parse (trailing spaces, ragged rows) fall back to a line-by-line reader that names the bad line.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Sequence

import numpy as np

from tagger.errors import InputError
from tagger.paths import check_input_file


def load_vectors(path: str | Path, expected_dim: int | None = None) -> tuple[list[str], np.ndarray]:
    """Every row as (word, vector): the words and a (num_words, dim) float32 matrix; duplicates keep the first."""
    path = Path(path)
    data = _read_bytes(path)
    header = _header_lines(data)
    first = data.split(b"\n", header + 1)[header] if data.count(b"\n") >= header else b""
    dim = len(first.split()) - 1
    if dim < 1:
        raise InputError("no vectors found", path=str(path), line=header + 1)
    try:
        words, vectors = _parse_fast(data, header, dim)
    except Exception:  # pyarrow refuses anything irregular: the slow reader finds and names the problem
        words, vectors = _parse_slow(data, header, dim, path)
    if expected_dim is not None and dim != expected_dim:
        raise InputError(f"vectors have {dim} dimensions but the config asks for {expected_dim}", path=str(path))
    keep = _first_occurrences(words)
    if len(keep) != len(words):
        words, vectors = [words[i] for i in keep], vectors[keep]
    return words, vectors


def stack_vectors(sets: Sequence[tuple[list[str], np.ndarray]],
                  lowercase: bool = True) -> tuple[list[str], np.ndarray]:
    """Several vector sets as one (`--embeddings A --embeddings B`): every word of any set, in order of first
    appearance, with its vectors concatenated, so the dimensions add: (num_words, dim_A + dim_B + ...).

    A word that a set lacks takes that set's vector of its lower-cased form when `lowercase` (the lookup
    `Vocab.word_id` falls back to), else zeros: the part a set cannot say about a word adds nothing."""
    ids: dict[str, int] = {}
    for words, _ in sets:
        for w in words:
            ids.setdefault(w, len(ids))
    out = np.zeros((len(ids), sum(m.shape[1] for _, m in sets)), dtype=np.float32)  # (num_words, total_dim)
    start = 0
    for words, matrix in sets:
        own = dict(zip(words, range(len(words))))
        rows = [own.get(w, own.get(w.lower(), -1) if lowercase else -1) for w in ids]
        found = np.flatnonzero(np.asarray(rows) >= 0)
        out[found, start:start + matrix.shape[1]] = matrix[np.asarray(rows)[found]]
        start += matrix.shape[1]
    return list(ids), out


def check_vectors_file(path: str | Path) -> None:
    """Raise InputError unless `path` is a file (what `load_vectors` would find first, without reading it)."""
    check_input_file(path, "embeddings file")


def _read_bytes(path: Path) -> bytes:
    check_vectors_file(path)
    try:
        with path.open("rb") as f:
            data = f.read()
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        return data.removeprefix(b"\xef\xbb\xbf")  # a BOM would hide a word2vec header, or join the first word
    except (OSError, EOFError) as e:
        raise InputError(f"cannot read embeddings: {e}", path=str(path)) from None


def _header_lines(data: bytes) -> int:
    """1 for a word2vec `count dim` header line, else 0."""
    parts = data[:200].split(b"\n", 1)[0].split()
    return int(len(parts) == 2 and all(p.isdigit() for p in parts))


def _parse_fast(data: bytes, header: int, dim: int) -> tuple[list[str], np.ndarray]:
    import pyarrow as pa
    import pyarrow.csv as csv

    names = ["word"] + [f"v{i}" for i in range(dim)]
    table = csv.read_csv(
        pa.py_buffer(data),
        read_options=csv.ReadOptions(column_names=names, skip_rows=header, block_size=1 << 24),
        parse_options=csv.ParseOptions(delimiter=" ", quote_char=False, escape_char=False, double_quote=False),
        convert_options=csv.ConvertOptions(column_types={"word": pa.string(), **{n: pa.float32() for n in names[1:]}}),
    )
    vectors = np.stack([table.column(n).to_numpy() for n in names[1:]], axis=1)  # (num_words, dim)
    if not np.isfinite(vectors).all():
        raise ValueError("missing or non-finite values")  # the slow reader names the line
    return table.column("word").to_pylist(), vectors


def _parse_slow(data: bytes, header: int, dim: int, path: Path) -> tuple[list[str], np.ndarray]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError("invalid UTF-8", path=str(path), line=data[: e.start].count(b"\n") + 1) from None
    words, rows = [], []
    # only "\n" ends a row and only " " separates fields, as for pyarrow: words may hold U+0085, U+00A0, U+2028
    for number, line in enumerate(text.split("\n")[header:], start=header + 1):
        parts = [p for p in line.rstrip("\r").split(" ") if p]
        if not parts:
            continue
        if len(parts) != dim + 1:
            raise InputError(f"row has {len(parts) - 1} values, expected {dim} as on the first row",
                             path=str(path), line=number)
        try:
            row = [float(x) for x in parts[1:]]
        except ValueError:
            raise InputError("row holds a value that is not a number", path=str(path), line=number) from None
        if not np.isfinite(row).all():  # nan or inf would turn every loss it touches into nan
            raise InputError("row holds nan or inf", path=str(path), line=number)
        rows.append(row)
        words.append(parts[0])
    return words, np.asarray(rows, dtype=np.float32).reshape(len(words), dim)


def _first_occurrences(words: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    for i, w in enumerate(words):
        seen.setdefault(w, i)
    return sorted(seen.values())
