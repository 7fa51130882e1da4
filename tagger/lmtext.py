"""Text as a character language model reads it (tagger/training/lm.py trains one; tagger/tagging/charlm.py
reads sentences with it): tokens joined by one space, each sentence between newlines, characters as ids.

A sentence of tokens w1 .. wn is the characters "\\n" w1 " " w2 ... " " wn "\\n". A token's contextual
embedding is the forward LM's state on the separator after it (it has read the token and everything before)
beside the backward LM's state on the separator before it (it has read the token and everything after), as
Akbik et al. 2018 take them. Training text is the same form, sentence after sentence, so the LM has seen a
sentence start and end as the tagger will show them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

UNK = "<unk>"  # row 0: every character the LM did not keep
EMPTY = "\ufffd"  # an empty token is read as one unknown character, so that it still has a place


def sentence_text(tokens: Sequence[str]) -> str:
    """The characters the LM reads for one sentence."""
    return "\n" + " ".join(t or EMPTY for t in tokens) + "\n"


def read_text(paths: Sequence[str | Path], max_chars: int = 0) -> str:
    """The files' sentences (tokenised as `tagger predict` does) in the LM's form, one after another, up to
    about `max_chars` characters (0: all)."""
    from tagger import rawtext  # training's only: tagging imports this module without the raw-text reader

    parts, size = [], 0
    for tokens in rawtext.tokenised_sentences(paths, "words", lowercase=False):
        line = " ".join(tokens)
        parts.append(line)
        size += len(line) + 1
        if max_chars and size >= max_chars:
            break
    return "\n" + "\n".join(parts) + "\n"


def choose_chars(text: str, min_count: int, max_vocab: int) -> list[str]:
    """<unk>, then the characters seen at least `min_count` times, most frequent first, `max_vocab` at most."""
    codes, counts = np.unique(_codes(text), return_counts=True)
    keep = np.argsort(-counts, kind="stable")[:max_vocab]
    keep = keep[counts[keep] >= min_count]
    return [UNK, *(chr(int(c)) for c in codes[keep])]


def char_ids(text: str, chars: Sequence[str]) -> np.ndarray:
    """(len(text),) int64 row of each character, 0 (<unk>) for those not in `chars`."""
    codes = _codes(text)
    kept = np.array([ord(c) for c in chars[1:]], dtype=np.int64)
    order = np.argsort(kept)
    at = np.searchsorted(kept[order], codes)
    found = (at < len(kept)) & (kept[order][np.minimum(at, len(kept) - 1)] == codes)
    return np.where(found, order[np.minimum(at, len(kept) - 1)] + 1, 0).astype(np.int64)


def encode_sentence(tokens: Sequence[str], index: Mapping[str, int]) -> tuple[list[int], list[int]]:
    """(character ids of the sentence's text, each token's separator before it): the separator after token
    i is the one before token i + 1, and after the last token the final newline."""
    get = index.get
    ids = [get(c, 0) for c in sentence_text(tokens)]
    before, at = [], 0
    for t in tokens:
        before.append(at)
        at += len(t or EMPTY) + 1
    return ids, before


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
