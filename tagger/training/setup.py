"""What a new training starts from: the vocabularies, a fresh network with the pretrained vectors copied in,
the corpora encoded once, the optimizer and the weight average.

The optional inputs (word vectors, a lexicon, bigram vectors, LAC's context encoder) travel together in one
`Inputs`, read by tagger/commands/fitting.py; a resumed training never needs them, its checkpoint has its own.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from corpora import schemes
from corpora.conll import Sentence
from tagger.config import Config, model_scheme
from tagger.data import choose_tokenizer, feature_columns
from tagger.encode import Encoded, iter_batches
from tagger.errors import ConfigError
from tagger.lexicon import Lexicon
from tagger.tagging.charlm import ContextEncoder, context_network
from tagger.training import unseen
from tagger.training.model import Trainable
from tagger.training.state import Reporter, Silent
from tagger.training.warmstart import WarmStart, build as warm_started
from tagger.vocab import Index, Vocab, build_vocab

Vectors = tuple[list[str], np.ndarray]  # (words, (len(words), dim) matrix)


@dataclass(frozen=True)
class Inputs:
    """The optional inputs a new training starts from, each None when not given: word vectors
    (tagger/embeddings.py, or LAC's characters), a lexicon (tagger/lexicon.py), character-bigram vectors,
    and a frozen context encoder's characters and tensors: LAC's (tagger/lac.py) or a character LM's
    (context_kind "lm", tagger/training/lm.py)."""

    vectors: Vectors | None = None
    lexicon: Lexicon | None = None
    bigram_vectors: Vectors | None = None
    context: tuple[list[str], dict[str, np.ndarray]] | None = None
    context_kind: str = "lac"
    init: WarmStart | None = None  # --init MODEL: start from its network and vocabulary (tagger/training/warmstart.py)


@dataclass
class Data:
    """Both corpora encoded (ids, characters, features) once, so that epochs only batch tensors."""

    train: list[Encoded]
    dev: list[Encoded]
    dev_gold: list[list[str]]
    scheme: str | None


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def build_trainable(config: Config, train: Sequence[Sentence], source_scheme: str | None, *,
                    inputs: Inputs | None = None, reporter: Reporter | None = None, neighbours: bool = True,
                    dev: Sequence[Sequence[str]] = ()) -> tuple[Trainable, unseen.Pretrained | None]:
    """Vocabulary from the training corpus (+ pretrained words), a fresh network, pretrained rows copied in;
    and, for pretrained_swap or unseen_drift, what training keeps of the pretrained vectors
    (tagger/training/unseen.py). neighbours=False skips the unseen words' neighbour search (only rank 0
    scores and saves). The config's `auto` settings are decided here and saved with the model: the
    tokenizer, then the encoders that suit it (Config.resolved); a lexicon turns lexicon features on,
    bigram vectors turn bigrams on, a context encoder sets context = "lac"; the dev set's tokens (`dev`, one
    sequence a sentence) decide unseen_remedies = "auto" (_remedies)."""
    reporter, inputs = reporter or Silent(), inputs or Inputs()
    if inputs.init is not None:  # the model's own vocabulary and (frozen) pretrained vectors come with it
        return warm_started(inputs.init, config, train, source_scheme, reporter), None
    config = _decided(config, train, inputs, reporter, dev)
    scheme = model_scheme(config, source_scheme)
    vectors = inputs.vectors
    vocab = build_vocab((s.tokens for s in train), (convert_tags(s.tags, source_scheme, scheme) for s in train),
                        [[feature_columns(s, [c])[0] for s in train] for c in config.features],
                        pretrained=vectors[0] if vectors else (), min_count=config.min_word_count,
                        lowercase=config.lowercase_lookup, source_scheme=source_scheme,
                        with_bigrams=config.bigrams == "on", lexicon=inputs.lexicon)
    if inputs.context is not None:
        vocab.context, vocab.context_kind = Index(inputs.context[0], specials=False), inputs.context_kind
    set_seed(config.seed)
    trainable = Trainable.build(config, vocab)
    if inputs.context is not None:
        trainable.model.context = dict(inputs.context[1])
    if inputs.bigram_vectors is not None:
        _copy_bigram_vectors(trainable, inputs.bigram_vectors, reporter)
    if vectors is None:
        return trainable, None
    _copy_vectors(trainable, vectors, reporter, train)
    return trainable, pretrained_state(trainable, vectors, reporter, neighbours)


def pretrained_state(trainable: Trainable, vectors: Vectors, reporter: Reporter, neighbours: bool = True
                     ) -> unseen.Pretrained | None:
    """What training keeps of the pretrained vectors for pretrained_swap and unseen_drift (None when neither
    is on): the trained rows' starting vectors and, for the drift, each frozen word's nearest trained words.
    Computed from the vectors alone, so a resume computes it again rather than storing it."""
    config, vocab = trainable.config, trainable.vocab
    if not (config.pretrained_swap or config.unseen_drift):
        return None
    rows, at = pretrained_rows(vocab, vectors[0])
    pretrained = unseen.Pretrained(torch.tensor(rows, dtype=torch.long), torch.from_numpy(vectors[1][at]).float())
    if neighbours and config.unseen_drift and rows and len(vocab.frozen):
        start = time.perf_counter()
        pretrained = pretrained.with_neighbours(trainable.model.frozen, config.unseen_neighbours)
        reporter.message(f"nearest trained words of {len(vocab.frozen):,} unseen pretrained words found in "
                         f"{time.perf_counter() - start:.1f}s")
    return pretrained


def pretrained_rows(vocab: Vocab, words: Sequence[str]) -> tuple[list[int], list[int]]:
    """(the word embedding's rows that have a pretrained vector, the rows of those vectors in `words`)."""
    row = {w: i for i, w in enumerate(words)}
    items = vocab.words.items
    rows = [i for i, key in enumerate(items[2:], start=2) if key in row]
    return rows, [row[items[i]] for i in rows]


def frozen_rows(vectors: Vectors, trained: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The pretrained-only words (no `trained` word is keyed as them) in build_vocab's order, and their
    vectors rounded to float16 as the model keeps them."""
    words, matrix = vectors
    row = {w: i for i, w in enumerate(words)}
    frozen = sorted(set(words) - set(trained))
    return frozen, matrix[[row[w] for w in frozen]].astype(np.float16)


def _decided(config: Config, train: Sequence[Sentence], inputs: Inputs, reporter: Reporter,
             dev: Sequence[Sequence[str]] = ()) -> Config:
    """The config with its `auto` settings decided: the vectors' dimension, the tokenizer, the unseen-word
    remedies, then the encoders."""
    if inputs.vectors is not None:
        config = dataclasses.replace(config, word_dim=inputs.vectors[1].shape[1])
    if config.tokenizer == "auto":
        config = dataclasses.replace(config, tokenizer=choose_tokenizer(train))
        reporter.message(f"raw text will be split into {config.tokenizer} (tokenizer = \"{config.tokenizer}\")")
    config = _remedies(config, train, dev, inputs.vectors, reporter)
    return _with_inputs(config, inputs, reporter)


def _remedies(config: Config, train: Sequence[Sentence], dev: Sequence[Sequence[str]], vectors: Vectors | None,
              reporter: Reporter) -> Config:
    """The config with unseen_remedies decided, "on" or "off", and both remedies' strengths 0 when off: the
    saved config records what training did, so that a resume (which never decides again) and `tagger info`
    see it. "auto" is on when enough dev tokens are read only through pretrained vectors (unseen.decide);
    without vectors there is nothing to remedy."""
    on = config.unseen_remedies == "on" and vectors is not None
    if config.unseen_remedies == "auto" and vectors is not None:
        share = unseen.unseen_share((w for s in train for w in s.tokens), (w for s in dev for w in s),
                                    vectors[0], config.lowercase_lookup) if dev else None
        on, why = unseen.decide(share)
        reporter.message(f"unseen-word remedies {'on' if on else 'off'}: {why}")
    off = {} if on else {"pretrained_swap": 0.0, "unseen_drift": 0.0}
    return dataclasses.replace(config, unseen_remedies="on" if on else "off", **off)


def _with_inputs(config: Config, inputs: Inputs, reporter: Reporter) -> Config:
    """The config with its encoders decided (after the tokenizer) and said when `auto` chose them."""
    lexicon, bigram_vectors, context = inputs.lexicon, inputs.bigram_vectors, inputs.context is not None
    if config.lexicon and lexicon is None:
        raise ConfigError("lexicon = true needs a lexicon: train with --lexicon FILE (or --lexicon jieba)")
    if config.context != "none" and not context:
        how = "--embeddings lm:DIR (a `tagger lm` model)" if config.context == "lm" else "--context jieba"
        raise ConfigError(f'context = "{config.context}" needs its encoder: train with {how}')
    if bigram_vectors is not None:
        if config.bigrams == "off":
            raise ConfigError("bigram vectors were given but the config has bigrams = \"off\"")
        config = dataclasses.replace(config, bigrams="on", bigram_dim=bigram_vectors[1].shape[1])
    resolved = dataclasses.replace(config.resolved(), lexicon=lexicon is not None,
                                   context=inputs.context_kind if context else "none")
    if resolved.context == "lm":  # the LM's sizes, which tagger/tensors.py reads from the config
        hidden, char_dim = inputs.context[1]["context.0.forward.weight_hh"].shape[1], inputs.context[1][
            "context.embedding"].shape[1]
        resolved = dataclasses.replace(resolved, lm_hidden=hidden, lm_char_dim=char_dim)
    if resolved.tokenizer == "chars" and (config.char_encoder == "auto" or config.bigrams == "auto"):
        reporter.message(f"{resolved.tokenizer} defaults: char_encoder = \"{resolved.char_encoder}\", bigrams = "
                         f"\"{resolved.bigrams}\"{f', lexicon of {len(lexicon):,} words' if lexicon else ''}")
    return resolved


def convert_tags(tags: Sequence[str], source: str | None, target: str | None) -> list[str]:
    """Tags from the corpus's scheme into the model's (unchanged for plain tags)."""
    return list(tags) if source is None or target is None else schemes.convert(tags, source, target)


def _copy_bigram_vectors(trainable: Trainable, vectors: Vectors, reporter: Reporter) -> None:
    """Pretrained bigram vectors into the rows of the training bigrams they have (the others stay random)."""
    words, matrix = vectors
    row = {w: i for i, w in enumerate(words)}
    items = trainable.vocab.bigrams.items
    rows = [i for i, key in enumerate(items[2:], start=2) if key in row]
    with torch.no_grad():
        trainable.model.bigrams.weight[rows] = torch.from_numpy(matrix[[row[items[i]] for i in rows]])
    reporter.message(f"bigram vectors: {len(words):,} x {matrix.shape[1]}; they cover {len(rows):,} of "
                     f"{len(items) - 2:,} training bigrams ({100 * len(rows) / max(len(items) - 2, 1):.1f}%)")


def _copy_vectors(trainable: Trainable, vectors: Vectors, reporter: Reporter, train: Sequence[Sentence]) -> None:
    """Pretrained vectors into the trainable rows and the frozen buffer."""
    words, matrix = vectors
    row = {w: i for i, w in enumerate(words)}
    model, vocab = trainable.model, trainable.vocab
    rows, at = pretrained_rows(vocab, words)
    with torch.no_grad():
        model.word.weight[rows] = torch.from_numpy(matrix[at])
        # rounded to float16, as the model saves them (tagger/tensors.py): training sees what tagging will
        model.frozen.copy_(torch.from_numpy(matrix[[row[w] for w in vocab.frozen.items]]).half())
    types = {w for s in train for w in s.tokens}
    covered = sum(1 for w in types if w in row or (vocab.lowercase and w.lower() in row))
    reporter.message(f"pretrained vectors: {len(words):,} x {matrix.shape[1]}; they cover {covered:,} of "
                     f"{len(types):,} training word types ({100 * covered / max(len(types), 1):.1f}%)")


def prepare_data(trainable: Trainable, train: Sequence[Sentence], dev: Sequence[Sentence],
                 dev_scheme: str | None) -> Data:
    """Encode both corpora once (ids, characters, features), so epochs only batch tensors."""
    cfg, vocab, scheme = trainable.config, trainable.vocab, trainable.scheme
    src = vocab.source_scheme

    def enc(s: Sentence, tags) -> Encoded:
        return trainable.encode(s.tokens, tags, feature_columns(s, cfg.features) if cfg.features else ())

    train_enc = [enc(s, convert_tags(s.tags, src, scheme)) for s in train if s.tokens]
    dev = [s for s in dev if s.tokens]
    dev_enc = [enc(s, None) for s in dev]
    if cfg.context != "none":  # dev's too: it is scored every epoch
        context = context_network(cfg.context, trainable.model.context)
        add_context_features(train_enc, context)
        add_context_features(dev_enc, context)
    dev_gold = [convert_tags(s.tags, dev_scheme or src, scheme) for s in dev]
    return Data(train_enc, dev_enc, dev_gold, scheme)


def add_context_features(encoded: Sequence[Encoded], context: ContextEncoder, batch_size: int = 256) -> None:
    """Each sentence's context features, computed once in batches of neighbouring lengths: the encoder is
    frozen, so every epoch would compute the same numbers (tagging computes them per batch instead)."""
    for ids, batch in iter_batches(encoded, batch_size, mixed=True):
        features = context.batch_features(batch)  # (B, T, context size)
        for row, i in enumerate(ids):
            encoded[i].context_features = features[row, : len(encoded[i])]


def make_optimizer(config: Config, model: torch.nn.Module, *more: torch.nn.Module | None) -> torch.optim.Optimizer:
    """The config's optimizer over the trainable parameters (the frozen vectors are a buffer) of the model and
    of the training-only modules in `more` (cross-view training's), after the model's so that a checkpoint's
    optimizer state lines up."""
    params = [p for m in (model, *more) if m is not None for p in m.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "nadam":  # Adam with Nesterov momentum (Dozat 2016; Reimers & Gurevych 2017)
        return torch.optim.NAdam(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           foreach=True)


class WeightAverage:
    """An exponential moving average of the trainable weights (Polyak averaging), the model that is scored
    and saved: it smooths SGD's noise late in training. Its decay warms up as min(decay, (1+n)/(10+n))."""

    def __init__(self, model: torch.nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None):
        self.decay = decay
        self.params = dict(p for p in model.named_parameters() if p[1].requires_grad)
        self.average = state or {k: p.detach().clone() for k, p in self.params.items()}

    @torch.no_grad()
    def update(self, updates: int) -> None:
        decay = min(self.decay, (1 + updates) / (10 + updates))
        keys = list(self.params)
        torch._foreach_lerp_([self.average[k] for k in keys], [self.params[k] for k in keys], 1 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside this block, its own weights again after it."""
        own = {k: p.detach().clone() for k, p in self.params.items()}
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(self.average[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(own[k])
