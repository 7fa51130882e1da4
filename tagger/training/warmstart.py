"""Warm start (`tagger train ... --init MODEL`): a new training that starts from a trained model's weights,
vocabulary and network shape instead of random ones: the next round of an active-learning loop.

- The network's shape (dimensions, encoders, tagging scheme, tokenizer) is the model's. Training settings
  (epochs, lr, batch size, seed, dropout, patience...) are the model's too unless the user sets them (options
  or --config); setting a shape setting to another value than the model's is a ConfigError. The temperature
  goes back to 1: the new weights need `tagger calibrate` again.
- New words keep the model's vocabulary: a training word the model never saw is read as it would be when
  tagging, through its pretrained vector when the model has one (the frozen GloVe rows), else as <unk>,
  with its characters still read by the character encoder. The vocabulary, and so every saved model of a
  loop, keeps its size; the message says how many training word types that concerns.
- A tag the model does not have is an InputError naming it, unless `extend_tags`: then the new tags are
  appended with fresh output rows and CRF scores (the old tags keep theirs, and the scheme's forbidden moves
  are those of the extended tag set).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpora import schemes
from corpora.conll import Sentence
from tagger.config import Config
from tagger.errors import ConfigError, InputError
from tagger.tagging.tagger import Tagger
from tagger.training.model import Trainable
from tagger.training.state import Reporter
from tagger.vocab import Index

# what a user may change when starting from a model; every other setting is the network's shape
TRAINING = frozenset({"epochs", "batch_size", "optimizer", "lr", "momentum", "lr_decay", "weight_decay", "clip",
                      "average", "patience", "max_minutes", "seed", "threads", "dropout", "word_dropout",
                      "char_dropout"})
NOT_WARM = ("pretrained_swap", "unseen_drift", "unseen_remedies")  # need the pretrained vectors a training starts with


@dataclass(frozen=True)
class WarmStart:
    """Where a warm start comes from: a model directory, and whether new tags may extend its tag set."""

    model: Path
    extend_tags: bool = False
    given: frozenset[str] = frozenset()  # the settings the user set (options, --config): they override the model's


def build(start: WarmStart, config: Config, train: Sequence[Sentence], source_scheme: str | None,
          reporter: Reporter) -> Trainable:
    """The model at `start.model` as a trainable network, ready for a new training on `train` (whose tags
    are in `source_scheme`), with `config`'s values for the settings the user gave (`start.given`)."""
    init = Tagger.load(start.model)
    config = _config(init.config, config, start.given, start.model)
    if source_scheme != init.vocab.source_scheme:
        theirs, mine = init.vocab.source_scheme or "plain tags", source_scheme or "plain tags"
        raise InputError(f"the training data's tags are {mine}, the model was trained on {theirs}: --init needs "
                         f"them alike{f' (tagger convert --to {theirs})' if init.vocab.source_scheme else ''}",
                         path=str(start.model))
    vocab = dataclasses.replace(init.vocab)  # a copy: the tags may grow
    new = _new_tags(train, source_scheme, init)
    if new and not start.extend_tags:
        raise InputError(f"tag {new[0]} is not one of the model's tags ({', '.join(init.vocab.tags.items)})"
                         f"{f' (nor are {len(new) - 1} more)' if len(new) > 1 else ''}: use --extend-tags to add "
                         "new tags to the model", path=str(start.model))
    if new:
        vocab.tags = Index([*init.vocab.tags.items, *new], specials=False)
        reporter.message(f"--extend-tags: {', '.join(new)} added to the model's {len(init.vocab.tags)} tags")
    trainable = Trainable.build(config, vocab)
    trainable.model.load_tensors(_grown(init.tensors, trainable.model.tensors()))
    types = {t for s in train for t in s.tokens}
    new = [w for w in types if not _trained(vocab, w)]
    unknown = sum(1 for w in new if vocab.word_id(w) == 1)
    reporter.message(f"warm start from {start.model}: {len(new):,} of {len(types):,} training word types are new "
                     f"to its vocabulary, read as when tagging: {len(new) - unknown:,} through their pretrained "
                     f"vectors, {unknown:,} as <unk> (and their characters)")
    return trainable


def _config(model: Config, asked: Config, given: Collection[str], path: Path) -> Config:
    """The model's config with the given training settings; ConfigError for a given shape setting that
    differs from the model's."""
    changes = {}
    for name in sorted(given):
        mine, theirs = getattr(asked, name, None), getattr(model, name, None)
        if name in TRAINING:
            changes[name] = mine
        elif name in NOT_WARM:
            if mine and mine not in ("auto", "off"):  # the remedies stay off, recorded "off"
                raise ConfigError(f"{name} needs the pretrained vectors a training starts with, which --init does "
                                  "not read")
        elif mine != theirs and name != "version":
            raise ConfigError(f"--init {path}: {name} is the model's ({theirs!r}), not {mine!r}: the network's shape "
                              "comes from the model (leave it out, or train without --init)")
    return dataclasses.replace(model, **changes, temperature=1.0, unseen_remedies="off", pretrained_swap=0.0,
                               unseen_drift=0.0)


def _new_tags(train: Sequence[Sentence], source_scheme: str | None, init: Tagger) -> list[str]:
    """The training tags (in the model's scheme) the model does not have, in order of first appearance."""
    known, new = set(init.vocab.tags.items), {}
    for s in train:
        tags = s.tags if init.scheme is None or source_scheme is None else \
            schemes.convert(list(s.tags), source_scheme, init.scheme)
        for tag in tags:
            if tag not in known:
                new.setdefault(tag, None)
    return list(new)


def _grown(old: dict[str, np.ndarray], fresh: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The old tensors in the fresh network's shapes: equal shapes copied; a tensor that grew (new tags
    appended) keeps the old values in its leading block and the fresh ones elsewhere."""
    out = {}
    for name, value in fresh.items():
        value = np.array(value, dtype=np.float32)
        before = old.get(name)
        if before is None:
            out[name] = value
        elif before.shape == value.shape:
            out[name] = np.asarray(before, dtype=np.float32)
        else:
            value[tuple(slice(0, n) for n in before.shape)] = before
            out[name] = value
    return out | {name: value for name, value in old.items() if name not in fresh}  # e.g. a context encoder's


def _trained(vocab, word: str) -> bool:
    """Whether the word has a trained (fine-tuned) row: its form, or its lower case when the lookup lowers."""
    return word in vocab.words.ids or (vocab.lowercase and word.lower() in vocab.words.ids)
