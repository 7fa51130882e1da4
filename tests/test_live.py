"""Standard input as it arrives: bursts of the lines already there, and None before each wait."""
import os

import pytest

from corpora.errors import CorpusError
from tagger.tagging import live


def pipe_with(data: bytes, close: bool = True) -> tuple[int, int]:
    read, write = os.pipe()
    os.write(write, data)
    if close:
        os.close(write)
    return read, write


def test_lines_waiting_in_a_pipe_come_together_up_to_the_size():
    read, _ = pipe_with("".join(f"line {i}\n" for i in range(10)).encode())
    bursts = list(live.line_bursts(read, 4))
    os.close(read)
    assert [len(b) for b in bursts if b is not None] == [4, 4, 2]
    assert [line for b in bursts if b for line in b] == [f"line {i}" for i in range(10)]


def test_a_burst_comes_out_before_the_reader_waits_for_more():
    read, write = pipe_with(b"first\r\nsecond\nthird, unfinished", close=False)
    bursts = live.line_bursts(read, 100)
    assert next(bursts) == ["first", "second"]  # the pipe is still open: no waiting for more lines
    assert next(bursts) is None  # the moment to flush, before the wait
    os.write(write, b" now\n")
    os.close(write)
    assert [b for b in bursts if b is not None] == [["third, unfinished now"]]
    os.close(read)


def test_a_last_line_without_a_line_end_is_kept():
    read, _ = pipe_with(b"one\ntwo")
    assert [b for b in live.line_bursts(read, 100) if b is not None] == [["one", "two"]]
    os.close(read)


def test_invalid_utf8_names_its_line_across_bursts():
    read, _ = pipe_with(b"ok\nok\nok\nbad \xff\n")
    with pytest.raises(CorpusError, match=r"<stdin>:4"):
        list(live.line_bursts(read, 2))
    os.close(read)


def test_only_pipes_and_terminals_are_live(tmp_path):
    import io

    path = tmp_path / "in.txt"
    path.write_text("a\n")
    read, write = os.pipe()
    with open(path, "rb") as regular, os.fdopen(read, "rb") as pipe:
        assert not live.is_live(regular)
        assert live.is_live(pipe)
    os.close(write)
    assert not live.is_live(io.BytesIO(b"a\n"))  # no file descriptor (a test's standard input)
