"""The network written down once: which tensors a model has, their names, shapes and layout.

This is the saved model format (model.safetensors, format_version 2). Training (tagger/training/model.py, torch)
writes these tensors and the tagging engine (tagger/tagging/engine.py, numpy) reads them; neither reads the
other's internals, so a torch release that renames its modules' keys changes nothing saved.

    words.trained      (num_words, word_dim)    rows trained with the network (0: padding, 1: <unk>)
    words.frozen       (num_frozen, word_dim)   pretrained vectors of words never seen in training (float16)
    casing             (6, casing_dim)          the word's shape (tagger.vocab.CASINGS)
    chars.embedding    (num_chars, char_dim)
    chars.cnn.weight   (char_filters, char_kernel * char_dim)   one window of characters -> filters
    chars.cnn.bias     (char_filters,)
    chars.lstm.0.{forward,backward}.{weight_ih,weight_hh,bias_ih,bias_hh}   the character BiLSTM
    bigrams            (num_bigrams, bigram_dim)  the bigram starting at each token (config bigrams = "on")
    features.{i}       (values of column i, feature_dim)
    context.*          a frozen pretrained encoder (config context = "lac": Baidu's LAC, tagger/lac.py), never
                       trained: context.embedding (num_context, 128) float16, context.{0,1}.{forward,backward}
                       .{input.weight (in, 384), input.bias (384,), weight (128, 384), bias (384,)} (a Paddle
                       GRU: input.* project the input, weight holds the gates' (128, 256) and the candidate's
                       (128, 128) blocks end to end), context.emissions.{weight (256, 57), bias (57,)};
                       or (context = "lm": a `tagger lm` character LM, tagger/tagging/charlm.py) context.embedding
                       (num_lm_chars, lm_char_dim) float16 and context.0.{forward,backward}.* laid out as lstm.*
    lstm.{layer}.{forward,backward}.weight_ih  (4 * hidden, input)   gate rows in the order i, f, g, o:
    lstm.{layer}.{forward,backward}.weight_hh  (4 * hidden, hidden)  c' = f c + i g, h' = o tanh(c'),
    lstm.{layer}.{forward,backward}.bias_ih    (4 * hidden,)         i, f, o sigmoid, g tanh
    lstm.{layer}.{forward,backward}.bias_hh    (4 * hidden,)
    emissions.weight   (num_tags, 2 * hidden)   BiLSTM output (forward ; backward) -> tag scores
    emissions.bias     (num_tags,)
    crf.start          (num_tags,)              CRF scores, moves the tagging scheme forbids already set
    crf.transitions    (num_tags, num_tags)     to FORBIDDEN; transitions[a, b] scores tag a -> tag b
    crf.end            (num_tags,)

The lexicon's B/M/E/S features (config lexicon = true, tagger/lexicon.py) have no tensor of their own: the
BiLSTM's input weights read them as they are, and so they read the context encoder's outputs (lac.FEATURES
a token). A model without bigrams, a lexicon or a context encoder is what format 2 was.

Adding an encoder: its Config field, its torch module (model.py), its numpy forward (inference.py), and
its tensors here (`shapes`, `TORCH_NAMES` when torch's key differs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from tagger import lac, lexicon
from tagger.config import Config
from tagger.vocab import CASINGS, Vocab

FORBIDDEN = -10000.0  # the score of a transition the tagging scheme forbids (tagger/training/crf.py pins it there)

FORMAT_VERSION = 2
DIRECTIONS = ("forward", "backward")
HALF = ("words.frozen", "context.embedding")  # stored as float16: lookup-only pretrained rows, half the size


@dataclass(frozen=True)
class Sizes:
    """What sizes the network besides its config: the vocabulary's parts."""

    words: int
    frozen: int
    chars: int
    tags: int
    features: tuple[int, ...]
    bigrams: int = 0
    context: int = 0  # rows of the context encoder's embedding


def char_output_size(config: Config) -> int:
    """Width of a word's character encoding."""
    return {"cnn": config.char_filters, "lstm": 2 * config.char_filters, "none": 0}[config.resolved().char_encoder]


def input_size(config: Config, num_features: int) -> int:
    """Width of the BiLSTM's input: word, casing, characters, bigram, lexicon features, context features and
    feature columns, concatenated in that order."""
    c = config.resolved()
    return (c.word_dim + c.casing_dim + char_output_size(c) + (c.bigram_dim if c.bigrams == "on" else 0)
            + (lexicon.FEATURES if c.lexicon else 0) + context_size(c)
            + c.feature_dim * num_features)


def context_size(config: Config) -> int:
    """Numbers a token that the frozen context encoder gives the BiLSTM."""
    return {"none": 0, "lac": lac.FEATURES, "lm": 2 * config.lm_hidden}[config.context]


def shapes(config: Config, sizes: Sizes) -> dict[str, tuple[int, ...]]:
    """Every tensor of a model with this config and vocabulary, by name."""
    c = config.resolved()
    out = {"words.trained": (sizes.words, c.word_dim), "words.frozen": (sizes.frozen, c.word_dim),
           "casing": (len(CASINGS), c.casing_dim)}
    if c.char_encoder != "none":
        out["chars.embedding"] = (sizes.chars, c.char_dim)
    if c.char_encoder == "cnn":
        out |= {"chars.cnn.weight": (c.char_filters, c.char_kernel * c.char_dim), "chars.cnn.bias": (c.char_filters,)}
    elif c.char_encoder == "lstm":
        out |= _lstm_shapes("chars.lstm", c.char_dim, c.char_filters, 1)
    if c.bigrams == "on":
        out["bigrams"] = (sizes.bigrams, c.bigram_dim)
    out |= {f"features.{i}": (n, c.feature_dim) for i, n in enumerate(sizes.features)}
    if c.context == "lac":
        out |= lac.shapes(sizes.context)
    elif c.context == "lm":  # a `tagger lm` character LM: its embedding and two LMs as one BiLSTM layer's directions
        out |= {"context.embedding": (sizes.context, c.lm_char_dim),
                **_lstm_shapes("context", c.lm_char_dim, c.lm_hidden, 1)}
    out |= _lstm_shapes("lstm", input_size(c, len(sizes.features)), c.hidden_size, c.num_layers)
    k = sizes.tags
    return out | {"emissions.weight": (k, 2 * c.hidden_size), "emissions.bias": (k,),
                  "crf.start": (k,), "crf.transitions": (k, k), "crf.end": (k,)}


def _lstm_shapes(prefix: str, in_dim: int, hidden: int, layers: int) -> dict[str, tuple[int, ...]]:
    out = {}
    for layer in range(layers):
        for d in DIRECTIONS:
            p = f"{prefix}.{layer}.{d}"
            out |= {f"{p}.weight_ih": (4 * hidden, in_dim if layer == 0 else 2 * hidden),
                    f"{p}.weight_hh": (4 * hidden, hidden), f"{p}.bias_ih": (4 * hidden,), f"{p}.bias_hh": (4 * hidden,)}
    return out


def check(tensors: Mapping[str, object], config: Config, sizes: Sizes) -> list[str]:
    """What is wrong with these tensors for this config and vocabulary (nothing: an empty list)."""
    expected = shapes(config, sizes)
    problems = [f"missing {k}" for k in expected if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    problems += [f"{k}: {tuple(tensors[k].shape)} instead of {shape}"  # type: ignore[attr-defined]
                 for k, shape in expected.items() if k in tensors and tuple(tensors[k].shape) != shape]
    return problems


# -- torch's names (tagger.training.model.BiLSTMCRF's state dict, which format 1 saved as it was) -----------------

_CRF = {"crf.start": "start_transitions", "crf.transitions": "transitions", "crf.end": "end_transitions"}


def is_context(name: str) -> bool:
    """Whether a tensor is the frozen context encoder's, which the torch network holds outside its state."""
    return name.startswith("context.")


def torch_name(name: str) -> str:
    """The BiLSTMCRF state-dict key of one of our tensors (CRF scores: the unconstrained parameter)."""
    if name in _CRF:
        return f"crf.parametrizations.{_CRF[name]}.original"
    fixed = {"words.trained": "word.weight", "words.frozen": "frozen", "casing": "casing.weight",
             "chars.embedding": "chars.embed.weight", "chars.cnn.weight": "chars.window.weight",
             "chars.cnn.bias": "chars.window.bias", "bigrams": "bigrams.weight", "emissions.weight": "emit.weight", "emissions.bias": "emit.bias"}
    if name in fixed:
        return fixed[name]
    parts = name.split(".")
    if parts[0] == "features":
        return f"features.{parts[1]}.weight"
    prefix, layer, direction, weight = ".".join(parts[:-3]), parts[-3], parts[-2], parts[-1]  # an LSTM's tensor
    return f"{prefix}.{weight}_l{layer}{'_reverse' if direction == 'backward' else ''}"


def from_torch(state: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Our tensors from a BiLSTMCRF state dict as numpy arrays (a live model's, or a format-1 file's):
    the same memory where the tensor is only renamed; CRF scores with the forbidden moves set."""
    out = {}
    for name in names:
        if is_context(name):  # not the torch network's: it never trains them (model.BiLSTMCRF.context)
            continue
        key = torch_name(name)
        if name in _CRF:
            allowed = state[key.replace(".original", ".0.allowed")]
            out[name] = np.where(allowed, state[key], np.float32(FORBIDDEN)).astype(np.float32)
        else:
            out[name] = state[key]
    return out


def sizes_of(vocab: Vocab) -> Sizes:
    """What sizes the network besides its config."""
    return Sizes(len(vocab.words), len(vocab.frozen), len(vocab.chars), len(vocab.tags),
                 tuple(len(f) for f in vocab.features), len(vocab.bigrams) if vocab.bigrams else 0,
                 len(vocab.context) if vocab.context else 0)
