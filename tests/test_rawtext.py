"""Raw text files read forward from a place (file, line, byte offset): what cross-view training's stream
resumes from (tagger/training/unlabeled.py)."""
from __future__ import annotations

import gzip

import pytest

from corpora.errors import CorpusError
from tagger.rawtext import lines_at, read_lines


def write(path, data: bytes):
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("name", ["a.txt", "a.txt.gz"])
def test_reading_from_a_lines_offset_gives_the_lines_that_follow_it(tmp_path, name):
    first = write(tmp_path / name, "\ufeffÉté one .\r\nline two .\n\nline four, último .\n".encode())
    second = write(tmp_path / "b.txt", b"next file .\n")
    whole = list(lines_at([first, second]))
    assert [text for *_, text in whole] == ["Été one .", "line two .", "", "line four, último .", "next file ."]
    assert [(f, n) for f, n, _, _ in whole] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    for k, (f, n, end, _) in enumerate(whole[:-1]):  # resume after each line, at its end offset
        resumed = list(lines_at([first, second], f, n + 1, end))
        assert resumed == whole[k + 1:]


def test_a_place_without_its_offset_reads_the_lines_before_it_to_find_it(tmp_path):
    path = write(tmp_path / "a.txt.gz", b"one .\ntwo .\nthree .\n")
    assert list(lines_at([path], 0, 2, None)) == list(lines_at([path]))[2:]


def test_invalid_utf8_after_a_resumed_place_names_its_line(tmp_path):
    path = write(tmp_path / "a.txt", b"one .\ntwo .\nbad \xff .\n")
    _, _, end, _ = next(lines_at([path]))
    with pytest.raises(CorpusError, match=r"a\.txt:3: invalid UTF-8"):
        list(lines_at([path], 0, 1, end))


def test_read_lines_drops_line_endings_and_a_bom(tmp_path):
    path = write(tmp_path / "a.txt", "\ufeffone\r\ntwo\n".encode())
    assert list(read_lines(path)) == ["one", "two"]
