"""Pretrained words never seen in training, and how training prepares the network for them.

Fine-tuning moves the vectors of training words; pretrained words never seen in training get no gradient and
keep their original vectors (the model's `frozen` rows). On CoNLL-2003 a quarter of the test set's entity
tokens are such words, against a sixth of dev's. Two remedies:

- `pretrained_swap`: while training, a word is now and then read from the pretrained vector its row started
  from instead of its fine-tuned row (model.embed_words), so the network also learns to read unmoved vectors.
- `unseen_drift`: each frozen word is moved by that many times the similarity-weighted mean drift of its k
  nearest trained words (cosine in the original pretrained space): unseen names move with the seen names they
  resemble. The neighbours are found once, since the pretrained space does not change; the drift is read from
  the current weights whenever the model is scored or saved, so the saved model holds the moved vectors and
  tagging is unchanged.

Whether training uses them is `unseen_remedies`: on, off, or auto (the default), which training decides once,
when it starts, from the share of dev tokens that only a frozen row reads (`unseen_share`, `decide`).
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torch.nn import functional as F

# unseen_remedies = "auto" turns both remedies on from this share of dev tokens that have a pretrained vector but
# never occur in training. Measured: 6.15% on CoNLL-2003 dev with GloVe 6B 50d, where they gained 0.41 test F1
# (bench/README.md, "The defaults against the recipe"); 1.28% on Weibo dev with jieba's LAC character vectors,
# where dev F1 fell from 63.91 to 63.60. The threshold sits between the two.
AUTO_FROM = 0.03


def unseen_share(train: Iterable[str], dev: Iterable[str], vectors: Collection[str], lowercase: bool = True
                 ) -> float:
    """The share of `dev` tokens that never occur in `train` but have a pretrained vector (a word of `vectors`):
    those the model reads from a frozen row, which the remedies prepare it for. Words are keyed as build_vocab
    keys them and looked up as Vocab.word_id looks them up (the exact form, then the lower-cased one when
    `lowercase`), so a dev token counts exactly when tagging would read it from a frozen row."""
    pretrained = vectors if isinstance(vectors, (set, frozenset, dict)) else set(vectors)
    trained = {w if w in pretrained or not lowercase else w.lower() for w in train}
    frozen = total = 0
    for word in dev:
        total += 1
        for key in (word, word.lower()) if lowercase else (word,):
            if key in trained or key in pretrained:
                frozen += key not in trained
                break
    return frozen / total if total else 0.0


def decide(share: float | None) -> tuple[bool, str]:
    """(whether `unseen_remedies = "auto"` turns the remedies on, why, for the training's messages) from the
    dev share above; None when there is no dev set to measure it on."""
    if share is None:
        return False, (f"no dev set (auto: on when {100 * AUTO_FROM:.0f}% or more of the dev tokens have pretrained "
                       "vectors but never occur in training)")
    return share >= AUTO_FROM, (f"{100 * share:.1f}% of dev tokens have pretrained vectors but never occur in "
                                f"training (auto: on from {100 * AUTO_FROM:.0f}%)")


@dataclass
class Pretrained:
    """What training keeps of the pretrained vectors besides the model's own weights."""

    rows: Tensor                 # (T,) rows of the word embedding that started from a pretrained vector
    start: Tensor                # (T, dim) those pretrained vectors
    index: Tensor | None = None  # (num_frozen, k) each frozen word's nearest trained words, as positions in `rows`
    weight: Tensor | None = None  # (num_frozen, k) their cosine similarities clipped at 0, summing to 1 a row (or 0)

    def state(self) -> dict[str, Tensor]:
        """Tensors for a checkpoint, so that a resumed run goes on exactly as before."""
        kept = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.index is not None:  # positions in `rows` (< 2**31): half the bytes of int64 (15 MB for GloVe 6B)
            kept["index"] = self.index.to(torch.int32)
        return {f"pretrained.{name}": value for name, value in kept.items() if value is not None}

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor]) -> Pretrained | None:
        if "pretrained.rows" not in tensors:
            return None
        kept = {f.name: tensors.get(f"pretrained.{f.name}") for f in fields(cls)}
        if kept["index"] is not None:
            kept["index"] = kept["index"].long()
        return cls(**kept)

    def with_neighbours(self, frozen: Tensor, k: int, chunk: int = 1024) -> Pretrained:
        """The k nearest trained words (by cosine of the pretrained vectors) of every frozen word: an
        exhaustive search, `chunk` frozen words at a time into one reused (chunk, T) buffer of similarities."""
        unit = F.normalize(self.start, dim=1).T.contiguous()  # (dim, T)
        k = min(k, len(self.rows))
        index, weight = [self.rows.new_zeros(0, k)], [self.start.new_zeros(0, k)]
        sims = frozen.new_empty(min(chunk, len(frozen)), len(self.rows))  # (chunk, T)
        for part in torch.split(frozen, chunk):
            top = torch.mm(F.normalize(part, dim=1), unit, out=sims[: len(part)]).topk(k, dim=1)  # (chunk, k)
            index.append(top.indices)
            weight.append(top.values.clamp(min=0))
        w = torch.cat(weight)
        return Pretrained(self.rows, self.start, torch.cat(index), w / w.sum(1, keepdim=True).clamp(min=1e-12))


def moved(pretrained: Pretrained, word: Tensor, frozen: Tensor, scale: float) -> Tensor:
    """The frozen vectors (num_frozen, dim), each moved by `scale` x its neighbours' mean drift."""
    drift = word[pretrained.rows] - pretrained.start  # (T, dim)
    mean = F.embedding_bag(pretrained.index, drift, per_sample_weights=pretrained.weight, mode="sum")
    return frozen + scale * mean  # (num_frozen, dim)


@contextmanager
def drifted(model: torch.nn.Module, pretrained: Pretrained | None, scale: float) -> Iterator[None]:
    """Inside this block the model's frozen vectors are moved; the originals are back after it."""
    if pretrained is None or pretrained.index is None or not scale:
        yield
        return
    original = model.frozen
    with torch.no_grad():
        model.frozen = moved(pretrained, model.word.weight, original, scale)
    try:
        yield
    finally:
        model.frozen = original
