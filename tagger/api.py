"""`Tagger`: load a model directory, tag raw text or tokens, score a corpus. The CLI only calls this."""
from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from corpora import schemes
from corpora.conll import Sentence
from tagger import store
from tagger.config import Config
from tagger.encode import Encoded, Encoder, iter_batches
from tagger.errors import ModelError, TaggerError
from tagger.evaluate import score
from tagger.lite import LiteNetwork, state_shapes
from tagger.text import Tokens, sentence_ends
from tagger.vocab import Vocab

if TYPE_CHECKING:
    from tagger.model import BiLSTMCRF

ENGINES = ("torch", "numpy")


def model_scheme(config: Config, source_scheme: str | None) -> str | None:
    """The scheme the network's tags are in: the corpus's, or the one the config converts to."""
    if source_scheme is None:
        return None
    return source_scheme if config.tag_scheme == "auto" else schemes.normalize_scheme(config.tag_scheme)


def allowed_for(tags: Sequence[str], scheme: str | None) -> tuple[list[bool], list[list[bool]], list[bool]]:
    """The transitions a scheme allows between these tags (everything when tags have no scheme)."""
    if scheme is None:
        n = len(tags)
        return [True] * n, [[True] * n for _ in range(n)], [True] * n
    return schemes.allowed_transitions(tags, scheme)


def network_sizes(vocab: Vocab) -> tuple[int, int, int, int, list[int]]:
    """Words, frozen pretrained words, characters, tags and each feature column's values: what sizes the network."""
    return len(vocab.words), len(vocab.frozen), len(vocab.chars), len(vocab.tags), [len(f) for f in vocab.features]


class Tagger:
    """A trained BiLSTM-CRF with its vocabulary and config.

    >>> t = Tagger.load("model_dir")
    >>> t.predict("Angela Merkel visited Paris.")
    [{'start': 0, 'end': 13, 'label': 'PER', 'text': 'Angela Merkel'}, ...]

    `model` is the torch network (trainable), or with `load(..., engine="numpy")` the same network's tagging
    pass in numpy (tagger.lite), which tags identically without importing torch.
    """

    def __init__(self, config: Config, vocab: Vocab, model: "BiLSTMCRF | LiteNetwork"):
        self.config, self.vocab, self.model = config, vocab, model
        self.scheme = model_scheme(config, vocab.source_scheme)
        self.encode = Encoder(vocab)
        self.batch_size = 256
        self.meta: dict = {}  # config.json's other entries when loaded: best epoch, dev F1, training data

    # -- building, saving, loading -------------------------------------------------------------------

    @classmethod
    def build(cls, config: Config, vocab: Vocab) -> "Tagger":
        """A fresh, untrained network sized for this vocabulary."""
        from tagger.model import BiLSTMCRF

        allowed = allowed_for(vocab.tags.items, model_scheme(config, vocab.source_scheme))
        model = BiLSTMCRF(config, *network_sizes(vocab), allowed)
        return cls(config, vocab, model)

    @classmethod
    def load(cls, path: str | os.PathLike, engine: str = "torch") -> "Tagger":
        """Read config.json, vocab.json and model.safetensors; never unpickles anything.

        engine: "torch" (the network itself: trainable, quantisable) or "numpy" (tagging only, the same tags,
        and no torch import: a cold start in a fraction of the time; what `tagger predict` uses)."""
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        config, vocab_json, state, meta = store.load_model(path, arrays=engine)
        try:
            vocab = Vocab.from_json(vocab_json)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed vocabulary ({e})", path=str(Path(path) / "vocab.json")) from None
        expected = state_shapes(config, *network_sizes(vocab))
        problems = sorted(set(expected) ^ set(state)) or [
            f"{k}: {tuple(state[k].shape)} instead of {shape}"
            for k, shape in expected.items() if tuple(state[k].shape) != shape]
        if problems:
            raise ModelError(f"weights do not match config.json and vocab.json ({'; '.join(problems[:3])})",
                             path=str(Path(path) / "model.safetensors"))
        if engine == "numpy":
            tagger = cls(config, vocab, LiteNetwork(config, state))
        else:
            tagger = cls.build(config, vocab)
            tagger.model.load_state_dict(state)
            tagger.model.eval()
        tagger.meta = {k: v for k, v in meta.items() if k not in ("config", "sha256")}
        return tagger

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        store.save_model(path, self.config, self.vocab.to_json(), self.model.state_dict(), extra)

    def quantize(self) -> None:
        """Dynamic int8 quantisation of the BiLSTM and the emission layer, for faster CPU tagging."""
        import warnings

        import torch
        from torch.ao.quantization import quantize_dynamic

        if isinstance(self.model, LiteNetwork):
            raise ModelError("quantisation needs the torch engine (Tagger.load(path, engine=\"torch\"))")
        self.model.eval()
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated but still the CPU int8 path
            warnings.simplefilter("ignore")
            self.model.lstm = quantize_dynamic(torch.nn.Sequential(self.model.lstm), {torch.nn.LSTM},
                                               dtype=torch.qint8)[0]
            self.model.emit = quantize_dynamic(torch.nn.Sequential(self.model.emit), {torch.nn.Linear},
                                               dtype=torch.qint8)[0]

    # -- tagging ----------------------------------------------------------------------------------------

    def tag_ids(self, sentences: Sequence[Sequence[str]], features: Sequence[Sequence[Sequence[str]]] = ()
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
        for ids, batch in iter_batches(encoded, self.batch_size, mixed=True):
            for i, path in zip(ids, self.model.tag(batch)):
                out[i] = list(map(names.__getitem__, path))
        return out

    def predict_tokens(self, sentences: Sequence[Sequence[str]],
                       features: Sequence[Sequence[Sequence[str]]] = ()) -> list[list[str]]:
        """Tags of pre-tokenised sentences, in the scheme of the corpus the model was trained on."""
        if sentences is None or isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
            got = "a flat list of tokens" if isinstance(sentences, (list, tuple)) else type(sentences).__name__
            raise TaggerError("predict_tokens takes a list of sentences, each a list of tokens, e.g. "
                              f"[[\"EU\", \"rejects\"]], not {got}")
        tags = self.tag_ids(sentences, features)
        source = self.vocab.source_scheme
        if self.scheme is None or source is None or source == self.scheme:
            return tags
        return [schemes.convert(t, self.scheme, source) for t in tags]

    def predict(self, text: str) -> list[dict]:
        """Entity spans of raw text; `text[start:end] == entity["text"]` for every one."""
        if not isinstance(text, str):
            raise TaggerError(f"predict takes a string of raw text, not {type(text).__name__} (for "
                              "pre-tokenised sentences use predict_tokens)")
        return next(iter(self.predict_texts([text])))

    def predict_texts(self, texts: Iterable[str]) -> Iterator[list[dict]]:
        """Entity spans of each text (e.g. each input line), tagged in batches across texts."""
        if self.vocab.features:
            raise ModelError("this model needs feature columns "
                             f"({', '.join(map(str, self.config.features))}), which raw text does not have: "
                             "give CoNLL input (--input-format conll)")
        texts = list(texts)
        scanned = [self._sentences(t) for t in texts]  # per text: its tokens and where its sentences end
        tags = iter(self.tag_ids([tokens.texts[a:b] for tokens, ends in scanned for a, b in pairwise([0, *ends])]))
        for text, (tokens, ends) in zip(texts, scanned):
            entities = []
            for a, b in pairwise([0, *ends]):
                entities += self._spans(text, tokens, a, next(tags))
            yield entities

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
        feats = [feature_columns(s, self.config.features) for s in sentences] if self.config.features else ()
        pred = self.tag_ids([s.tokens for s in sentences], feats)
        if self.scheme is None:
            return score([list(s.tags) for s in sentences], pred, None)
        source = scheme or schemes.detect_scheme(s.tags for s in sentences) or self.scheme
        gold = [schemes.convert(s.tags, source, self.scheme) for s in sentences]
        return score(gold, pred, self.scheme)


    # -- what the model is ------------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Every tag the model answers with, in the training corpus's scheme ("O", "B-LOC", "I-LOC", ...)."""
        source = self.vocab.source_scheme
        if self.scheme is None or source is None:
            return sorted(self.vocab.tags.items)
        types = sorted({schemes.split_tag(t)[1] for t in self.vocab.tags.items if t != "O"})
        return ["O", *(tag for label in types for tag in _scheme_tags(label, source))]

    def info(self) -> dict:
        """What a user asks of a model: its labels and scheme, tokeniser, vocabulary sizes, embeddings, best
        dev F1 and epoch, training corpus and date (the last ones as recorded when it was saved, else None)."""
        training = self.meta.get("training", {})
        best_f1 = self.meta.get("dev_f1")
        return {
            "labels": self.labels,
            "entity_types": sorted({schemes.split_tag(t)[1] for t in self.labels if t != "O"} if self.scheme else ()),
            "scheme": self.vocab.source_scheme,
            "model_scheme": self.scheme,
            "tokenizer": self.config.tokenizer,
            "vocabulary": {"words": len(self.vocab.words), "pretrained_only_words": len(self.vocab.frozen),
                           "characters": len(self.vocab.chars), "tags": len(self.vocab.tags),
                           "features": [len(f) for f in self.vocab.features]},
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


def feature_columns(sentence: Sentence, columns: Sequence[int]) -> list[list[str]]:
    """The values of the given columns, one list per column (F lists of T values)."""
    return [[row[c] for row in sentence.rows] for c in columns]
