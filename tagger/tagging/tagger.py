"""`Tagger`: a trained model loaded for tagging. What a user calls: load, predict, predict_tokens,
marginals, alternatives, span_probability, evaluate, info. The batched work behind these methods, which
the doors out (files, Ray, HTTP, selection) call too, is tagger/tagging/pipeline.py."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from corpora import schemes
from corpora.conll import Sentence
from tagger import store
from tagger import tensors as spec
from tagger.config import Config, model_scheme
from tagger.encode import Encoder
from tagger.errors import InputError, ModelError, TaggerError
from tagger.lexicon import Lexicon, parse_saved
from tagger.reports.metrics import measure
from tagger.tagging import ensemble, marginals, pipeline
from tagger.tagging.confidence import ScoreOptions
from tagger.tagging.engine import Engine
from tagger.tagging.pipeline import BATCH_SIZE
from tagger.vocab import Vocab


class Tagger:
    """A trained BiLSTM-CRF with its vocabulary and config, tagging with the numpy engine.

    >>> t = Tagger.load("model_dir")
    >>> t.predict("Angela Merkel visited Paris.")
    [{'start': 0, 'end': 13, 'label': 'PER', 'text': 'Angela Merkel'}, ...]
    """

    def __init__(self, config: Config, vocab: Vocab, tensors: Mapping[str, np.ndarray], meta: dict | None = None,
                 engine: Engine | ensemble.EnsembleEngine | None = None):
        config = config.resolved()
        self.config, self.vocab, self.tensors, self.meta = config, vocab, tensors, meta or {}
        self.engine = engine or Engine(config, tensors)  # an ensemble brings its own (tagging/ensemble.py)
        self.scheme = model_scheme(config, vocab.source_scheme)
        self.encode = Encoder(vocab)
        self.blas = ThreadpoolController()  # limits OpenBLAS to one thread around tagging (pipeline.py)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tagger":
        """Read config.json, vocab.json and model.safetensors (any format version); never unpickles anything.
        An ensemble directory (`tagger ensemble`) loads its members and tags with their averaged marginals.
        "hf://ORG/NAME[@REV]": a model on the Hugging Face Hub, fetched into its cache (tagger/hub.py)."""
        path = store.resolve(path)
        if ensemble.kind_of(path) == ensemble.KIND:
            return ensemble.load(Path(path), store.read_meta(path), cls.load,
                                 lambda config, vocab, meta, engine: cls(config, vocab, {}, meta, engine))
        config, vocab_json, tensors, meta = store.load_model(path)
        vocab, tensors = read_saved(path, config, vocab_json, tensors, meta)
        return cls(config, vocab, tensors, meta)

    @property
    def is_ensemble(self) -> bool:
        """Whether this tagger averages several models (tagger ensemble): it has no weights of its own."""
        return isinstance(self.engine, ensemble.EnsembleEngine)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the model directory (format_version 2), keeping what config.json recorded (best epoch, dev
        F1, training data) unless `extra` replaces it."""
        if self.is_ensemble:
            raise TaggerError("an ensemble has no weights of its own to save: `tagger ensemble` writes it")
        kept = {k: v for k, v in self.meta.items() if k not in ("format", "format_version", "config", "sha256")}
        store.save_model(path, self.config, self.vocab.to_json(), self.tensors, kept if extra is None else extra,
                         self.vocab.lexicon)

    # -- tagging ----------------------------------------------------------------------------------------

    def predict(self, text: str | Sequence[str], scores: bool = False, min_score: float | None = None,
                batch_size: int = BATCH_SIZE) -> list[dict] | list[list[dict]]:
        """Entity spans of raw text; `text[start:end] == entity["text"]` for every one. A list of texts gives
        one list of entities per text, tagged in batches across texts. With `scores`, each entity also has
        "score": P(exactly this span with this label | text) under the CRF, exact, at the model's
        Config.temperature; `min_score` drops the entities scored below it (and implies scores)."""
        one = isinstance(text, str)
        if not one and (not isinstance(text, Sequence) or not all(isinstance(t, str) for t in text)):
            raise TaggerError(f"predict takes a string of raw text, not {type(text).__name__}, or a list of such "
                              "strings (for pre-tokenised sentences use predict_tokens)")
        options = ScoreOptions(scores=scores, min_score=min_score)
        found = [tagged.entities for tagged in pipeline.tag_texts(self, [text] if one else text, options, batch_size)]
        return found[0] if one else found

    def predict_tokens(self, sentences: Sequence[Sequence[str]], features: Sequence[Sequence[Sequence[str]]] = (),
                       batch_size: int = BATCH_SIZE) -> list[list[str]]:
        """Tags of pre-tokenised sentences, in the scheme of the corpus the model was trained on."""
        _check_sentences(sentences, "predict_tokens")
        return [self.to_source(t) for t in pipeline.tag_sentences(self, sentences, features, batch_size)]

    def model_tags(self, sentences: Sequence[Sequence[str]], features: Sequence[Sequence[Sequence[str]]] = (),
                   batch_size: int = BATCH_SIZE) -> list[list[str]]:
        """predict_tokens in the model's own scheme (BIOES by default): the tags that name the columns of
        `marginals`, so that a chosen tag's probability can be looked up."""
        _check_sentences(sentences, "model_tags")
        return pipeline.tag_sentences(self, sentences, features, batch_size)

    def marginals(self, tokens: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """P(y_t = k | x) of each pre-tokenised sentence, exact (forward-backward, at Config.temperature): a
        (T, K) float64 array per sentence whose columns are the model's tags in the order of `Tagger.tags`, in
        the model's own scheme (BIOES by default: a one-token person is S-PER); each row sums to 1."""
        _check_sentences(tokens, "marginals")
        out = [np.zeros((0, len(self.vocab.tags))) for _ in tokens]
        for ids, lattice in pipeline.lattices(self, tokens):
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
        (_, lattice), = pipeline.lattices(self, [tokens])
        return marginals.span_probabilities(lattice, [[(label, start, end)]], self.vocab.tags.items, self.scheme)[0][0]

    def alternatives(self, text: str, k: int) -> list[dict]:
        """The k most probable analyses of raw text, best first: [{"entities": [...], "probability": p}]. The
        first is predict()'s entities. A text of several sentences: the model tags each sentence on its own,
        so an analysis is one tag sequence per sentence and its probability the product of theirs (exact, not
        renormalised over the k: they sum to at most 1). Fewer than k when the text has fewer analyses."""
        if not isinstance(text, str):
            raise TaggerError(f"alternatives takes a string of raw text, not {type(text).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise TaggerError(f"alternatives: k must be a whole number of at least 1, not {k!r}")
        return next(iter(pipeline.tag_texts(self, [text], ScoreOptions(n_best=k)))).alternatives

    def to_source(self, tags: list[str]) -> list[str]:
        """Tags in the model's scheme -> the same tags in the scheme of the corpus it was trained on."""
        source = self.vocab.source_scheme
        if self.scheme is None or source is None or source == self.scheme:
            return tags
        return schemes.convert(tags, self.scheme, source)

    # -- scoring ---------------------------------------------------------------------------------------

    def evaluate(self, sentences: Sequence[Sentence] | str | os.PathLike, scheme: str | None = None) -> dict:
        """Entity P/R/F1 (seqeval strict) or token accuracy against gold tags: of labelled sentences
        (corpora.conll.Sentence, as `read_conll` yields them), or of a CoNLL file (or dataset) read as `tagger
        evaluate` reads it, in the tag column the model was trained with.

        `scheme` is the gold tags' scheme (detected when None): it may differ from the training corpus's.
        Anything else (no sentence, bare token lists) is a TaggerError saying what evaluate takes.
        """
        if isinstance(sentences, (str, os.PathLike)):
            from tagger.data import check_model_fits, check_tags, read_sentences

            ref = os.fspath(sentences)
            sentences = read_sentences(ref, tag_column=(self.meta.get("training") or {}).get("tag_column"),
                                       split="test")
            scheme = check_tags(sentences, ref, scheme)
            check_model_fits(self.vocab.source_scheme, scheme, ref)
        sentences = _labelled(sentences)
        gold, pred = pipeline.gold_and_predicted(self, sentences, scheme)
        return measure(gold, pred, self.scheme)

    # -- what the model is ------------------------------------------------------------------------------

    @property
    def tags(self) -> list[str]:
        """The model's tags in its own scheme, in the order of its scores (the columns of `marginals`)."""
        return list(self.vocab.tags.items)

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
            "unlabeled_text": training.get("unlabeled"),  # cross-view training's raw text files, if any
            "teachers": training.get("teachers"),  # the models it was distilled from (train --teacher), if any
            "ensemble_members": self.meta.get(ensemble.MEMBERS) if self.is_ensemble else None,
            "context": self.config.context,
            "context_from": training.get("context"),  # --context's LAC or --embeddings lm:DIR's LM, as given
            "unseen_remedies": self.config.unseen_remedies,  # on | off as training decided (auto: not recorded)
            "temperature": self.config.temperature,  # the scores' calibration (tagger calibrate), 1: none
            "best_dev_f1": best_f1,
            "best_epoch": self.meta.get("epoch"),
            "training_corpus": training.get("train"),
            "dev_corpus": training.get("dev"),
            "date": training.get("date"),
        }


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


def read_saved(path: str | os.PathLike, config: Config, vocab_json: dict, tensors: dict[str, np.ndarray], meta: dict
               ) -> tuple[Vocab, dict[str, np.ndarray]]:
    """The vocabulary (with the lexicon the directory keeps) and the tensors under today's names, checked
    against config.json and vocab.json, from what store.load_model read in `path`: the one reading path of a
    model directory or a checkpoint, for Tagger.load and training's Trainable.from_saved alike. A malformed
    vocabulary or weights that do not fit it are a ModelError naming the file."""
    lexicon = _lexicon(path, config, meta)
    try:
        vocab = Vocab.from_json(vocab_json, lexicon)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"malformed vocabulary ({e})", path=str(Path(path) / "vocab.json")) from None
    sizes = spec.sizes_of(vocab)
    if meta.get("format_version", 1) == 1:
        tensors = store.from_format_1(tensors, config, sizes, Path(path))
    problems = spec.check(tensors, config, sizes)
    if problems:
        raise ModelError(f"weights do not match config.json and vocab.json ({'; '.join(problems[:3])})",
                         path=str(Path(path) / "model.safetensors"))
    return vocab, tensors


def _lexicon(path: str | os.PathLike, config: Config, meta: dict) -> Lexicon | None:
    """The lexicon a model directory keeps, which a model with lexicon features needs: its trie as saved
    (lexicon.safetensors), or built from lexicon.txt for a model saved before the trie was kept. Both files
    are checked against their checksums."""
    text = store.load_lexicon(path, meta)
    if text is None:
        if config.lexicon:
            raise ModelError(f"model directory lacks {store.LEXICON} (config.json has lexicon = true)", path=str(path))
        return None
    trie = store.load_lexicon_trie(path, meta)
    if trie is not None:
        try:
            return Lexicon.from_arrays(trie)
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelError(str(e), path=str(Path(path) / store.LEXICON_TRIE)) from None
    try:
        return parse_saved(text, str(Path(path) / store.LEXICON))
    except InputError as e:
        raise ModelError(e.message, path=e.path, line=e.line) from None


def _labelled(sentences: object) -> list[Sentence]:
    """`sentences` as a list of labelled Sentences, or a TaggerError saying what Tagger.evaluate takes."""
    takes = ("evaluate takes labelled sentences (corpora.conll.Sentence with tags, as read_conll reads a CoNLL "
             "file) or a CoNLL file's path")
    if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Iterable):
        raise TaggerError(f"{takes}, not {type(sentences).__name__}")
    sentences = list(sentences)  # type: ignore[call-overload]
    if not sentences:
        raise TaggerError(f"no sentences to score: {takes}")
    for i, s in enumerate(sentences):
        if not isinstance(s, Sentence) or s.tags is None:
            what = "an unlabelled Sentence" if isinstance(s, Sentence) else f"{type(s).__name__} {str(s)[:40]}"
            raise TaggerError(f"{takes}; item {i} is {what} (predict_tokens tags token lists)")
    return sentences
