"""Sentences -> ids (once per corpus) -> batches.

Training batches hold sentences of one exact length, so training never spends work on padding (and needs
no packing). Tagging batches are full and hold neighbouring lengths: the model's ragged BiLSTM gives each
sentence exactly what it gets alone, so batched predictions equal one-sentence predictions.

A batch describes each distinct word once (word id, shape, spelling end to end with no padding) and points
every token at its word (`types`): the character encoder then works on a few distinct words instead of every
token padded to the longest word, which made it the costliest part of training, and tagging projects each
distinct word into the BiLSTM once (a batch of 256 CoNLL-2003 test sentences has 2.5 tokens per distinct word).
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from itertools import chain, islice
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from tagger import lac, lmtext
from tagger.vocab import Vocab, bigrams, casing


@dataclass
class Encoded:
    """One sentence as ids (plain lists: a batch makes its arrays in one go).

    tokens: T (word id, casing id, spelling) triples, a spelling being a tuple of character ids (the encoder
    hands out one shared triple per distinct word); features: F lists of T ids; tags: T ids, or None for
    unlabelled text; bigrams: T ids, or None when the vocabulary has none; lexicon: (T, lexicon.FEATURES)
    float32, or None when it has no lexicon; context: T rows of the context encoder (tagger/lac.py), or None
    when the model has none, and context_features its (T, lac.FEATURES) outputs when already computed
    (training computes them once: they never change).
    """

    tokens: list[tuple[int, int, tuple[int, ...]]]
    features: list[list[int]]
    tags: list[int] | None
    bigrams: list[int] | None = None
    lexicon: np.ndarray | None = None
    context: list[int] | None = None
    context_at: list[int] | None = None  # a character LM's: each token's separator before it in `context`
    context_features: np.ndarray | None = None
    words: Sequence[str] = ()  # the tokens themselves: a teacher with a context encoder of its own re-encodes them

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class Batch:
    """Several sentences as numpy arrays (training hands the torch network the same memory as tensors)."""

    words: np.ndarray             # (B, T) word ids, 0 on padding
    casing: np.ndarray            # (B, T)
    types: np.ndarray             # (B, T) each token's distinct (word, casing, spelling): an index into the type_ rows
    type_words: np.ndarray        # (U,) word id of each distinct type
    type_casing: np.ndarray       # (U,)
    spellings: np.ndarray         # (N,) character ids of the types' spellings, one after another
    spelling_lengths: np.ndarray  # (U,) characters in each spelling (all >= 1)
    features: np.ndarray          # (B, F, T)
    mask: np.ndarray              # (B, T) bool
    tags: np.ndarray | None       # (B, T)
    bigrams: np.ndarray | None = None  # (B, T) each token's bigram id, 0 on padding
    lexicon: np.ndarray | None = None  # (B, T, lexicon.FEATURES) float32, 0 on padding
    context: np.ndarray | None = None  # (B, T) each token's row of the context encoder, 0 on padding; for a
                                       # character LM (B, C) the sentences' characters (tagger/lmtext.py)
    context_mask: np.ndarray | None = None    # (B, C) bool, a character LM's: real characters
    context_before: np.ndarray | None = None  # (B, T) a character LM's: the separator before each token
    context_after: np.ndarray | None = None   # (B, T) ... and the one after it
    context_features: np.ndarray | None = None  # (B, T, lac.FEATURES) float32 when the sentences had them

    def __len__(self) -> int:
        return self.words.shape[0]



class Encoder:
    """Sentences -> ids, with a per-word cache (word id, shape, character ids): text repeats its words."""

    MAX_CACHE = 200_000  # entries; the cache is dropped when full, so memory stays bounded on any input
    MAX_CACHED_LENGTH = 64  # characters: longer tokens (rare, often junk) are described afresh, never kept,
                            # so that the cache's bytes stay bounded too (200,000 words of 5,000 characters: 9 GB)

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
            hit = (self.vocab.word_id(w), casing(w), spelling)
            if len(w) <= self.MAX_CACHED_LENGTH:
                self.cache[w] = hit
        return hit

    def __call__(self, tokens: Sequence[str], tags: Sequence[str] | None = None,
                 features: Sequence[Sequence[str]] = ()) -> Encoded:
        """Ids for one sentence; tags must be in vocab.tags (the caller checks and reports unknown ones)."""
        vocab = self.vocab
        lm = vocab.context is not None and vocab.context_kind == "lm"
        chars, at = lmtext.encode_sentence(tokens, vocab.context.ids) if lm else (None, None)
        described = list(map(self.cache.get, tokens))  # most words are cached: no Python call per token
        if None in described:
            described = list(map(self.word, tokens))
        return Encoded(
            tokens=described,
            features=[[index.get(v) for v in column] for index, column in zip(vocab.features, features)],
            tags=None if tags is None else [vocab.tags.ids[t] for t in tags],
            bigrams=None if vocab.bigrams is None else list(map(vocab.bigrams.get, bigrams(tokens))),
            lexicon=None if vocab.lexicon is None else vocab.lexicon.features(tokens),
            context=chars if lm else None if vocab.context is None else lac.token_ids(vocab.context.ids, tokens),
            context_at=at,
            words=tokens,
        )


def collate(items: Sequence[Encoded]) -> Batch:
    """Stack sentences into a batch (padding where lengths differ), each distinct word described once."""
    lengths = np.array([len(e) for e in items])
    mask = np.arange(lengths.max()) < lengths[:, None]  # (B, T)

    def stack(flat: Iterable[int]) -> np.ndarray:
        """(B, T) from the sentences' values one after another: one flat array scattered under the mask
        (far faster than an array from nested, padded lists)."""
        out = np.zeros(mask.shape, dtype=np.int64)
        out[mask] = longs(flat)
        return out

    flat = list(chain.from_iterable(e.tokens for e in items))
    keys = list(map(id, flat))  # the encoder shares one triple per distinct word: identity finds repeats cheaply
    first = dict(zip(keys, flat))  # distinct triples, in order of first use
    types = stack(map(dict(zip(first, range(len(first)))).__getitem__, keys))  # (B, T)
    described = list(first.values())
    type_words, type_casing = longs(t[0] for t in described), longs(t[1] for t in described)
    columns = len(items[0].features)
    return Batch(
        words=np.where(mask, type_words[types], 0),
        casing=np.where(mask, type_casing[types], 0),
        types=types,
        type_words=type_words,
        type_casing=type_casing,
        spellings=longs(chain.from_iterable(t[2] for t in described)),
        spelling_lengths=longs(len(t[2]) for t in described),
        features=np.stack([stack(chain.from_iterable(e.features[f] for e in items)) for f in range(columns)], 1)
        if columns else np.zeros((mask.shape[0], 0, mask.shape[1]), dtype=np.int64),  # (B, F, T)
        mask=mask,
        tags=stack(chain.from_iterable(e.tags for e in items)) if items[0].tags is not None else None,
        bigrams=stack(chain.from_iterable(e.bigrams for e in items)) if items[0].bigrams is not None else None,
        lexicon=_stack_rows([e.lexicon for e in items], mask) if items[0].lexicon is not None else None,
        context_features=_stack_rows([e.context_features for e in items], mask)
        if items[0].context_features is not None else None,
        **_context(items, stack),
    )


def _context(items: Sequence[Encoded], stack: Callable[[Iterable[int]], np.ndarray]) -> dict[str, np.ndarray]:
    """The context encoder's batch arrays: LAC's row of each token, or a character LM's arrays; none without."""
    if items[0].context is None:
        return {}
    if items[0].context_at is None:
        return {"context": stack(chain.from_iterable(e.context for e in items))}
    return _lm_characters(items, stack)


def _lm_characters(items: Sequence[Encoded], stack: Callable[[Iterable[int]], np.ndarray]) -> dict[str, np.ndarray]:
    """A character LM's batch arrays: the sentences' characters (B, C) with their mask, and each token's
    separators before and after it (B, T): the one after token i is the one before token i + 1, the last
    token's the final newline."""
    lengths = np.array([len(e.context) for e in items])
    char_mask = np.arange(lengths.max()) < lengths[:, None]  # (B, C)
    chars = np.zeros(char_mask.shape, dtype=np.int64)
    chars[char_mask] = longs(chain.from_iterable(e.context for e in items))
    after = chain.from_iterable(chain(islice(e.context_at, 1, None), (len(e.context) - 1,)) for e in items)
    return {"context": chars, "context_mask": char_mask,
            "context_before": stack(chain.from_iterable(e.context_at for e in items)), "context_after": stack(after)}


def _stack_rows(rows: Sequence[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """(B, T, F) from each sentence's (length, F) rows, zeros on padding."""
    out = np.zeros((*mask.shape, rows[0].shape[1]), dtype=np.float32)
    out[mask] = np.concatenate(rows)
    return out


def longs(values: Iterable[int]) -> np.ndarray:
    """A 1-d int64 array of the values: through array('q'), 3x faster than from a list."""
    return np.frombuffer(array("q", values), dtype=np.int64)


def length_batches(lengths: Sequence[int], batch_size: int,
                   permutation: Callable[[int], list[int]] | None = None) -> list[list[int]]:
    """Indices grouped into batches of sentences of one length; shuffled when given a `permutation` (n -> a
    random order of range(n): training passes its seeded torch generator's randperm, so a resumed run
    draws the same batches)."""
    by_length: dict[int, list[int]] = {}
    order = permutation(len(lengths)) if permutation else range(len(lengths))
    for i in order:
        by_length.setdefault(lengths[i], []).append(i)
    batches = [ids[k : k + batch_size] for ids in by_length.values() for k in range(0, len(ids), batch_size)]
    if permutation is not None:
        batches = [batches[i] for i in permutation(len(batches))]
    return batches


MAX_PADDING = 1.5  # a tagging batch of MIN_SENTENCES or more closes before padding passes this x its tokens
MIN_SENTENCES = 32


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length and cut into batches of `batch_size`: for tagging, where the network handles
    mixed lengths exactly and full batches keep the LSTM's matrix products large. A batch of MIN_SENTENCES or
    more also closes where the next sentence would pad it past MAX_PADDING x its tokens: the LSTM steps
    through every padded position, and a long tail (one 124-token sentence among 200 of 40) would otherwise
    cost as much as the rest of the text."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches, batch, tokens = [], [], 0
    for i in order:
        n = lengths[i]
        wide = len(batch) >= MIN_SENTENCES and (len(batch) + 1) * n > MAX_PADDING * (tokens + n)
        if len(batch) == batch_size or wide:
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(i)
        tokens += n
    return batches + [batch] if batch else batches


def iter_batches(encoded: Sequence[Encoded], batch_size: int, permutation: Callable[[int], list[int]] | None = None,
                 mixed: bool = False) -> Iterator[tuple[list[int], Batch]]:
    """Batches of one length (shuffled by `permutation`), or of neighbouring lengths if `mixed`."""
    lengths = list(map(len, encoded))
    batches = sorted_batches(lengths, batch_size) if mixed else length_batches(lengths, batch_size, permutation)
    for ids in batches:
        yield ids, collate([encoded[i] for i in ids])
