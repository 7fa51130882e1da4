"""Sentences -> id tensors (once per corpus) -> batches of sentences of one length (no padding, no packing).

Grouping by exact length makes a padded BiLSTM see exactly what an unbatched one sees, at padded speed:
batched predictions equal one-sentence predictions, and training never wastes work on padding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor

from tagger.vocab import Vocab, casing


@dataclass
class Encoded:
    """One sentence as ids. words/casing (T,), chars (T, L) padded with 0, features (F, T), tags (T,) or None."""

    words: Tensor
    chars: Tensor
    casing: Tensor
    features: Tensor
    tags: Tensor | None


@dataclass
class Batch:
    words: Tensor        # (B, T)
    chars: Tensor        # (B, T, L)
    casing: Tensor       # (B, T)
    features: Tensor     # (B, F, T)
    mask: Tensor         # (B, T) bool
    tags: Tensor | None  # (B, T)

    def __len__(self) -> int:
        return self.words.shape[0]


class Encoder:
    """Sentences -> ids, with a per-word cache (word id, shape, character ids): text repeats its words."""

    MAX_CACHE = 200_000  # entries; the cache is dropped when full, so memory stays bounded on any input

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.cache: dict[str, tuple[int, int, list[int]]] = {}

    def word(self, w: str) -> tuple[int, int, list[int]]:
        hit = self.cache.get(w)
        if hit is None:
            if len(self.cache) >= self.MAX_CACHE:
                self.cache.clear()
            get = self.vocab.chars.ids.get
            hit = self.cache[w] = (self.vocab.word_id(w), casing(w), [get(c, 1) for c in w])
        return hit

    def __call__(self, tokens: Sequence[str], tags: Sequence[str] | None = None,
                 features: Sequence[Sequence[str]] = ()) -> Encoded:
        """Ids for one sentence; tags must be in vocab.tags (the caller checks and reports unknown ones)."""
        words, shapes, chars = zip(*map(self.word, tokens))
        width = max(map(len, chars))
        vocab = self.vocab
        feats = torch.tensor([[index.get(v) for v in column] for index, column in zip(vocab.features, features)],
                             dtype=torch.long).reshape(len(vocab.features), len(tokens))  # (F, T)
        return Encoded(
            words=torch.tensor(words),
            chars=torch.tensor([c + [0] * (width - len(c)) for c in chars]),  # (T, L)
            casing=torch.tensor(shapes),
            features=feats,
            tags=None if tags is None else torch.tensor([vocab.tags.ids[t] for t in tags]),
        )


def collate(items: Sequence[Encoded]) -> Batch:
    """Stack sentences into a batch (padding words and chars where lengths differ)."""
    seq_len = max(len(e.words) for e in items)
    width = max(e.chars.shape[1] for e in items)
    b = len(items)
    words = torch.zeros(b, seq_len, dtype=torch.long)
    chars = torch.zeros(b, seq_len, width, dtype=torch.long)
    cas = torch.zeros(b, seq_len, dtype=torch.long)
    feats = torch.zeros(b, items[0].features.shape[0], seq_len, dtype=torch.long)
    mask = torch.zeros(b, seq_len, dtype=torch.bool)
    tags = torch.zeros(b, seq_len, dtype=torch.long) if items[0].tags is not None else None
    for i, e in enumerate(items):
        n = len(e.words)
        words[i, :n], cas[i, :n], feats[i, :, :n], mask[i, :n] = e.words, e.casing, e.features, True
        chars[i, :n, : e.chars.shape[1]] = e.chars
        if tags is not None:
            tags[i, :n] = e.tags
    return Batch(words, chars, cas, feats, mask, tags)


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


def iter_batches(encoded: Sequence[Encoded], batch_size: int, generator: torch.Generator | None = None
                 ) -> Iterator[tuple[list[int], Batch]]:
    for ids in length_batches([len(e.words) for e in encoded], batch_size, generator):
        yield ids, collate([encoded[i] for i in ids])
