"""`Tagger`: load a model directory, tag raw text or tokens, score a corpus. The CLI only calls this."""
from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from corpora import schemes
from corpora.conll import Sentence
from tagger import store
from tagger.config import Config
from tagger.encode import Encoded, Encoder, iter_batches
from tagger.errors import ModelError
from tagger.evaluate import score
from tagger.model import BiLSTMCRF
from tagger.text import Tokens, sentence_ends
from tagger.vocab import Vocab


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


class Tagger:
    """A trained BiLSTM-CRF with its vocabulary and config.

    >>> t = Tagger.load("model_dir")
    >>> t.predict("Angela Merkel visited Paris.")
    [{'start': 0, 'end': 13, 'label': 'PER', 'text': 'Angela Merkel'}, ...]
    """

    def __init__(self, config: Config, vocab: Vocab, model: BiLSTMCRF):
        self.config, self.vocab, self.model = config, vocab, model
        self.scheme = model_scheme(config, vocab.source_scheme)
        self.encode = Encoder(vocab)
        self.batch_size = 256

    # -- building, saving, loading -------------------------------------------------------------------

    @classmethod
    def build(cls, config: Config, vocab: Vocab) -> "Tagger":
        """A fresh, untrained network sized for this vocabulary."""
        model = BiLSTMCRF(config, len(vocab.words), len(vocab.frozen), len(vocab.chars), len(vocab.tags),
                          [len(f) for f in vocab.features],
                          allowed_for(vocab.tags.items, model_scheme(config, vocab.source_scheme)))
        return cls(config, vocab, model)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tagger":
        """Read config.json, vocab.json and model.safetensors; never unpickles anything."""
        config, vocab_json, state, _ = store.load_model(path)
        try:
            vocab = Vocab.from_json(vocab_json)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed vocabulary ({e})", path=str(Path(path) / "vocab.json")) from None
        tagger = cls.build(config, vocab)
        expected = tagger.model.state_dict()
        problems = sorted(set(expected) ^ set(state)) or [
            f"{k}: {tuple(state[k].shape)} instead of {tuple(v.shape)}"
            for k, v in expected.items() if state[k].shape != v.shape]
        if problems:
            raise ModelError(f"weights do not match config.json and vocab.json ({'; '.join(problems[:3])})",
                             path=str(Path(path) / "model.safetensors"))
        tagger.model.load_state_dict(state)
        tagger.model.eval()
        return tagger

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        store.save_model(path, self.config, self.vocab.to_json(), self.model.state_dict(), extra)

    def quantize(self) -> None:
        """Dynamic int8 quantisation of the BiLSTM and the emission layer, for faster CPU tagging."""
        import warnings

        from torch.ao.quantization import quantize_dynamic

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
        self.model.eval()
        with torch.inference_mode():
            for ids, batch in iter_batches(encoded, self.batch_size, mixed=True):
                for i, path in zip(ids, self.model.decode(batch)):
                    out[i] = list(map(names.__getitem__, path))
        return out

    def predict_tokens(self, sentences: Sequence[Sequence[str]],
                       features: Sequence[Sequence[Sequence[str]]] = ()) -> list[list[str]]:
        """Tags of pre-tokenised sentences, in the scheme of the corpus the model was trained on."""
        tags = self.tag_ids(sentences, features)
        source = self.vocab.source_scheme
        if self.scheme is None or source is None or source == self.scheme:
            return tags
        return [schemes.convert(t, self.scheme, source) for t in tags]

    def predict(self, text: str) -> list[dict]:
        """Entity spans of raw text; `text[start:end] == entity["text"]` for every one."""
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


def feature_columns(sentence: Sentence, columns: Sequence[int]) -> list[list[str]]:
    """The values of the given columns, one list per column (F lists of T values)."""
    return [[row[c] for row in sentence.rows] for c in columns]
