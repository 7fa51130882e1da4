"""Shards of text, JSONL and Parquet as Ray Data rows that carry their source file and line: the reading half
of tagging on Ray (tagger/serving/ray_data.py). Each shard streams in blocks that fit Ray's object store;
a bad line is an InputError naming its file and line.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator

from corpora.conll import decode_lines
from corpora.errors import CorpusError
from tagger.errors import InputError

if TYPE_CHECKING:
    import pyarrow

SOURCE_COLUMNS = ("file", "line")  # added to every input row: where it came from (line: 1-based; Parquet: row)
ROWS_PER_BLOCK = 4096  # rows a read task yields at a time (a block), so a large shard streams ...
BLOCK_BYTES = 4 << 20  # ... or fewer when they are large (JSONL rows with bulky fields): blocks fit the store
READ_BYTES = 1 << 20


def shard_datasource(paths: list[str], input_format: str, text_column: str):
    """A Ray datasource reading text, JSONL or Parquet shards into rows with `file` and `line` columns.

    Our own reader (not ray.data.read_text / read_json) because the rows must carry their line number and a
    bad line must be an error naming its shard and line, as `tagger predict` reports it."""
    from ray.data.datasource import FileBasedDatasource

    class Shards(FileBasedDatasource):
        def _open_input_source(self, filesystem, path, **open_args):
            if input_format == "parquet":  # needs random access (its footer), not a stream
                return filesystem.open_input_file(path)
            return super()._open_input_source(filesystem, path, **open_args)

        def _read_stream(self, f, path: str) -> Iterator["pyarrow.Table"]:
            if input_format == "parquet":
                yield from _parquet_blocks(f, path, text_column)
            else:
                yield from _line_blocks(f, path, input_format, text_column)

    return Shards(paths)


def _line_blocks(f, path: str, input_format: str, text_column: str) -> Iterator["pyarrow.Table"]:
    import pyarrow as pa

    rows: list[dict] = []
    size = 0
    for number, line in iter_lines(f, path):
        size += len(line)
        if input_format == "text":
            rows.append({"text": line, "file": path, "line": number})
        elif line.strip():
            rows.append(_json_row(line, path, number, text_column))
        if len(rows) >= ROWS_PER_BLOCK or size >= BLOCK_BYTES:
            yield pa.Table.from_pylist(rows)
            rows, size = [], 0
    if rows:
        yield pa.Table.from_pylist(rows)


def iter_lines(f, path: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its line end) of a binary stream, split on b"\\n" as `tagger predict`
    splits and decoded by the same decoder (corpora.conll.decode_lines): a BOM is dropped; invalid UTF-8
    and NUL bytes are an InputError naming the file and line (a TaggerError comes back from a Ray task)."""
    try:
        for number, line in enumerate(decode_lines(_raw_lines(f), path), start=1):
            yield number, line.rstrip("\r\n")
    except CorpusError as e:
        raise InputError(e.message, path=e.path, line=e.line) from None


def _raw_lines(f) -> Iterator[bytes]:
    """The lines of a stream that has only read() (pyarrow's), their line ends kept."""
    rest = b""
    while chunk := f.read(READ_BYTES):
        *lines, rest = (rest + chunk).split(b"\n")
        yield from (line + b"\n" for line in lines)
    if rest:
        yield rest


def _json_row(line: str, path: str, number: int, text_column: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path=path, line=number) from None
    if not isinstance(row, dict):
        raise InputError("a JSONL line must be an object", path=path, line=number)
    if not isinstance(row.get(text_column), str):
        raise InputError(f"no string {text_column!r} field: choose the text's field with --text-column",
                         path=path, line=number)
    taken = [c for c in SOURCE_COLUMNS if c in row]
    if taken:
        raise InputError(f"has a field named {taken[0]!r}, which the output uses for the source", path=path,
                         line=number)
    return {**row, "file": path, "line": number}


def _parquet_blocks(f, path: str, text_column: str) -> Iterator["pyarrow.Table"]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        shard = pq.ParquetFile(f)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a Parquet file ({e})", path=path) from None
    names = shard.schema_arrow.names
    if text_column not in names:
        raise InputError(f"no column {text_column!r} (columns: {', '.join(names)}): choose one with --text-column",
                         path=path)
    taken = [c for c in SOURCE_COLUMNS if c in names]
    if taken:
        raise InputError(f"has a column named {taken[0]!r}, which the output uses for the source", path=path)
    first = 1
    for batch in shard.iter_batches(batch_size=ROWS_PER_BLOCK):
        table = pa.Table.from_batches([batch])
        table = table.append_column("file", pa.array([path] * len(table), pa.string()))
        yield table.append_column("line", pa.array(range(first, first + len(table)), pa.int64()))
        first += len(table)
