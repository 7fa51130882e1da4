"""The tagging pipeline behind `Tagger` and every door out (files, Ray, HTTP, selection): sentences or raw
texts -> encoded -> mixed-length batches -> engine -> Viterbi paths or forward-backward -> tags, entities.

Functions take a loaded model (`Loaded`: what a `Tagger` holds, its vocabulary, encoder, engine and scheme)
and the batch size as arguments, and change neither. `Loaded` is a Protocol, so that this module does not
import the Tagger that calls it. OpenBLAS runs one thread while the engine works (threadpoolctl, through the
model's own controller): the engine's matrix products are too small for BLAS threads, which made it 2-4x slower.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, Iterator, Protocol, Sequence

import numpy as np

from corpora import schemes
from corpora.conll import Sentence
from tagger.data import feature_columns
from tagger.encode import Encoded, iter_batches
from tagger.errors import ModelError
from tagger.tagging import confidence, marginals
from tagger.tagging.confidence import ScoreOptions, Scored
from tagger.text import Tokens, sentence_ends

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

    from tagger.config import Config
    from tagger.encode import Batch, Encoder
    from tagger.vocab import Vocab

BATCH_SIZE = 256  # sentences per engine call


class Engine(Protocol):
    """A network's tagging pass: numpy's (engine.Engine), onnxruntime's (export/runtime.py), an ensemble's."""

    crf: tuple[np.ndarray, np.ndarray, np.ndarray]  # (start, transitions, end)

    def tag(self, batch: Batch) -> list[list[int]]: ...

    def emissions(self, batch: Batch) -> np.ndarray: ...


class Loaded(Protocol):
    """What the pipeline reads of a loaded model; a `Tagger` (tagger/tagging/tagger.py) is one."""

    config: Config
    vocab: Vocab
    encode: Encoder
    engine: Engine
    scheme: str | None
    blas: ThreadpoolController  # made with the model, never by the pipeline

    def to_source(self, tags: list[str]) -> list[str]: ...


@dataclass
class SentenceScores:
    """How sure the model is of one tagged sentence: what writers add with --scores and --n-best."""

    tags: list[float] | None          # P(y_t = the model's chosen tag | x), one per token (None: not asked)
    entities: list[float] | None      # P(exactly this entity | x), per entity of the tags (plain tags: per token)
    alternatives: list[dict] | None = None  # [{"tags": [...], "probability": p}], best first (None: not asked)


@dataclass
class TaggedText:
    """One raw text tagged: its tokens (with offsets), where its sentences end, each sentence's tags (in the
    training corpus's scheme) and the entities (or, for plain tags, tagged tokens) with character offsets.
    When scored, each entity also has its "score", `scores` holds each sentence's and `alternatives` the
    text's n best analyses [{"entities": [...], "probability": p}]."""

    text: str
    tokens: Tokens
    ends: list[int]
    entities: list[dict]
    model_tags: list[list[str]]  # each sentence's tags in the model's scheme
    to_source: Callable[[list[str]], list[str]]  # model scheme -> the training corpus's
    scores: list[SentenceScores] | None = None  # one per sentence
    alternatives: list[dict] | None = None

    def sentences(self) -> Iterator[tuple[list[str], list[str]]]:
        """(tokens, tags in the training corpus's scheme) of each sentence."""
        for (a, b), tags in zip(pairwise([0, *self.ends]), self.model_tags):
            yield list(self.tokens.texts[a:b]), self.to_source(tags)


# -- pre-tokenised sentences ------------------------------------------------------------------------------

def tag_sentences(tagger: Loaded, sentences: Sequence[Sequence[str]], features: Sequence = (),
                  batch_size: int = BATCH_SIZE) -> list[list[str]]:
    """Tags (in the model's scheme) of pre-tokenised sentences, in input order; an empty sentence gets []."""
    encoded, todo = _encode(tagger, sentences, features)
    out: list[list[str]] = [[] for _ in sentences]
    for i, tags in zip(todo, tag_encoded(tagger, encoded, batch_size)):
        out[i] = tags
    return out


def tag_encoded(tagger: Loaded, encoded: Sequence[Encoded], batch_size: int = BATCH_SIZE) -> list[list[str]]:
    """Tags (in the model's scheme) of already encoded, non-empty sentences, in input order: the one batch loop
    of tag_sentences and of training's dev scores."""
    out: list[list[str]] = [[] for _ in encoded]
    names = tagger.vocab.tags.items
    with one_blas_thread(tagger):
        for ids, batch in iter_batches(encoded, batch_size, mixed=True):
            for i, path in zip(ids, tagger.engine.tag(batch)):
                out[i] = list(map(names.__getitem__, path))
    return out


def score_sentences(tagger: Loaded, sentences: Sequence[Sequence[str]], features: Sequence = (),
                    options: ScoreOptions = ScoreOptions(scores=True), batch_size: int = BATCH_SIZE
                    ) -> list[Scored]:
    """What `options` asks for of each sentence (tagger/tagging/confidence.py Scored): its best tags and
    entities in the model's scheme, their probabilities, its n best paths; entities below options.min_score
    dropped. One engine pass per batch gives the Viterbi paths and, as asked, forward-backward and n-best."""
    encoded, todo = _encode(tagger, sentences, features)
    out = [confidence.empty(len(tagger.vocab.tags), options) for _ in sentences]
    for i, scored in zip(todo, score_encoded(tagger, encoded, options, batch_size)):
        out[i] = scored
    if options.min_score is not None:
        out = [s.keep(options.min_score, tagger.vocab.tags.items) for s in out]
    return out


def score_encoded(tagger: Loaded, encoded: Sequence[Encoded], options: ScoreOptions,
                  batch_size: int = BATCH_SIZE) -> list[Scored]:
    """Already encoded, non-empty sentences tagged and scored as `options` asks, in input order."""
    out: list = [None] * len(encoded)
    with one_blas_thread(tagger):
        for ids, batch in iter_batches(encoded, batch_size, mixed=True):
            found = confidence.score_batch(tagger.engine.emissions(batch), batch.mask, tagger.engine.crf,
                                           tagger.vocab.tags.items, tagger.scheme, options,
                                           tagger.config.temperature)
            for i, scored in zip(ids, found):
                out[i] = scored
    return out


def scored_tokens(tagger: Loaded, sentences: Sequence[Sequence[str]], features: Sequence = (),
                  options: ScoreOptions = ScoreOptions(scores=True), batch_size: int = BATCH_SIZE
                  ) -> list[tuple[list[str], SentenceScores]]:
    """Each sentence's tags (in the training corpus's scheme) and its SentenceScores: what writers render
    for token and CoNLL input with --scores or --n-best."""
    return [(tagger.to_source(s.tags), sentence_scores(tagger, s, options, with_tags=True))
            for s in score_sentences(tagger, sentences, features, options, batch_size)]


def emission_batches(tagger: Loaded, sentences: Sequence[Sequence[str]], features: Sequence = (),
                     batch_size: int = BATCH_SIZE) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """The network's scores of the non-empty sentences, batched: per batch the indices of its sentences,
    emissions (B, T, K) and mask (B, T). What probabilities (tagger/tagging/marginals.py) start from."""
    encoded, todo = _encode(tagger, sentences, features)
    for ids, batch in iter_batches(encoded, batch_size, mixed=True):
        with one_blas_thread(tagger):  # not held while the caller has the batch
            emissions = tagger.engine.emissions(batch)  # (B, T, K)
        yield [todo[i] for i in ids], emissions, batch.mask


def lattices(tagger: Loaded, sentences: Sequence[Sequence[str]], features: Sequence = (),
             batch_size: int = BATCH_SIZE) -> Iterator[tuple[list[int], marginals.Lattice]]:
    """Forward-backward over the non-empty sentences, batched: (their indices, the batch's lattice), at the
    model's temperature."""
    for ids, emissions, mask in emission_batches(tagger, sentences, features, batch_size):
        with one_blas_thread(tagger):
            lattice = marginals.forward_backward(emissions, mask, *tagger.engine.crf,
                                                 temperature=tagger.config.temperature)
        yield ids, lattice


def gold_and_predicted(tagger: Loaded, sentences: Sequence[Sentence], scheme: str | None = None,
                       batch_size: int = BATCH_SIZE) -> tuple[list[list[str]], list[list[str]]]:
    """The sentences' gold tags and the model's, both in the model's scheme (what evaluation compares);
    `scheme` is the gold tags' (detected when None)."""
    columns = tagger.config.features
    feats = [feature_columns(s, columns) for s in sentences] if columns else ()
    pred = tag_sentences(tagger, [s.tokens for s in sentences], feats, batch_size)
    if tagger.scheme is None:
        return [list(s.tags) for s in sentences], pred
    source = scheme or schemes.detect_scheme(s.tags for s in sentences) or tagger.scheme
    return [schemes.convert(s.tags, source, tagger.scheme) for s in sentences], pred


# -- raw text -------------------------------------------------------------------------------------------

def tag_texts(tagger: Loaded, texts: Iterable[str], options: ScoreOptions = ScoreOptions(),
              batch_size: int = BATCH_SIZE) -> Iterator[TaggedText]:
    """Each raw text tokenised, split into sentences and tagged (batched across texts): what writers render.
    With `options` (scores, min_score, n_best) scored too; without, no probability is computed."""
    if tagger.vocab.features:
        raise ModelError("this model needs feature columns "
                         f"({', '.join(map(str, tagger.config.features))}), which raw text does not have: "
                         "give CoNLL input (--input-format conll)")
    texts = list(texts)
    tokenizer = "words" if tagger.config.tokenizer == "auto" else tagger.config.tokenizer
    scanned = [sentence_ends(t, tokenizer) for t in texts]  # per text: its tokens and where its sentences end
    flat = [tokens.texts[a:b] for tokens, ends in scanned for a, b in pairwise([0, *ends])]
    if options.active:
        yield from _scored_texts(tagger, texts, scanned, score_sentences(tagger, flat, (), options, batch_size),
                                 options)
        return
    tags = iter(tag_sentences(tagger, flat, (), batch_size))
    for text, (tokens, ends) in zip(texts, scanned):
        per_sentence = [next(tags) for _ in ends]
        entities = []
        for first, sentence_tags in zip([0, *ends], per_sentence):
            entities += _spans(tagger, text, tokens, first, sentence_tags)
        yield TaggedText(text, tokens, ends, entities, per_sentence, tagger.to_source)


def _scored_texts(tagger: Loaded, texts: list[str], scanned: list[tuple[Tokens, list[int]]], scored: list[Scored],
                  options: ScoreOptions) -> Iterator[TaggedText]:
    found = iter(scored)
    for text, (tokens, ends) in zip(texts, scanned):
        per_sentence = [next(found) for _ in ends]
        entities, choices = [], []
        for first, s in zip([0, *ends], per_sentence):
            spans = [_entity(tagger, text, tokens, first, span) for span in s.spans]
            if options.marginals:
                for entity, p in zip(spans, s.span_scores):
                    entity["score"] = p
            entities += spans
            if options.n_best:
                choices.append([(_spans(tagger, text, tokens, first, tags), p) for tags, p in s.alternatives])
        yield TaggedText(text, tokens, ends, entities, [s.tags for s in per_sentence], tagger.to_source,
                         [sentence_scores(tagger, s, options) for s in per_sentence],
                         joint_alternatives(choices, options.n_best) if options.n_best else None)


def sentence_scores(tagger: Loaded, scored: Scored, options: ScoreOptions, with_tags: bool = False
                    ) -> SentenceScores:
    """What writers need of a scored sentence; the n best tag sequences (in the training corpus's scheme)
    only `with_tags`: raw-text records show alternatives per text, as entities."""
    alternatives = None
    if with_tags and options.n_best:
        alternatives = [{"tags": tagger.to_source(tags), "probability": p} for tags, p in scored.alternatives]
    return SentenceScores(scored.tag_scores, scored.span_scores, alternatives)


def joint_alternatives(per_sentence: Sequence[Sequence[tuple[list[dict], float]]], k: int) -> list[dict]:
    """The k most probable analyses of a text from each of its sentences' k best (entities, probability),
    as [{"entities", "probability"}]. The sentences are tagged independently, so an analysis's probability
    is the product of its sentences' (in log space, so that long texts do not reorder by underflow), and the
    k best products use only each sentence's k best: exact. The first is always every sentence's first
    (the best path's); a text of no sentences has one analysis, no entities, with probability 1."""
    best: list[tuple[list[dict], float]] = [([], 0.0)]  # (entities, log probability)
    for choices in per_sentence:
        merged = [(entities + more, log_p + _log(p)) for entities, log_p in best for more, p in choices]
        best = merged[:1] + sorted(merged[1:], key=lambda x: -x[1])[: k - 1]  # sorted() is stable: ties keep rank order
    return [{"entities": entities, "probability": math.exp(log_p)} for entities, log_p in best]


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -math.inf


def _entity(tagger: Loaded, text: str, tokens: Tokens, first: int, span: tuple[str, int, int]) -> dict:
    """The entity (label, s, e) of the sentence whose tokens start at `first`, with character offsets."""
    label, s, e = span
    start, end = tokens.starts[first + s], tokens.ends[first + e - 1]
    if tagger.scheme is None:  # a plain tag marks one token
        return {"start": start, "end": end, "label": label, "text": tokens.texts[first + s]}
    return {"start": start, "end": end, "label": label, "text": text[start:end]}


def _spans(tagger: Loaded, text: str, tokens: Tokens, first: int, tags: list[str]) -> list[dict]:
    """Entities (or, for plain tags, tagged tokens) of the sentence whose tokens start at `first`."""
    return [_entity(tagger, text, tokens, first, span) for span in schemes.tag_spans(tags, tagger.scheme)]


def _encode(tagger: Loaded, sentences: Sequence[Sequence[str]], features: Sequence
            ) -> tuple[list[Encoded], list[int]]:
    """The non-empty sentences encoded, and their indices in `sentences`."""
    if tagger.vocab.features and not features:
        raise ModelError("this model needs feature columns "
                         f"({', '.join(map(str, tagger.config.features))}): give CoNLL input that has them")
    todo = [i for i, s in enumerate(sentences) if len(s)]
    return [tagger.encode(sentences[i], features=features[i] if features else ()) for i in todo], todo


def one_blas_thread(tagger: Loaded) -> ContextManager:
    """A context in which OpenBLAS (numpy's) runs one thread, restored after it, through the model's own
    controller (which lists the loaded BLAS libraries, 0.2 ms: made once, when the model is)."""
    return tagger.blas.limit(limits=1, user_api="blas")
