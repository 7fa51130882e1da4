"""Sentences -> ids (once per corpus) -> batches.

Training batches hold sentences of one exact length, so training never spends work on padding (and needs
no packing). Tagging batches are full and hold neighbouring lengths: the model's ragged BiLSTM gives each
sentence exactly what it gets alone, so batched predictions equal one-sentence predictions.

A batch spells each distinct word once, end to end with no padding (`spellings`), and points every token at
its word (`types`): the character encoder then works on a few distinct words instead of every token padded
to the longest word, which made it the costliest part of training.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Iterator, Sequence

import torch
from torch import Tensor

from tagger.vocab import Vocab, casing


@dataclass
class Encoded:
    """One sentence as ids (plain lists: a batch makes its tensors in one go).

    words/casing: T ids; chars: T spellings (tuples of character ids); features: F lists of T ids;
    tags: T ids, or None for unlabelled text.
    """

    words: list[int]
    chars: list[tuple[int, ...]]
    casing: list[int]
    features: list[list[int]]
    tags: list[int] | None


@dataclass
class Batch:
    words: Tensor             # (B, T)
    spellings: Tensor         # (N,) character ids of the batch's distinct words, one after another
    spelling_lengths: Tensor  # (U,) characters of each distinct word (all >= 1)
    types: Tensor             # (B, T) each token's distinct word, an index into spelling_lengths
    casing: Tensor            # (B, T)
    features: Tensor          # (B, F, T)
    mask: Tensor              # (B, T) bool
    tags: Tensor | None       # (B, T)

    def __len__(self) -> int:
        return self.words.shape[0]


class Encoder:
    """Sentences -> ids, with a per-word cache (word id, shape, character ids): text repeats its words."""

    MAX_CACHE = 200_000  # entries; the cache is dropped when full, so memory stays bounded on any input

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.cache: dict[str, tuple[int, int, tuple[int, ...]]] = {}

    def word(self, w: str) -> tuple[int, int, tuple[int, ...]]:
        hit = self.cache.get(w)
        if hit is None:
            if len(self.cache) >= self.MAX_CACHE:
                self.cache.clear()
            get = self.vocab.chars.ids.get
            spelling = tuple(get(c, 1) for c in w) or (1,)  # an empty token is spelt as one unknown character
            hit = self.cache[w] = (self.vocab.word_id(w), casing(w), spelling)
        return hit

    def __call__(self, tokens: Sequence[str], tags: Sequence[str] | None = None,
                 features: Sequence[Sequence[str]] = ()) -> Encoded:
        """Ids for one sentence; tags must be in vocab.tags (the caller checks and reports unknown ones)."""
        words, shapes, chars = zip(*map(self.word, tokens))
        vocab = self.vocab
        return Encoded(
            words=list(words), chars=list(chars), casing=list(shapes),
            features=[[index.get(v) for v in column] for index, column in zip(vocab.features, features)],
            tags=None if tags is None else [vocab.tags.ids[t] for t in tags],
        )


def collate(items: Sequence[Encoded]) -> Batch:
    """Stack sentences into a batch (padding where lengths differ) and spell its distinct words once."""
    seq_len = max(len(e.words) for e in items)
    spelt: dict[tuple[int, ...], int] = {}
    types = [[spelt.setdefault(c, len(spelt)) for c in e.chars] for e in items]

    def stack(rows: Sequence[Sequence[int]]) -> Tensor:
        return torch.tensor([list(r) + [0] * (seq_len - len(r)) for r in rows], dtype=torch.long)

    return Batch(
        words=stack([e.words for e in items]),
        spellings=torch.tensor(list(chain.from_iterable(spelt)), dtype=torch.long),
        spelling_lengths=torch.tensor(list(map(len, spelt)), dtype=torch.long),
        types=stack(types),
        casing=stack([e.casing for e in items]),
        features=stack([column for e in items for column in e.features]).view(len(items), -1, seq_len),
        mask=stack([[1] * len(e.words) for e in items]).bool(),
        tags=stack([e.tags for e in items]) if items[0].tags is not None else None,
    )


def length_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None
                   ) -> list[list[int]]:
    """Indices grouped into batches of sentences of one length; shuffled when a generator is given."""
    by_length: dict[int, list[int]] = {}
    order = torch.randperm(len(lengths), generator=generator).tolist() if generator else range(len(lengths))
    for i in order:
        by_length.setdefault(lengths[i], []).append(i)
    batches = [ids[k : k + batch_size] for ids in by_length.values() for k in range(0, len(ids), batch_size)]
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length and cut into full batches: for tagging, where the network handles mixed
    lengths exactly and full batches keep the LSTM's matrix products large."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def iter_batches(encoded: Sequence[Encoded], batch_size: int, generator: torch.Generator | None = None,
                 mixed: bool = False) -> Iterator[tuple[list[int], Batch]]:
    """Batches of one length (shuffled when a generator is given), or of neighbouring lengths if `mixed`."""
    lengths = [len(e.words) for e in encoded]
    batches = sorted_batches(lengths, batch_size) if mixed else length_batches(lengths, batch_size, generator)
    for ids in batches:
        yield ids, collate([encoded[i] for i in ids])
