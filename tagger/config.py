"""Every hyperparameter in one dataclass: read from TOML, saved as JSON beside the weights."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagger.errors import ConfigError
from tagger.paths import check_input_file

# `--lexicon jieba`, `--embeddings jieba`, `--context jieba`: the dictionary or the LAC model that an installed
# jieba (pip install jieba) ships, rather than a file
JIEBA = "jieba"

CONFIG_VERSION = 1


@dataclass
class Config:
    """Every hyperparameter, saved with the model. The defaults are the best general settings measured on
    the English and Chinese samples (bench/defaults.py); corpus-specific choices stay in recipes (configs/)."""

    # data
    tag_scheme: str = "bioes"        # scheme the model is trained in: auto (the corpus's) | iob1 | iob2 | bioes | bilou | bmes
    tokenizer: str = "auto"          # how `predict` splits raw text: words | chars | auto (chars when the
                                     # training tokens are single characters, e.g. Chinese; else words)
    features: list[int] = field(default_factory=list)  # extra input columns, each embedded and concatenated
    lowercase_lookup: bool = True    # look words up in the pretrained vectors lower-cased when the exact form is missing
    min_word_count: int = 1          # training words seen fewer times map to <unk> (unless pretrained)
    unseen_remedies: str = "auto"    # on | off | auto: the two remedies below for pretrained words never seen in
                                     # training; auto: on when 3% or more of the dev tokens are such words (tagger/
                                     # training/unseen.py). Training saves what it decided, "on" or "off"
    pretrained_swap: float = 0.3     # probability of reading a training word from the pretrained vector its row
                                     # started from, as words never seen in training are read (tagger/training/unseen.py)
    unseen_drift: float = 3.0        # move each pretrained word never seen in training by this times the mean
                                     # fine-tuning drift of its nearest trained words (tagger/training/unseen.py; 0: off)
    unseen_neighbours: int = 10      # how many nearest trained words (cosine of the pretrained vectors)
    # network
    word_dim: int = 50               # ignored when pretrained vectors are given (their dimension wins)
    casing_dim: int = 10             # a small embedding of the word's shape (all caps, initial cap, digits, ...)
    char_dim: int = 30
    char_encoder: str = "auto"       # cnn | lstm | none | auto (none when the tokenizer is chars: a CNN over
                                     # one character has nothing to see; else cnn)
    char_filters: int = 50           # CNN filters, or hidden size per direction of the char BiLSTM
    char_kernel: int = 3
    feature_dim: int = 20
    bigrams: str = "auto"            # on | off | auto (on when the tokenizer is chars): an embedding of the
                                     # bigram starting at each token (the last one's ends in vocab.END)
    bigram_dim: int = 50             # ignored when pretrained bigram vectors are given (their dimension wins)
    lexicon: bool = False            # B/M/E/S lexicon features per token (tagger/lexicon.py); training sets it
                                     # when given a lexicon (`--lexicon FILE`), which the model directory keeps
    context: str = "none"            # none | lac | lm: a frozen pretrained encoder whose outputs per token the
                                     # BiLSTM reads; training sets it: lac with --context jieba (tagger/lac.py),
                                     # lm with --embeddings lm:DIR, a `tagger lm` character LM (tagger/tagging/charlm.py)
    lm_hidden: int = 0               # the character LM's units a direction (context = "lm": the LM's, set by training)
    lm_char_dim: int = 0             # ... and its character embedding size
    hidden_size: int = 100           # per direction (200 scored no better on CoNLL-2003 and tags 1.8x slower)
    num_layers: int = 1
    dropout: float = 0.5
    word_dropout: float = 0.05       # probability of replacing a training word by <unk>
    char_dropout: float = 0.0        # dropout on the character embeddings, before the char CNN/BiLSTM
    # training
    epochs: int = 150                # a cap that should not bind: dev decides when training ends (patience)
    batch_size: int = 64             # sentences per optimizer step (--processes N, sync = "step": over all of
                                     # them, each trains on a 1/N slice; "average": each takes its own batch)
    optimizer: str = "adam"          # sgd | adam | nadam (with sgd, set lr too: 0.015 suits it)
    lr: float = 0.002
    momentum: float = 0.9
    lr_decay: float = 0.05           # lr_t = lr / (1 + lr_decay * epoch)
    weight_decay: float = 0.0
    clip: float = 5.0
    average: float = 0.999           # decay of an exponential moving average of the weights, which is what
                                     # dev scores and the saved model use (0: off)
    patience: int = 10               # epochs without a better dev score before stopping: what ends training
    max_minutes: float = 0.0         # stop after this many minutes of training (0: no limit)
    seed: int = 1
    threads: int = 1                 # torch threads per training process (0: torch's default, one per core);
                                     # one, because threads stall each other next to any busy process (README)
    sync: str = "average"            # --processes N: average (each process takes sync_period steps on its slices,
                                     # then they average their weights: post-local SGD) | step (DDP: gradients
                                     # all-reduced every step); tagger/training/averaging.py, bench/README.md
    sync_period: int = 8             # steps between averagings (chosen on CoNLL-2003 dev, bench/README.md)
    sync_warmup: int = 0             # first steps trained as sync = "step" before averaging starts
    # learning from raw text (`tagger train --unlabeled FILE`: cross-view training, tagger/training/cvt.py)
    unlabeled_ratio: float = 1.0     # unlabelled batches (of batch_size sentences) after each labelled one
    unlabeled_weight: float = 0.1    # the cross-view loss's weight (it sums 4 views' KL over every token):
                                     # dev F1 on 1,000 CoNLL-2003 sentences chose 0.1 over 0.25 and 1 (bench/README.md)
    # distillation (`tagger train --teacher M`: the teachers' exact marginals, tagger/training/teachers.py)
    teacher_weight: float = 3.0      # the soft loss's weight: NLL + teacher_weight * sum over tokens of KL(teachers || student);
                                     # CoNLL-2003 dev chose 3 over 1 (94.69 against 94.38, bench/README.md)
    # tagging
    temperature: float = 1.0         # every probability tagging reports (--scores, --n-best, Tagger.marginals)
                                     # divides the CRF's scores by this first; `tagger calibrate` fits it on dev
    version: int = CONFIG_VERSION

    def validate(self) -> "Config":
        """Raise ConfigError for values that would fail later in a less clear way."""
        choices = {"optimizer": ("sgd", "adam", "nadam"), "char_encoder": ("auto", "cnn", "lstm", "none"),
                   "tokenizer": ("auto", "words", "chars"), "bigrams": ("auto", "on", "off"),
                   "context": ("none", "lac", "lm"), "sync": ("average", "step"), "unseen_remedies": ("auto", "on", "off"),
                   "tag_scheme": ("auto", "iob1", "iob2", "bioes", "iobes", "bilou", "bmes")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "hidden_size", "num_layers", "char_dim", "char_filters", "char_kernel",
                     "word_dim", "bigram_dim", "patience", "unseen_neighbours", "sync_period"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("casing_dim", "feature_dim", "unseen_drift", "momentum", "lr_decay", "weight_decay", "clip",
                     "max_minutes", "threads", "sync_warmup"):
            if not getattr(self, name) >= 0:  # `not >=` also catches nan
                raise ConfigError(f"{name} must be at least 0, not {getattr(self, name)}")
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in self.features):
            raise ConfigError(f"features must be a list of column indices, not {self.features!r}")
        for name in ("dropout", "word_dropout", "char_dropout", "pretrained_swap"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), not {getattr(self, name)}")
        if not 0.0 <= self.average < 1.0:
            raise ConfigError(f"average must be in [0, 1), not {self.average}")
        if not 0.0 < self.temperature < float("inf"):
            raise ConfigError(f"temperature must be a positive number, not {self.temperature}")
        for name in ("unlabeled_ratio", "unlabeled_weight", "teacher_weight"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, not {self.lr}")
        return self

    def resolved(self) -> "Config":
        """The config with its `auto` encoder settings decided by the tokenizer: for characters (Chinese) no
        character CNN and bigrams on; for words (or a tokenizer still `auto`) the CNN and no bigrams."""
        chars = self.tokenizer == "chars"
        return dataclasses.replace(
            self, char_encoder=("none" if chars else "cnn") if self.char_encoder == "auto" else self.char_encoder,
            bigrams=("on" if chars else "off") if self.bigrams == "auto" else self.bigrams)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "Config":
        """Build a config, refusing unknown keys and wrong types (a typo must not be silently ignored)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}", path=source)
        defaults = cls()
        for key, value in values.items():
            expected = type(getattr(defaults, key))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"{key} must be {expected.__name__}, not {value!r}", path=source)
            values = {**values, key: value}
        if values.get("version", CONFIG_VERSION) != CONFIG_VERSION:
            raise ConfigError(f"config version {values['version']} is not supported (this tagger reads version "
                              f"{CONFIG_VERSION})", path=source)
        try:
            return cls(**values).validate()
        except ConfigError as e:
            raise ConfigError(e.message, path=source) from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML recipe; the keys are Config fields (a [train] or [model] table is flattened)."""
    check_input_file(path, error=ConfigError)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"invalid TOML: {e}", path=str(path)) from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    return flat



def model_scheme(config: Config, source_scheme: str | None) -> str | None:
    """The scheme the network's tags are in: the corpus's, or the one the config converts to."""
    if source_scheme is None:
        return None
    from corpora.schemes import normalize_scheme

    return source_scheme if config.tag_scheme == "auto" else normalize_scheme(config.tag_scheme)
