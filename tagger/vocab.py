"""Word, character, bigram, casing, feature and tag vocabularies, saved together as vocab.json (the lexicon,
when there is one, beside it as lexicon.txt)."""
from __future__ import annotations

import operator
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from tagger.lexicon import Lexicon

PAD, UNK = "<pad>", "<unk>"
END = "</s>"  # what follows a sentence's last token in its bigram


def bigrams(tokens: Sequence[str]) -> list[str]:
    """The bigram starting at each token: it and the next one, joined ("北京" for 北 before 京), END after the last."""
    return [a + b for a, b in zip(tokens, [*tokens[1:], END])]

# Word shapes: lower-cased vector lookup loses case, this small feature gives it back.
CASINGS = ("<pad>", "numeric", "mainly_numeric", "lower", "upper", "title", "has_digit", "punct", "other")


def casing(word: str) -> int:
    """Index in CASINGS of a word's shape (Reimers & Gurevych 2017)."""
    digits = sum(c.isdigit() for c in word)
    if word.isdigit():
        return 1
    if digits / max(len(word), 1) > 0.5:
        return 2
    if word.islower():
        return 3
    if word.isupper():
        return 4
    if word[:1].isupper():
        return 5
    if digits:
        return 6
    if not any(c.isalnum() for c in word):
        return 7
    return 8


@dataclass
class Index:
    """A string <-> id table; ids 0 and 1 are padding and unknown when `specials` is set."""

    items: list[str]
    specials: bool = True
    ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ids = dict(zip(self.items, range(len(self.items))))  # 1.4x faster than a comprehension

    @classmethod
    def build(cls, counts: Counter, min_count: int = 1, specials: bool = True) -> "Index":
        kept = sorted((s for s, c in counts.items() if c >= min_count), key=lambda s: (-counts[s], s))
        return cls(([PAD, UNK] if specials else []) + kept, specials)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: str) -> bool:
        return item in self.ids

    def get(self, item: str) -> int:
        return self.ids.get(item, 1 if self.specials else -1)


@dataclass
class SortedWords:
    """Pretrained-only words in sorted order, found by bisection: a 400,000-word GloVe vocabulary then needs
    no dict, so a model loads faster and each tagging process holds tens of MB less (the encoder caches
    every word it looks up)."""

    items: list[str]

    def __post_init__(self) -> None:
        if not all(map(operator.lt, self.items, islice(self.items, 1, None))):
            raise ValueError("frozen words are not sorted")

    def __len__(self) -> int:
        return len(self.items)

    def find(self, item: str) -> int | None:
        i = bisect_left(self.items, item)
        return i if i < len(self.items) and self.items[i] == item else None


@dataclass
class Vocab:
    """Everything that maps strings to ids. `words` are fine-tuned; `frozen` are pretrained-only words."""

    words: Index
    frozen: SortedWords      # pretrained words never seen in training: their vectors are kept, not trained
    chars: Index
    tags: Index
    features: list[Index]
    lowercase: bool = True
    source_scheme: str | None = None   # the training corpus's scheme: predict_tokens answers in it
    bigrams: Index | None = None       # when the config has bigrams on
    lexicon: "Lexicon | None" = None   # when the config has lexicon on: saved as lexicon.txt, not in vocab.json
    context: Index | None = None       # the context encoder's characters, row i being items[i] (tagger/lac.py)
    context_kind: str = "lac"          # whose characters: LAC's (a token's row) or a character LM's ("lm": a
                                       # sentence's characters, tagger/lmtext.py)

    def word_id(self, word: str) -> int:
        """Exact form first, then lower-cased; frozen ids follow the trainable ones."""
        for key in (word, word.lower()) if self.lowercase else (word,):
            i = self.words.ids.get(key)
            if i is not None:
                return i
            i = self.frozen.find(key)
            if i is not None:
                return len(self.words) + i
        return 1

    def to_json(self) -> dict:
        return {"words": self.words.items, "frozen_words": self.frozen.items, "chars": self.chars.items,
                "tags": self.tags.items, "features": [f.items for f in self.features],
                "lowercase": self.lowercase, "source_scheme": self.source_scheme,
                **({"bigrams": self.bigrams.items} if self.bigrams is not None else {}),
                **({"context": self.context.items} if self.context is not None else {}),
                **({"context_kind": self.context_kind} if self.context_kind != "lac" else {})}

    @classmethod
    def from_json(cls, data: dict, lexicon: "Lexicon | None" = None) -> "Vocab":
        return cls(Index(data["words"]), SortedWords(data["frozen_words"]), Index(data["chars"]),
                   Index(data["tags"], specials=False), [Index(f) for f in data["features"]],
                   data["lowercase"], data["source_scheme"],
                   Index(data["bigrams"]) if data.get("bigrams") is not None else None, lexicon,
                   Index(data["context"], specials=False) if data.get("context") is not None else None,
                   data.get("context_kind", "lac"))


def build_vocab(token_seqs: Iterable[Sequence[str]], tag_seqs: Iterable[Sequence[str]],
                feature_seqs: Sequence[Iterable[Sequence[str]]] = (), pretrained: Iterable[str] = (),
                min_count: int = 1, lowercase: bool = True, source_scheme: str | None = None,
                with_bigrams: bool = False, lexicon: "Lexicon | None" = None) -> Vocab:
    """Training words (keyed the way `word_id` will find them) are trainable; other pretrained words frozen.
    with_bigrams: a bigram index of every training bigram (unseen ones map to <unk>)."""
    pretrained = set(pretrained)
    word_counts: Counter = Counter()
    char_counts: Counter = Counter()
    bigram_counts: Counter = Counter()
    for tokens in token_seqs:
        if with_bigrams:
            bigram_counts.update(bigrams(tokens))
        for w in tokens:
            char_counts.update(w)
            key = w if (w in pretrained or not lowercase) else w.lower()
            word_counts[key] += 1
    # a rare training word still gets its own row if it has a pretrained vector
    words = Index.build(Counter({w: c + (min_count if w in pretrained else 0) for w, c in word_counts.items()}),
                        min_count)
    frozen = SortedWords(sorted(pretrained - set(words.items)))
    tag_counts = Counter(t for tags in tag_seqs for t in tags)
    tags = Index(sorted(tag_counts, key=lambda t: (t != "O", t)), specials=False)
    features = [Index.build(Counter(v for seq in seqs for v in seq)) for seqs in feature_seqs]
    return Vocab(words, frozen, Index.build(char_counts), tags, features, lowercase, source_scheme,
                 Index.build(bigram_counts) if with_bigrams else None, lexicon)
