"""`Tagger`: load a model directory, tag raw text or tokens, score a corpus. The CLI only calls this.

Tagging runs the numpy engine (tagger/tagging/engine.py) with OpenBLAS limited to one thread while it works
(threadpoolctl): its matrix products are too small for BLAS threads, which made it 2-4x slower.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from corpora import schemes
from corpora.conll import Sentence
from tagger import store
from tagger.tagging import marginals
from tagger import tensors as spec
from tagger.tagging import confidence
from tagger.config import Config
from tagger.encode import Encoded, Encoder, iter_batches
from tagger.errors import InputError, ModelError, TaggerError
from tagger.reports.metrics import score
from tagger.tagging.engine import Engine
from tagger.tagging.confidence import ScoreOptions, Scored
from tagger.lexicon import Lexicon, parse_saved
from tagger.text import Tokens, sentence_ends
from tagger.vocab import Vocab


def model_scheme(config: Config, source_scheme: str | None) -> str | None:
    """The scheme the network's tags are in: the corpus's, or the one the config converts to."""
    if source_scheme is None:
        return None
    return source_scheme if config.tag_scheme == "auto" else schemes.normalize_scheme(config.tag_scheme)


def sizes_of(vocab: Vocab) -> spec.Sizes:
    """What sizes the network besides its config."""
    return spec.Sizes(len(vocab.words), len(vocab.frozen), len(vocab.chars), len(vocab.tags),
                         tuple(len(f) for f in vocab.features), len(vocab.bigrams) if vocab.bigrams else 0,
                         len(vocab.context) if vocab.context else 0)


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


class Tagger:
    """A trained BiLSTM-CRF with its vocabulary and config, tagging with the numpy engine.

    >>> t = Tagger.load("model_dir")
    >>> t.predict("Angela Merkel visited Paris.")
    [{'start': 0, 'end': 13, 'label': 'PER', 'text': 'Angela Merkel'}, ...]
    """

    def __init__(self, config: Config, vocab: Vocab, tensors: Mapping[str, np.ndarray], meta: dict | None = None):
        config = config.resolved()
        self.config, self.vocab, self.tensors, self.meta = config, vocab, tensors, meta or {}
        self.engine = Engine(config, tensors)
        self.scheme = model_scheme(config, vocab.source_scheme)
        self.encode = Encoder(vocab)
        self.batch_size = 256
        self._threads = None  # threadpoolctl's controller, made on first use

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tagger":
        """Read config.json, vocab.json and model.safetensors (any format version); never unpickles anything."""
        config, vocab_json, tensors, meta = store.load_model(path)
        lexicon = _lexicon(path, config, meta)
        try:
            vocab = Vocab.from_json(vocab_json, lexicon)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed vocabulary ({e})", path=str(Path(path) / "vocab.json")) from None
        sizes = sizes_of(vocab)
        if meta.get("format_version", 1) == 1:
            tensors = store.from_format_1(tensors, config, sizes, Path(path))
        problems = spec.check(tensors, config, sizes)
        if problems:
            raise ModelError(f"weights do not match config.json and vocab.json ({'; '.join(problems[:3])})",
                             path=str(Path(path) / "model.safetensors"))
        return cls(config, vocab, tensors, meta)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the model directory (format_version 2), keeping what config.json recorded (best epoch, dev
        F1, training data) unless `extra` replaces it."""
        kept = {k: v for k, v in self.meta.items() if k not in ("format", "format_version", "config", "sha256")}
        store.save_model(path, self.config, self.vocab.to_json(), self.tensors, kept if extra is None else extra,
                         self.vocab.lexicon.to_text() if self.vocab.lexicon else None)

    # -- tagging ----------------------------------------------------------------------------------------

    def model_tags(self, sentences: Sequence[Sequence[str]], features: Sequence[Sequence[Sequence[str]]] = ()
                   ) -> list[list[str]]:
        """Tags (in the model's training scheme) of pre-tokenised sentences, in input order."""
        self._check_features(features)
        out: list[list[str]] = [[] for _ in sentences]
        todo = [i for i, s in enumerate(sentences) if len(s)]
        encoded = [self.encode(sentences[i], features=features[i] if features else ()) for i in todo]
        for i, tags in zip(todo, self.tag_encoded(encoded)):
            out[i] = tags
        return out

    def tag_encoded(self, encoded: Sequence[Encoded]) -> list[list[str]]:
        """Tags (in the model's scheme) of already encoded, non-empty sentences, in input order."""
        out: list[list[str]] = [[] for _ in encoded]
        names = self.vocab.tags.items
        with self._one_blas_thread():
            for ids, batch in iter_batches(encoded, self.batch_size, mixed=True):
                for i, path in zip(ids, self.engine.tag(batch)):
                    out[i] = list(map(names.__getitem__, path))
        return out

    def _check_features(self, features: Sequence) -> None:
        if self.vocab.features and not features:
            raise ModelError("this model needs feature columns "
                             f"({', '.join(map(str, self.config.features))}): give CoNLL input that has them")

    def model_scores(self, sentences: Sequence[Sequence[str]], features: Sequence[Sequence[Sequence[str]]] = (),
                     options: ScoreOptions = ScoreOptions(scores=True)) -> list[Scored]:
        """model_tags with what `options` asks for (tagger/tagging/confidence.py Scored): each sentence's best tags and
        entities in the model's scheme, their probabilities, its n best paths; entities below
        options.min_score already dropped. In input order; an empty sentence gets no entities."""
        self._check_features(features)
        out = [confidence.empty(len(self.vocab.tags), options) for _ in sentences]
        todo = [i for i, s in enumerate(sentences) if len(s)]
        encoded = [self.encode(sentences[i], features=features[i] if features else ()) for i in todo]
        for i, scored in zip(todo, self.score_encoded(encoded, options)):
            out[i] = scored
        if options.min_score is not None:
            out = [s.keep(options.min_score, self.vocab.tags.items) for s in out]
        return out

    def score_encoded(self, encoded: Sequence[Encoded], options: ScoreOptions) -> list[Scored]:
        """Already encoded, non-empty sentences tagged and scored, in input order: one network pass per batch,
        whose emissions give the Viterbi paths and, as asked, forward-backward and the k best paths."""
        out: list = [None] * len(encoded)
        with self._one_blas_thread():
            for ids, batch in iter_batches(encoded, self.batch_size, mixed=True):
                found = confidence.score_batch(self.engine.emissions(batch), batch.mask, self.engine.crf,
                                            self.vocab.tags.items, self.scheme, options, self.config.temperature)
                for i, scored in zip(ids, found):
                    out[i] = scored
        return out

    def emission_batches(self, sentences: Sequence[Sequence[str]], features: Sequence[Sequence[Sequence[str]]] = ()
                         ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
        """The network's scores of the non-empty sentences, batched: per batch the indices of its sentences,
        emissions (B, T, K) and mask (B, T). What probabilities (tagger/tagging/marginals.py) start from."""
        self._check_features(features)
        todo = [i for i, s in enumerate(sentences) if len(s)]
        encoded = [self.encode(sentences[i], features=features[i] if features else ()) for i in todo]
        for ids, batch in iter_batches(encoded, self.batch_size, mixed=True):
            with self._one_blas_thread():  # not held while the caller has the batch
                emissions = self.engine.emissions(batch)
            yield [todo[i] for i in ids], emissions, batch.mask

    def _lattices(self, sentences: Sequence[Sequence[str]]) -> Iterator[tuple[list[int], marginals.Lattice]]:
        """Forward-backward over the non-empty sentences, batched: (their indices, the batch's lattice)."""
        for ids, emissions, mask in self.emission_batches(sentences):
            with self._one_blas_thread():
                lattice = marginals.forward_backward(emissions, mask, *self.engine.crf,
                                                     temperature=self.config.temperature)
            yield ids, lattice

    def _one_blas_thread(self):
        """A context in which OpenBLAS (numpy's) runs one thread, restored after it."""
        if self._threads is None:
            from threadpoolctl import ThreadpoolController

            self._threads = ThreadpoolController()
        return self._threads.limit(limits=1, user_api="blas")

    def predict_tokens(self, sentences: Sequence[Sequence[str]],
                       features: Sequence[Sequence[Sequence[str]]] = ()) -> list[list[str]]:
        """Tags of pre-tokenised sentences, in the scheme of the corpus the model was trained on."""
        _check_sentences(sentences, "predict_tokens")
        return [self.to_source(t) for t in self.model_tags(sentences, features)]

    def to_source(self, tags: list[str]) -> list[str]:
        """Tags in the model's scheme -> the same tags in the scheme of the corpus it was trained on."""
        source = self.vocab.source_scheme
        if self.scheme is None or source is None or source == self.scheme:
            return tags
        return schemes.convert(tags, self.scheme, source)

    def scored_tokens(self, sentences: Sequence[Sequence[str]], features: Sequence[Sequence[Sequence[str]]] = (),
                      options: ScoreOptions = ScoreOptions(scores=True)) -> list[tuple[list[str], SentenceScores]]:
        """predict_tokens with scores: each sentence's tags (in the training corpus's scheme) and its
        SentenceScores (the chosen tags' marginals, the entities' probabilities, the n best tag sequences)."""
        _check_sentences(sentences, "scored_tokens")
        return [(self.to_source(s.tags), self._sentence_scores(s, options, with_tags=True))
                for s in self.model_scores(sentences, features, options)]

    def marginals(self, tokens: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """P(y_t = k | x) of each pre-tokenised sentence, exact (forward-backward, at Config.temperature): a
        (T, K) float64 array per sentence whose columns are the model's tags in the order of `Tagger.tags`, in
        the model's own scheme (BIOES by default: a one-token person is S-PER); each row sums to 1."""
        _check_sentences(tokens, "marginals")
        out = [np.zeros((0, len(self.vocab.tags))) for _ in tokens]
        for ids, lattice in self._lattices(tokens):
            for b, i in enumerate(ids):
                out[i] = lattice.marginals[b, : len(tokens[i])].copy()  # (T, K)
        return out

    def span_probability(self, tokens: Sequence[str], start: int, end: int, label: str) -> float:
        """P(tokens[start:end] is exactly one entity of type `label` | tokens), summed over every tag sequence
        that spells it, on the best path or not (token offsets, `end` exclusive; label as in entity_types)."""
        if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
            raise TaggerError("span_probability takes one sentence as a list of tokens, e.g. [\"EU\", \"rejects\"]")
        if self.scheme is None:
            raise TaggerError("span_probability: the model's tags are plain labels, not entity spans")
        if label not in self.entity_types:
            raise TaggerError(f"span_probability: unknown label {label!r} (one of {', '.join(self.entity_types)})")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(tokens)):
            raise TaggerError(f"span_probability: tokens [{start}, {end}) are not a span of a sentence of "
                              f"{len(tokens)} tokens")
        (_, lattice), = self._lattices([tokens])
        return marginals.span_probabilities(lattice, [[(label, start, end)]], self.vocab.tags.items, self.scheme)[0][0]

    @property
    def tags(self) -> list[str]:
        """The model's tags in its own scheme, in the order of its scores (the columns of `marginals`)."""
        return list(self.vocab.tags.items)

    def predict(self, text: str, scores: bool = False, min_score: float | None = None) -> list[dict]:
        """Entity spans of raw text; `text[start:end] == entity["text"]` for every one. With `scores`, each
        entity also has "score": P(exactly this span with this label | text) under the CRF, exact, at the
        model's Config.temperature; `min_score` drops the entities scored below it (and implies scores)."""
        if not isinstance(text, str):
            raise TaggerError(f"predict takes a string of raw text, not {type(text).__name__} (for "
                              "pre-tokenised sentences use predict_tokens)")
        return next(iter(self.predict_texts([text], scores, min_score)))

    def alternatives(self, text: str, k: int) -> list[dict]:
        """The k most probable analyses of raw text, best first: [{"entities": [...], "probability": p}]. The
        first is predict()'s entities. A text of several sentences: the model tags each sentence on its own,
        so an analysis is one tag sequence per sentence and its probability the product of theirs (exact, not
        renormalised over the k: they sum to at most 1). Fewer than k when the text has fewer analyses."""
        if not isinstance(text, str):
            raise TaggerError(f"alternatives takes a string of raw text, not {type(text).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise TaggerError(f"alternatives: k must be a whole number of at least 1, not {k!r}")
        return next(iter(self.tag_texts([text], ScoreOptions(n_best=k)))).alternatives

    def predict_texts(self, texts: Iterable[str], scores: bool = False, min_score: float | None = None
                      ) -> Iterator[list[dict]]:
        """Entity spans of each text (e.g. each input line), tagged in batches across texts (see predict)."""
        options = ScoreOptions(scores=scores, min_score=min_score)
        return (tagged.entities for tagged in self.tag_texts(texts, options))

    def tag_texts(self, texts: Iterable[str], options: ScoreOptions = ScoreOptions()) -> Iterator[TaggedText]:
        """Each raw text tokenised, split into sentences and tagged (batched across texts): what writers render.
        With `options` (scores, min_score, n_best) scored too; without, no probability is computed."""
        if self.vocab.features:
            raise ModelError("this model needs feature columns "
                             f"({', '.join(map(str, self.config.features))}), which raw text does not have: "
                             "give CoNLL input (--input-format conll)")
        texts = list(texts)
        scanned = [self._sentences(t) for t in texts]  # per text: its tokens and where its sentences end
        flat = [tokens.texts[a:b] for tokens, ends in scanned for a, b in pairwise([0, *ends])]
        if options.active:
            yield from self._scored_texts(texts, scanned, self.model_scores(flat, options=options), options)
            return
        tags = iter(self.model_tags(flat))
        for text, (tokens, ends) in zip(texts, scanned):
            per_sentence = [next(tags) for _ in ends]
            entities = []
            for first, sentence_tags in zip([0, *ends], per_sentence):
                entities += self._spans(text, tokens, first, sentence_tags)
            yield TaggedText(text, tokens, ends, entities, per_sentence, self.to_source)

    def _scored_texts(self, texts: list[str], scanned: list[tuple[Tokens, list[int]]], scored: list[Scored],
                      options: ScoreOptions) -> Iterator[TaggedText]:
        found = iter(scored)
        for text, (tokens, ends) in zip(texts, scanned):
            per_sentence = [next(found) for _ in ends]
            entities, choices = [], []
            for first, s in zip([0, *ends], per_sentence):
                spans = [self._entity(text, tokens, first, span) for span in s.spans]
                if options.marginals:
                    for entity, p in zip(spans, s.span_scores):
                        entity["score"] = p
                entities += spans
                if options.n_best:
                    choices.append([(self._spans(text, tokens, first, tags), p) for tags, p in s.alternatives])
            yield TaggedText(text, tokens, ends, entities, [s.tags for s in per_sentence], self.to_source,
                             [self._sentence_scores(s, options) for s in per_sentence],
                             joint_alternatives(choices, options.n_best) if options.n_best else None)

    def _sentence_scores(self, scored: Scored, options: ScoreOptions, with_tags: bool = False) -> SentenceScores:
        """What writers need of a scored sentence; the n best tag sequences (in the training corpus's
        scheme) only `with_tags`: raw-text records show alternatives per text, as entities."""
        alternatives = None
        if with_tags and options.n_best:
            alternatives = [{"tags": self.to_source(tags), "probability": p} for tags, p in scored.alternatives]
        return SentenceScores(scored.tag_scores, scored.span_scores, alternatives)

    def _entity(self, text: str, tokens: Tokens, first: int, span: tuple[str, int, int]) -> dict:
        """The entity (label, s, e) of the sentence whose tokens start at `first`, with character offsets."""
        label, s, e = span
        start, end = tokens.starts[first + s], tokens.ends[first + e - 1]
        if self.scheme is None:  # a plain tag marks one token
            return {"start": start, "end": end, "label": label, "text": tokens.texts[first + s]}
        return {"start": start, "end": end, "label": label, "text": text[start:end]}

    def _sentences(self, text: str) -> tuple[Tokens, list[int]]:
        tokenizer = self.config.tokenizer
        return sentence_ends(text, "words" if tokenizer == "auto" else tokenizer)

    def _spans(self, text: str, tokens: Tokens, first: int, tags: list[str]) -> list[dict]:
        """Entities (or, for plain tags, tagged tokens) of the sentence whose tokens start at `first`."""
        spans = (schemes.spans(tags, self.scheme) if self.scheme is not None
                 else [(tag, i, i + 1) for i, tag in enumerate(tags)])
        return [self._entity(text, tokens, first, span) for span in spans]

    # -- scoring ---------------------------------------------------------------------------------------

    def evaluate(self, sentences: Sequence[Sentence], scheme: str | None = None) -> dict:
        """Entity P/R/F1 (seqeval strict) or token accuracy against the sentences' gold tags.

        `scheme` is the gold tags' scheme (detected when None): it may differ from the training corpus's.
        """
        gold, pred = self.gold_and_predicted(sentences, scheme)
        return score(gold, pred, self.scheme)

    def gold_and_predicted(self, sentences: Sequence[Sentence], scheme: str | None = None
                           ) -> tuple[list[list[str]], list[list[str]]]:
        """The sentences' gold tags and the model's, both in the model's scheme (what `evaluate` scores)."""
        feats = [feature_columns(s, self.config.features) for s in sentences] if self.config.features else ()
        pred = self.model_tags([s.tokens for s in sentences], feats)
        if self.scheme is None:
            return [list(s.tags) for s in sentences], pred
        source = scheme or schemes.detect_scheme(s.tags for s in sentences) or self.scheme
        return [schemes.convert(s.tags, source, self.scheme) for s in sentences], pred

    # -- what the model is ------------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Every tag the model answers with, in the training corpus's scheme ("O", "B-LOC", "I-LOC", ...)."""
        source = self.vocab.source_scheme
        if self.scheme is None or source is None:
            return sorted(self.vocab.tags.items)
        types = sorted({schemes.split_tag(t)[1] for t in self.vocab.tags.items if t != "O"})
        return ["O", *(tag for label in types for tag in _scheme_tags(label, source))]

    @property
    def entity_types(self) -> list[str]:
        """What the tagger finds: entity types (PER, LOC, ...) for tags in a scheme, else the tags (POS-like)."""
        if self.scheme is None:
            return sorted(self.vocab.tags.items)
        return sorted({schemes.split_tag(t)[1] for t in self.vocab.tags.items} - {None})

    def info(self) -> dict:
        """What a user asks of a model: its labels and scheme, tokeniser, vocabulary sizes, embeddings, best
        dev F1 and epoch, training corpus and date (the last ones as recorded when it was saved, else None)."""
        training = self.meta.get("training", {})
        best_f1 = self.meta.get("dev_f1")
        return {
            "labels": self.labels,
            "entity_types": self.entity_types if self.scheme else [],
            "scheme": self.vocab.source_scheme,
            "model_scheme": self.scheme,
            "tokenizer": self.config.tokenizer,
            "vocabulary": {"words": len(self.vocab.words), "pretrained_only_words": len(self.vocab.frozen),
                           "characters": len(self.vocab.chars), "tags": len(self.vocab.tags),
                           "features": [len(f) for f in self.vocab.features],
                           "bigrams": len(self.vocab.bigrams) if self.vocab.bigrams else 0,
                           "lexicon_words": len(self.vocab.lexicon) if self.vocab.lexicon else 0},
            "embeddings": training.get("embeddings"),
            "context": self.config.context,
            "best_dev_f1": best_f1,
            "best_epoch": self.meta.get("epoch"),
            "training_corpus": training.get("train"),
            "dev_corpus": training.get("dev"),
            "date": training.get("date"),
        }


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


def _check_sentences(sentences: Sequence[Sequence[str]], name: str) -> None:
    if sentences is None or isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
        got = "a flat list of tokens" if isinstance(sentences, (list, tuple)) else type(sentences).__name__
        raise TaggerError(f"{name} takes a list of sentences, each a list of tokens, e.g. "
                          f"[[\"EU\", \"rejects\"]], not {got}")


_PREFIX_ORDER = "BIMELSU"


def _scheme_tags(label: str, scheme: str) -> list[str]:
    """Every tag of one entity type in `scheme`: the tags of a one-token span next to a three-token one."""
    tags = set(schemes.from_spans([(label, 0, 1), (label, 1, 4)], 4, scheme))
    return sorted(tags, key=lambda t: _PREFIX_ORDER.index(t[0]))


def _lexicon(path: str | os.PathLike, config: Config, meta: dict) -> Lexicon | None:
    """The lexicon a model directory keeps (lexicon.txt), which a model with lexicon features needs."""
    text = store.load_lexicon(path, meta)
    if text is None:
        if config.lexicon:
            raise ModelError(f"model directory lacks {store.LEXICON} (config.json has lexicon = true)", path=str(path))
        return None
    try:
        return parse_saved(text, str(Path(path) / store.LEXICON))
    except InputError as e:
        raise ModelError(e.message, path=e.path, line=e.line) from None


def feature_columns(sentence: Sentence, columns: Sequence[int]) -> list[list[str]]:
    """The values of the given columns, one list per column (F lists of T values)."""
    return [[row[c] for row in sentence.rows] for c in columns]
