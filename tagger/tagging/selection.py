"""Active learning: which unlabelled sentences a person should label next, by how unsure the model is.

Every strategy is computed exactly under the CRF, at the model's temperature (Config.temperature), from
one engine pass per batch (tagger/tagging/marginals.py):

- mnlp: log P(best path | x) / length (Shen et al. 2017, "maximum normalised log-probability"), the lowest
  first: the best path's probability per token, so long sentences are not picked just for being long.
- least-confidence: 1 - P(best path | x), the highest first.
- entropy: the mean over tokens of the entropy of the token marginals, -sum_k P(y_t=k|x) log P(y_t=k|x)
  (nats), the highest first.
- random: a uniform draw in [0, 1) per sentence from a generator seeded by `seed`, the highest first: a
  uniform sample of k sentences, the same one for the same pool and seed. The model is not run to choose.

P(best path) is exp(score(Viterbi path) - log Z): the path the tagger answers with, scored in float64.

A unit of the pool is a sentence (tokens or CoNLL input) or a line of raw text, which may hold several
sentences: the model tags each sentence of a text on its own, so the text's best analysis is their best
paths, its log-probability their sum and its length all its tokens. Units without a token are skipped.

The pool streams: it is scored CHUNK units at a time and a heap keeps the k best, so memory holds k units
and one chunk whatever the pool's size. Ties go to the unit that came first.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from corpora.conll import Sentence
from tagger.data import check_feature_columns, feature_columns
from tagger.errors import ConfigError, InputError
from tagger.tagging import marginals, pipeline
from tagger.tagging.viterbi import viterbi
from tagger.text import sentence_ends

if TYPE_CHECKING:
    from tagger.tagging.tagger import Tagger

STRATEGIES = ("mnlp", "least-confidence", "entropy", "random")
CHUNK = 4096  # units scored together between heap updates


@dataclass(frozen=True)
class Uncertainty:
    """What the strategies are computed from, for one unit: log P(best analysis | x), its tokens, and the
    sum over its tokens of the marginals' entropy (nats; 0.0 when not computed)."""

    log_p: float
    tokens: int
    entropy: float = 0.0

    def score(self, strategy: str) -> float:
        """The strategy's value (module docstring); a unit of no tokens is certain: 0 for each."""
        if strategy == "mnlp":
            return self.log_p / self.tokens if self.tokens else 0.0
        if strategy == "least-confidence":
            return -float(np.expm1(self.log_p))  # 1 - P, exact for P near 1
        if strategy == "entropy":
            return self.entropy / self.tokens if self.tokens else 0.0
        raise ConfigError(f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")

    def __add__(self, other: "Uncertainty") -> "Uncertainty":
        """Two independently tagged sentences as one unit."""
        return Uncertainty(self.log_p + other.log_p, self.tokens + other.tokens, self.entropy + other.entropy)


CERTAIN = Uncertainty(0.0, 0, 0.0)


@dataclass
class Selected:
    """A unit chosen for labelling: its 0-based position in the pool, the unit as the pool held it (a token
    list, a Sentence or a text), and its score under the strategy (random: its draw)."""

    index: int
    unit: Any
    score: float


# -- exact uncertainty of a batch ------------------------------------------------------------------------


def batch_uncertainty(emissions: np.ndarray, mask: np.ndarray, crf: Sequence[np.ndarray], temperature: float = 1.0,
                      entropy: bool = True) -> list[Uncertainty]:
    """Uncertainty of every sentence of a batch: emissions (B, T, K), mask (B, T) with mask[:, 0] on, crf =
    (start (K,), trans (K, K), end (K,)). The best path is Viterbi's on the scores as given (the tagger's
    answer); its log-probability and the marginals are at `temperature`. `entropy=False` skips the backward
    pass (mnlp and least confidence need log Z alone)."""
    paths = viterbi(emissions, mask, *crf)
    mask = np.asarray(mask, dtype=bool)
    if entropy:
        lattice = marginals.forward_backward(emissions, mask, *crf, temperature=temperature)
        log_z = lattice.log_z  # (B,)
        p = lattice.marginals  # (B, T, K), 0 on padding and on tags the scheme forbids there
        with np.errstate(divide="ignore", invalid="ignore"):
            token_h = -np.where(p > 0, p * np.log(p), 0.0).sum(2)  # (B, T)
        entropies = (token_h * mask).sum(1).tolist()
    else:
        log_z = marginals.log_partition(emissions, mask, *crf, temperature=temperature)
        entropies = [0.0] * len(paths)
    em, start, trans, end = marginals.scale(emissions, *crf, temperature)
    best = np.zeros(mask.shape, dtype=np.int64)  # (B, T) the paths, 0 on padding
    for b, path in enumerate(paths):
        best[b, : len(path)] = path
    lengths = mask.sum(1)  # (B,)
    rows = np.arange(len(paths))
    emitted = (np.take_along_axis(em, best[:, :, None], 2)[:, :, 0] * mask).sum(1)  # (B,)
    moved = (trans[best[:, :-1], best[:, 1:]] * mask[:, 1:]).sum(1)  # (B,)
    score = start[best[:, 0]] + emitted + moved + end[best[rows, lengths - 1]]
    log_p = np.minimum(score - log_z, 0.0)  # a log-probability: rounding must not make it positive
    return [Uncertainty(float(lp), int(n), float(h)) for lp, n, h in zip(log_p, lengths.tolist(), entropies)]


def uncertainties(tagger: Tagger, sentences: Sequence[Sequence[str]], features: Sequence = (),
                  strategy: str = "entropy", batch_size: int = pipeline.BATCH_SIZE) -> list[Uncertainty]:
    """The Uncertainty of each pre-tokenised sentence, in input order (an empty one: CERTAIN). Entropies are
    computed only for the entropy strategy."""
    out = [CERTAIN] * len(sentences)
    crf, temperature = tagger.engine.crf, tagger.config.temperature
    for ids, emissions, mask in pipeline.emission_batches(tagger, sentences, features, batch_size):
        with pipeline.one_blas_thread(tagger):
            found = batch_uncertainty(emissions, mask, crf, temperature, entropy=strategy == "entropy")
        for i, u in zip(ids, found):
            out[i] = u
    return out


def text_uncertainties(tagger: Tagger, texts: Sequence[str], strategy: str = "entropy",
                       batch_size: int = pipeline.BATCH_SIZE) -> list[Uncertainty]:
    """The Uncertainty of each raw text: its sentences', summed (they are tagged independently)."""
    tokenizer = "words" if tagger.config.tokenizer == "auto" else tagger.config.tokenizer
    spans, flat = [], []
    for text in texts:
        tokens, ends = sentence_ends(text, tokenizer)
        spans.append((len(flat), len(flat) + len(ends)))
        flat += [tokens.texts[a:b] for a, b in pairwise([0, *ends])]
    found = uncertainties(tagger, flat, (), strategy, batch_size)
    return [sum(found[a:b], CERTAIN) for a, b in spans]


# -- choosing k of a stream --------------------------------------------------------------------------------


def check(k: int, strategy: str) -> None:
    """ConfigError unless k is a whole number >= 1 and strategy one of STRATEGIES."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"the budget (--budget) must be a whole number of sentences, at least 1, not {k!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")


def select(tagger: Tagger, sentences: Iterable[Sequence[str] | Sentence], k: int, strategy: str = "mnlp",
           seed: int = 0, batch_size: int = pipeline.BATCH_SIZE, chunk: int = CHUNK,
           progress: Callable[[int, int], None] = lambda units, tokens: None) -> list[Selected]:
    """The k sentences of `sentences` to label next, the most informative first (fewer if the pool has
    fewer non-empty ones). A sentence is a list of tokens or a corpora Sentence (whose feature columns a
    model with features reads; its tags are ignored). The pool is read once, as a stream. `progress` gets
    the units and tokens of each chunk once it is scored."""
    check(k, strategy)
    columns = tagger.config.features

    def score(units: list) -> list[Uncertainty]:
        tokens = [u.tokens if isinstance(u, Sentence) else _tokens(u) for u in units]
        feats: Sequence = ()
        if columns:
            if not all(isinstance(u, Sentence) and u.rows for u in units):
                raise InputError(f"this model reads feature columns ({', '.join(map(str, columns))}): give "
                                 "the pool as CoNLL with those columns")
            check_feature_columns(units, columns, "the pool")
            feats = [feature_columns(u, columns) for u in units]
        return uncertainties(tagger, tokens, feats, strategy, batch_size)

    return top_k(sentences, score, k, strategy, seed, chunk, progress)


def select_texts(tagger: Tagger, texts: Iterable[str], k: int, strategy: str = "mnlp", seed: int = 0,
                 batch_size: int = pipeline.BATCH_SIZE, chunk: int = CHUNK,
                 progress: Callable[[int, int], None] = lambda units, tokens: None) -> list[Selected]:
    """select for raw texts (e.g. one a line): a text's uncertainty is its sentences' together."""
    check(k, strategy)
    return top_k(texts, lambda units: text_uncertainties(tagger, units, strategy, batch_size), k, strategy, seed,
                 chunk, progress)


def top_k(units: Iterable, score: Callable[[list], list[Uncertainty]], k: int, strategy: str, seed: int = 0,
          chunk: int = CHUNK, progress: Callable[[int, int], None] = lambda units, tokens: None) -> list[Selected]:
    """The k units of the stream with the highest priority (the strategy's order), most informative first.

    A min-heap of k (priority, -index) entries: a new unit enters when it beats the least informative one
    kept, so a tie keeps the earlier unit. random draws one number per unit in stream order (so the sample
    does not depend on `chunk`) and never calls `score`."""
    check(k, strategy)
    rng = np.random.default_rng(seed)
    heap: list[tuple[float, int, Any, float]] = []  # (priority, -index, unit, score)
    it, start = iter(units), 0
    while block := list(itertools.islice(it, chunk)):
        live = [i for i, u in enumerate(block) if _size(u)]
        tokens = 0
        if strategy == "random":
            draws = rng.random(len(block))
            values = [float(draws[i]) for i in live]
        else:
            found = score([block[i] for i in live])
            values, tokens = [u.score(strategy) for u in found], sum(u.tokens for u in found)
        for i, value in zip(live, values):
            entry = (-value if strategy == "mnlp" else value, -(start + i), block[i], value)
            if len(heap) < k:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)
        start += len(block)
        progress(len(live), tokens)
    ranked = sorted(heap, key=lambda e: (-e[0], -e[1]))
    return [Selected(-neg_index, unit, value) for _, neg_index, unit, value in ranked]


def _tokens(unit: Sequence[str]) -> list[str]:
    if isinstance(unit, str) or not all(isinstance(t, str) for t in unit):
        raise ConfigError("select takes sentences as lists of tokens (or corpora Sentences); for raw texts use "
                          "select_texts")
    return list(unit)


def _size(unit: Any) -> int:
    """Whether a unit has anything to label: its tokens (a text: its non-blank characters)."""
    if isinstance(unit, Sentence):
        return len(unit.tokens)
    if isinstance(unit, str):
        return len(unit.strip())
    return len(unit)
