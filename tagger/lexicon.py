"""A lexicon of words (with frequencies) and the B/M/E/S word-set features it gives each character.

For each character, SoftLexicon (Ma et al. 2020) gathers the lexicon words of the sentence in which it
stands at the Beginning, in the Middle, at the End, or which it is alone (Single), and feeds each set's
frequency-weighted mean word embedding to the BiLSTM. We keep the four sets but describe each by word
length instead of by word embeddings: for each (set, length) cell -- S; B, M, E of 2, 3, 4, 5+ characters
(M starts at 3) -- whether any word matched, and log(1 + the matched words' total frequency) / log(1 + the
lexicon's largest frequency). That is 2 x 12 = 24 numbers a character, read by the BiLSTM's input weights.
Why: jieba's 350,000 words have no vectors, and learning a row for each would add more weights than the
network has while most words never occur in training; the cells keep what the word sets say about span
boundaries (a B cell of a 3-character word two characters before an E cell of one), which is what a tagger
needs, at no cost in parameters.

Matching walks a trie from each position and stops at the first string that no word starts with: a sentence
of T tokens costs O(T x longest word). The trie is a dict keyed by every prefix of every word (a node is
named by its path), which is smaller and faster in Python than nested dicts. A model directory keeps it built
(`to_arrays`, lexicon.safetensors): loading jieba's then fills the dict from two arrays instead of computing
every prefix of 349,045 words again.
"""
from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from tagger.config import JIEBA
from tagger.errors import InputError
from tagger.paths import check_input_file

CELLS = ("S", "B2", "B3", "B4", "B5+", "M3", "M4", "M5+", "E2", "E3", "E4", "E5+")
FEATURES = 2 * len(CELLS)  # per token: matched (0/1) then scaled log frequency, one of each per cell
_MISSING = object()


class Lexicon:
    """Words and their frequencies (1 where the file gives none), matched in token sequences."""

    def __init__(self, words: Mapping[str, float]):
        self._words: dict[str, float] | None = dict(words)
        self._pending: tuple[list[str], list[float]] = ([], [])  # (words, frequencies) `words` builds from
        self.longest = max(map(len, self._words), default=0)
        self.scale = math.log1p(max(self._words.values(), default=1.0)) or 1.0
        # every prefix of a word -> None, every word -> its frequency
        prefixes = {w[:k] for w in self._words for k in range(1, len(w))}
        self.nodes: dict[str, float | None] = dict.fromkeys(prefixes)
        self.nodes.update(self._words)

    @property
    def words(self) -> dict[str, float]:
        """Each word and its frequency, in the order the lexicon file gave them."""
        if self._words is None:  # loaded from arrays: built when first asked for (saving, exporting)
            self._words = dict(zip(*self._pending))
            self._pending = ([], [])
        return self._words

    def __len__(self) -> int:
        return len(self._words) if self._words is not None else len(self._pending[1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lexicon) and self.words == other.words

    def matches(self, tokens: Sequence[str]) -> list[tuple[int, int, float]]:
        """(start, end, frequency) of every lexicon word spelt by tokens[start:end], in order of start, end."""
        nodes, longest, out = self.nodes, self.longest, []
        for i in range(len(tokens)):
            key = ""
            for j in range(i, len(tokens)):
                key += tokens[j]
                if len(key) > longest:
                    break
                freq = nodes.get(key, _MISSING)
                if freq is _MISSING:  # no word starts with key: none goes further either
                    break
                if freq is not None:
                    out.append((i, j + 1, freq))
        return out

    def features(self, tokens: Sequence[str]) -> np.ndarray:
        """(T, FEATURES) float32: each token's B/M/E/S cells (see the module's docstring)."""
        count = np.zeros((len(tokens), len(CELLS)), dtype=np.float64)  # (T, 12)
        mass = np.zeros_like(count)  # (T, 12) summed frequencies
        for start, end, freq in self.matches(tokens):
            for i, cell in _cells(start, end):
                count[i, cell] += 1
                mass[i, cell] += freq
        return np.concatenate([count > 0, np.log1p(mass) / self.scale], 1).astype(np.float32)  # (T, 24)

    def to_text(self) -> str:
        """One `word frequency` line per word: what `parse_lexicon` reads (lexicon.txt in a model directory)."""
        return "".join(f"{w} {_number(f)}\n" for w, f in self.words.items())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The built trie as arrays (lexicon.safetensors in a model directory), what `from_arrays` reads:
        "keys", uint8, the UTF-8 of every node's string a line each, the words first in their order, then
        the prefixes that are no word, sorted (the same lexicon always gives the same bytes); "frequencies",
        float64, the words' (the first len(frequencies) keys); "longest", int64 (1,)."""
        words = list(self.words)
        if any("\n" in w for w in words):
            raise ValueError("a lexicon word contains a line break")
        others = sorted(key for key, freq in self.nodes.items() if freq is None)
        keys = np.frombuffer("\n".join(words + others).encode("utf-8"), dtype=np.uint8)
        return {"keys": keys, "frequencies": np.array(list(self.words.values()), dtype=np.float64),
                "longest": np.array([self.longest], dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "Lexicon":
        """The lexicon `to_arrays` saved, its trie filled in one pass over the keys (no prefix is computed);
        ValueError when the arrays are not what `to_arrays` writes."""
        keys, freqs, longest = (arrays.get(name) for name in ("keys", "frequencies", "longest"))
        if not (isinstance(keys, np.ndarray) and keys.dtype == np.uint8 and keys.ndim == 1
                and isinstance(freqs, np.ndarray) and freqs.dtype == np.float64 and freqs.ndim == 1
                and isinstance(longest, np.ndarray) and longest.shape == (1,)):
            raise ValueError("not a lexicon trie (expected uint8 keys, float64 frequencies and longest)")
        text = keys.tobytes().decode("utf-8")
        names = text.split("\n") if text else []
        values = freqs.tolist()
        if len(values) > len(names) or not (np.isfinite(freqs).all() and (freqs >= 0).all()):
            raise ValueError(f"{len(values)} frequencies for {len(names)} keys, or one not a finite number >= 0")
        lexicon = cls.__new__(cls)
        lexicon._words, lexicon._pending = None, (names[: len(values)], values)
        lexicon.longest = int(longest[0])
        lexicon.scale = math.log1p(max(values, default=1.0)) or 1.0
        lexicon.nodes = dict(zip(names, itertools.chain(values, itertools.repeat(None))))
        return lexicon


def _cells(start: int, end: int) -> list[tuple[int, int]]:
    """(token, cell) pairs a word over tokens[start:end] adds to."""
    n = end - start
    if n == 1:
        return [(start, 0)]
    b = min(n, 5)
    middle = [(i, 5 + b - 3) for i in range(start + 1, end - 1)]
    return [(start, 1 + b - 2), *middle, (end - 1, 8 + b - 2)]


def _number(f: float) -> str:
    return str(int(f)) if float(f).is_integer() else repr(float(f))


def parse_saved(text: str, source: str = "lexicon") -> Lexicon:
    """A lexicon as `Lexicon.to_text` wrote it (a model's lexicon.txt), read with one split and one array
    conversion instead of a loop over lines: jieba's 349,045 words, trie included, in 0.66-0.91 s instead of
    1.03-1.16 s. Other text goes to `parse_lexicon`, which names a bad line."""
    parts = text.split()
    if parts and len(parts) == 2 * text.count("\n"):  # two fields on every line
        try:
            freqs = np.array(parts[1::2], dtype=np.float64)
        except ValueError:
            freqs = None
        words = parts[0::2]
        if freqs is not None and np.isfinite(freqs).all() and (freqs >= 0).all() and len(set(words)) == len(words):
            return Lexicon(dict(zip(words, freqs.tolist())))
    return parse_lexicon(text.splitlines(), source)


def parse_lexicon(lines: Iterable[str], source: str = "lexicon") -> Lexicon:
    """Lines of `word [frequency [anything]]` (jieba's dict.txt adds a part of speech); blank lines are
    skipped. A word listed twice keeps its larger frequency. InputError names the line of a bad frequency."""
    words: dict[str, float] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        freq = 1.0
        if len(parts) > 1:
            try:
                freq = float(parts[1])
            except ValueError:
                raise InputError(f"frequency {parts[1]!r} is not a number (expected `word [frequency]`)",
                                 path=source, line=number) from None
            if not (freq >= 0 and math.isfinite(freq)):
                raise InputError(f"frequency {parts[1]} is not a finite number >= 0", path=source, line=number)
        words[parts[0]] = max(freq, words.get(parts[0], freq))
    if not words:
        raise InputError("the lexicon holds no words", path=source)
    return Lexicon(words)


def lexicon_path(ref: str | Path) -> Path:
    """The file `--lexicon REF` names: a path, or `jieba` for the dictionary of an installed jieba."""
    if str(ref) == JIEBA and not Path(ref).exists():
        spec = importlib.util.find_spec("jieba")
        if spec is None or spec.origin is None:
            raise InputError("--lexicon jieba needs jieba installed: pip install jieba (or "
                             "pip install 'bilstm-tagger[chinese]')")
        return Path(spec.origin).parent / "dict.txt"
    check_input_file(ref, "lexicon file")
    return Path(ref)


def read_lexicon(ref: str | Path) -> Lexicon:
    """The lexicon in a file (or jieba's, see `lexicon_path`)."""
    path = lexicon_path(ref)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"invalid UTF-8 at byte {e.start}", path=str(path)) from None
    except OSError as e:
        raise InputError(f"cannot read the lexicon: {e.strerror}", path=str(path)) from None
    return parse_lexicon(text.splitlines(), str(path))
