"""`Tagger`: load a model directory, tag raw text or tokens, score a corpus. The CLI only calls this.

Tagging runs the numpy engine (tagger/inference.py) with OpenBLAS limited to one thread while it works
(threadpoolctl): its matrix products are too small for BLAS threads, which made it 2-4x slower.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from corpora import schemes
from corpora.conll import Sentence
from tagger import network, store
from tagger.config import Config
from tagger.encode import Encoded, Encoder, iter_batches
from tagger.errors import InputError, ModelError, TaggerError
from tagger.evaluate import score
from tagger.inference import Network
from tagger.lexicon import Lexicon, parse_lexicon
from tagger.text import Tokens, sentence_ends
from tagger.vocab import Vocab


def model_scheme(config: Config, source_scheme: str | None) -> str | None:
    """The scheme the network's tags are in: the corpus's, or the one the config converts to."""
    if source_scheme is None:
        return None
    return source_scheme if config.tag_scheme == "auto" else schemes.normalize_scheme(config.tag_scheme)


def sizes_of(vocab: Vocab) -> network.Sizes:
    """What sizes the network besides its config."""
    return network.Sizes(len(vocab.words), len(vocab.frozen), len(vocab.chars), len(vocab.tags),
                         tuple(len(f) for f in vocab.features), len(vocab.bigrams) if vocab.bigrams else 0)


@dataclass
class TaggedText:
    """One raw text tagged: its tokens (with offsets), where its sentences end, each sentence's tags (in the
    training corpus's scheme) and the entities (or, for plain tags, tagged tokens) with character offsets."""

    text: str
    tokens: Tokens
    ends: list[int]
    entities: list[dict]
    model_tags: list[list[str]]  # each sentence's tags in the model's scheme
    to_source: Callable[[list[str]], list[str]]  # model scheme -> the training corpus's

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
        self.network = Network(config, tensors)
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
        problems = network.check(tensors, config, sizes)
        if problems:
            raise ModelError(f"weights do not match config.json and vocab.json ({'; '.join(problems[:3])})",
                             path=str(Path(path) / "model.safetensors"))
        return cls(config, vocab, tensors, meta)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        store.save_model(path, self.config, self.vocab.to_json(), self.tensors, extra,
                         self.vocab.lexicon.to_text() if self.vocab.lexicon else None)

    # -- tagging ----------------------------------------------------------------------------------------

    def model_tags(self, sentences: Sequence[Sequence[str]], features: Sequence[Sequence[Sequence[str]]] = ()
                   ) -> list[list[str]]:
        """Tags (in the model's training scheme) of pre-tokenised sentences, in input order."""
        if self.vocab.features and not features:
            raise ModelError("this model needs feature columns "
                             f"({', '.join(map(str, self.config.features))}): give CoNLL input that has them")
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
                for i, path in zip(ids, self.network.tag(batch)):
                    out[i] = list(map(names.__getitem__, path))
        return out

    def _one_blas_thread(self):
        """A context in which OpenBLAS (numpy's) runs one thread, restored after it."""
        if self._threads is None:
            from threadpoolctl import ThreadpoolController

            self._threads = ThreadpoolController()
        return self._threads.limit(limits=1, user_api="blas")

    def predict_tokens(self, sentences: Sequence[Sequence[str]],
                       features: Sequence[Sequence[Sequence[str]]] = ()) -> list[list[str]]:
        """Tags of pre-tokenised sentences, in the scheme of the corpus the model was trained on."""
        if sentences is None or isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
            got = "a flat list of tokens" if isinstance(sentences, (list, tuple)) else type(sentences).__name__
            raise TaggerError("predict_tokens takes a list of sentences, each a list of tokens, e.g. "
                              f"[[\"EU\", \"rejects\"]], not {got}")
        return [self.to_source(t) for t in self.model_tags(sentences, features)]

    def to_source(self, tags: list[str]) -> list[str]:
        """Tags in the model's scheme -> the same tags in the scheme of the corpus it was trained on."""
        source = self.vocab.source_scheme
        if self.scheme is None or source is None or source == self.scheme:
            return tags
        return schemes.convert(tags, self.scheme, source)

    def predict(self, text: str) -> list[dict]:
        """Entity spans of raw text; `text[start:end] == entity["text"]` for every one."""
        if not isinstance(text, str):
            raise TaggerError(f"predict takes a string of raw text, not {type(text).__name__} (for "
                              "pre-tokenised sentences use predict_tokens)")
        return next(iter(self.predict_texts([text])))

    def predict_texts(self, texts: Iterable[str]) -> Iterator[list[dict]]:
        """Entity spans of each text (e.g. each input line), tagged in batches across texts."""
        return (tagged.entities for tagged in self.tag_texts(texts))

    def tag_texts(self, texts: Iterable[str]) -> Iterator[TaggedText]:
        """Each raw text tokenised, split into sentences and tagged (batched across texts): what writers render."""
        if self.vocab.features:
            raise ModelError("this model needs feature columns "
                             f"({', '.join(map(str, self.config.features))}), which raw text does not have: "
                             "give CoNLL input (--input-format conll)")
        texts = list(texts)
        scanned = [self._sentences(t) for t in texts]  # per text: its tokens and where its sentences end
        tags = iter(self.model_tags([tokens.texts[a:b] for tokens, ends in scanned for a, b in pairwise([0, *ends])]))
        for text, (tokens, ends) in zip(texts, scanned):
            per_sentence = [next(tags) for _ in ends]
            entities = []
            for first, sentence_tags in zip([0, *ends], per_sentence):
                entities += self._spans(text, tokens, first, sentence_tags)
            yield TaggedText(text, tokens, ends, entities, per_sentence, self.to_source)

    def _sentences(self, text: str) -> tuple[Tokens, list[int]]:
        tokenizer = self.config.tokenizer
        return sentence_ends(text, "words" if tokenizer == "auto" else tokenizer)

    def _spans(self, text: str, tokens: Tokens, first: int, tags: list[str]) -> list[dict]:
        """Entities (or, for plain tags, tagged tokens) of the sentence whose tokens start at `first`."""
        starts, ends = tokens.starts, tokens.ends
        if self.scheme is None:
            return [{"start": starts[i], "end": ends[i], "label": tag, "text": tokens.texts[i]}
                    for i, tag in enumerate(tags, start=first)]
        spans = []
        for label, s, e in schemes.spans(tags, self.scheme):
            start, end = starts[first + s], ends[first + e - 1]
            spans.append({"start": start, "end": end, "label": label, "text": text[start:end]})
        return spans

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
            "best_dev_f1": best_f1,
            "best_epoch": self.meta.get("epoch"),
            "training_corpus": training.get("train"),
            "dev_corpus": training.get("dev"),
            "date": training.get("date"),
        }


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
        return parse_lexicon(text.splitlines(), str(Path(path) / store.LEXICON))
    except InputError as e:
        raise ModelError(e.message, path=e.path, line=e.line) from None


def feature_columns(sentence: Sentence, columns: Sequence[int]) -> list[list[str]]:
    """The values of the given columns, one list per column (F lists of T values)."""
    return [[row[c] for row in sentence.rows] for c in columns]
