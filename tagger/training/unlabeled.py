"""Unlabelled sentences for cross-view training (tagger/training/cvt.py), streamed from raw text files.

The files are read a buffer at a time (about BUFFER_BATCHES batches of sentences, whole lines), never whole:
a buffer's sentences are tokenised with the model's tokeniser, encoded, grouped by length and shuffled
(seeded by the buffer's place), and handed out as batches of one length; after the last file, reading
starts again at the first. The open file is read on from where the last buffer stopped, never again from its
start. Where the stream stands is five numbers, `Stream.position`: the pass, the file, line and byte offset
where the current buffer starts, and the batches already taken from it. A checkpoint keeps them, and a
stream built at that position continues with the same batches (one kept before offsets were, four numbers
without the offset, too: its file is read up to the line once).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from tagger.encode import Encoded, length_batches
from tagger.errors import InputError
from tagger.rawtext import lines_at, sentences_of

BUFFER_BATCHES = 64   # batches' worth of sentences read, grouped by length and shuffled at a time
MAX_TOKENS = 150      # longer sentences (tables, lists run together) are skipped
START = [0, 0, 0, 0, 0]  # pass, file, line, byte offset, batches taken from the buffer starting there


class Stream:
    """Global batches of unlabelled sentences (every process makes the same ones), resumable at `position`."""

    def __init__(self, paths: Sequence[str | Path], encode: Callable[[list[str]], Encoded], tokenizer: str,
                 batch_size: int, seed: int, position: Sequence[int] = START,
                 prepare: Callable[[list[Encoded]], None] | None = None):
        self.paths, self.encode, self.tokenizer = [str(p) for p in paths], encode, tokenizer
        self.batch_size, self.seed, self.prepare = batch_size, seed, prepare
        *start, taken = position
        self.start = start if len(start) == 4 else [*start, None]  # [pass, file, line, offset]
        self._lines, self._at = None, None  # the lines being read and the place of the next one
        self._fill()
        self.taken = taken

    @property
    def position(self) -> list[int]:
        return [*self.start, self.taken]

    def next_batch(self) -> list[Encoded]:
        """The next batch: sentences of one length (at most batch_size)."""
        if self.taken == len(self.batches):
            self.start = self.next_start
            self._fill()
        batch = [self.sentences[i] for i in self.batches[self.taken]]
        self.taken += 1
        return batch

    def _fill(self) -> None:
        """Read, encode and batch the buffer that starts at self.start."""
        sentences, self.next_start = self._read(self.start)
        if not sentences:  # the last buffer ended with the files: start the next pass
            self.start = self.next_start
            sentences, self.next_start = self._read(self.start)
            if not sentences:
                raise InputError(f"no sentence of at most {MAX_TOKENS} tokens in the unlabelled text",
                                 path=", ".join(self.paths))
        if self.prepare is not None:
            self.prepare(sentences)
        generator = torch.Generator().manual_seed(_seed(self.seed, self.start[:3]))
        self.sentences, self.taken = sentences, 0
        self.batches = length_batches([len(s) for s in sentences], self.batch_size,
                                      lambda n: torch.randperm(n, generator=generator).tolist())

    def _read(self, start: list) -> tuple[list[Encoded], list]:
        """(the encoded sentences of whole lines from `start` on, enough for a buffer or up to the end of
        the files; where the next buffer starts). The lines read on from the last buffer's end when `start`
        is that end, else from `start` (a new stream, or a new pass)."""
        passes, file, line, offset = start
        if self._lines is None or self._at != start[1:]:
            self._lines = lines_at(self.paths, file, line, offset)
        sentences: list[Encoded] = []
        for f, n, end, text in self._lines:
            sentences += [self.encode(s) for s in sentences_of(text, self.tokenizer) if len(s) <= MAX_TOKENS]
            if len(sentences) >= self.batch_size * BUFFER_BATCHES:
                self._at = [f, n + 1, end]
                return sentences, [passes, *self._at]
        self._lines = None
        return sentences, [passes + 1, 0, 0, 0]


def _seed(seed: int, start: Sequence[int]) -> int:
    """The shuffle's seed of the buffer starting at `start`: every pass over the text is shuffled anew."""
    text = f"{seed}:{':'.join(map(str, start))}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def due(step: int, ratio: float) -> int:
    """Unlabelled batches to train after labelled batch `step` (0-based) of an epoch, `ratio` a batch: 1, 1,
    ... for 1.0; 0, 1, 0, 1 ... for 0.5; 2, 2 ... for 2.0."""
    return int((step + 1) * ratio + 1e-9) - int(step * ratio + 1e-9)
