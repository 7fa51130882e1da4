"""Standard input as it arrives: lines from a pipe or a terminal in bursts, so `tail -f log | tagger predict M`
prints each line's result as soon as the line is there, while `cat big.txt | tagger predict M` still tags
thousands of lines together.

A burst is every complete line that can be read without waiting (at most `size`); before each wait the
reader yields None, the moment to flush what was written. A regular file (`< file.txt`) is no live input:
it is read in full chunks (tagger/tagging/streaming.py).
"""
from __future__ import annotations

import io
import os
import select
import stat
from typing import IO, Iterator

from corpora.conll import decode_lines

READ_BYTES = 1 << 16  # what one os.read asks for


def is_live(stream: IO) -> bool:
    """Whether `stream` is a pipe, a terminal or a socket (data arrive over time), not a regular file nor an
    in-memory stream (no file descriptor, as in tests)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    return not stat.S_ISREG(mode)


def line_bursts(fd: int, size: int, name: str = "<stdin>") -> Iterator[list[str] | None]:
    """Lists of lines (decoded as corpora.conll.decode_lines does, line ends dropped) read from `fd`, each
    as soon as no more is waiting or `size` lines are there; None before every wait for more input."""
    number = 1  # the line number of the next line, for decoding errors
    for raw_lines in _raw_bursts(fd, size):
        if raw_lines is None:
            yield None
            continue
        yield [line.rstrip("\r\n") for line in decode_lines(raw_lines, name, first=number)]
        number += len(raw_lines)


def _raw_bursts(fd: int, size: int) -> Iterator[list[bytes] | None]:
    lines: list[bytes] = []
    partial = b""  # the start of a line whose end has not arrived yet
    while True:
        if not _waiting(fd):
            if lines:
                yield lines
                lines = []
            yield None
        data = os.read(fd, READ_BYTES)  # blocks until something arrives, or b"" at the end
        if not data:
            break
        *complete, partial = (partial + data).split(b"\n")
        lines.extend(line + b"\n" for line in complete)
        while len(lines) >= size:
            yield lines[:size]
            lines = lines[size:]
    if partial:
        lines.append(partial)
    if lines:
        yield lines


def _waiting(fd: int) -> bool:
    """Whether reading `fd` now would return at once (data, or the end of the input)."""
    return bool(select.select([fd], [], [], 0)[0])
