"""preprocess.json: what a caller in any language needs to turn tokens into model.onnx's inputs.

It holds the vocabularies (in vocab.json's form), the lexicon's words, the config, every token -> id rule in
words, which of them lookup.onnx does (string -> id through ai.onnx.ml LabelEncoder) and which the caller
must do, and test vectors: sentences chosen to exercise each rule, with the ids and tags the numpy engine
gives them. A port is right when it reproduces the test vectors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from tagger import lac, lexicon
from tagger.encode import collate
from tagger.vocab import CASINGS, END, Vocab, bigrams, casing

if TYPE_CHECKING:
    from tagger.tagging.tagger import Tagger

CASING_RULES = [  # tagger.vocab.casing, first match wins; Python's str predicates (Unicode-aware)
    "numeric (1): every character is a digit (str.isdigit) and there is at least one",
    "mainly_numeric (2): more than half of the characters are digits",
    "lower (3): str.islower (has a cased character, and no upper-case or title-case one)",
    "upper (4): str.isupper (has a cased character, and no lower-case or title-case one)",
    "title (5): the first character is upper-case (str.isupper of it)",
    "has_digit (6): at least one digit",
    "punct (7): no letter or digit at all (not str.isalnum for any character)",
    "other (8): anything else",
]


def caller_steps(tagger: "Tagger") -> list[str]:
    """What a caller does before lookup.onnx and model.onnx, in order, for this model."""
    c, vocab = tagger.config, tagger.vocab
    steps = [f"split text into sentences of tokens as tagger.text does ('{_tokenizer(tagger)}' tokenizer), or bring "
             "your own tokens; pad every sentence of a batch to the longest (any string: padding is masked)",
             "lengths: the tokens of each sentence (every sentence has at least one)"]
    if vocab.lowercase:
        steps.append("lowered: each token lower-cased (str.lower); lookup.onnx tries the exact form first")
    steps.append("casing: each token's shape class, rules in casing.rules")
    if c.char_encoder != "none":
        steps.append("chars: each token's characters (Unicode code points) -> their index in vocab.chars, 1 when absent; "
                     "an empty token is one unknown character [1]; 0 pads words to the longest of the batch")
    if c.lexicon:
        steps.append("lexicon: each token's 24 cells from the lexicon's words, rules in lexicon.rule")
    if c.context == "lac":
        steps.append("context_tokens: each token in LAC's form (context.normalise)")
    if c.features:
        steps.append(f"features: the values of columns {c.features} of each token, shape (batch, columns, time)")
    steps.append("tags: model.onnx's tag ids index `tags` (in `scheme`); convert to `source_scheme` if you need "
                 "the training corpus's tags; entities are the spans of the tags")
    return steps


def model_inputs(tagger: "Tagger") -> dict[str, str]:
    """model.onnx's inputs for this model: name -> shape, type and what it holds."""
    c = tagger.config
    out = {"word_ids": "(batch, time) int64: lookup.onnx's word_ids", "casing": "(batch, time) int64: casing classes"}
    if c.char_encoder != "none":
        out["chars"] = "(batch, time, letters) int64: character ids, 0 past each word's end and on padding"
    if c.bigrams == "on":
        out["bigram_ids"] = "(batch, time) int64: lookup.onnx's bigram_ids"
    if c.lexicon:
        out["lexicon"] = "(batch, time, 24) float32: lexicon cells, 0 on padding"
    if c.context == "lac":
        out["context_ids"] = "(batch, time) int64: lookup.onnx's context_ids"
    if c.features:
        out["feature_ids"] = f"(batch, {len(c.features)}, time) int64: lookup.onnx's feature_ids"
    return out | {"lengths": "(batch,) int64: tokens in each sentence, at least 1"}


def spec(tagger: "Tagger", name: str) -> dict:
    """The content of preprocess.json for a loaded model."""
    c, vocab = tagger.config, tagger.vocab
    out = {
        "format": "bilstm-tagger-onnx", "version": 1, "name": name,
        "files": {"model": "model.onnx", "lookup": "lookup.onnx"},
        "config": c.to_dict(), "scheme": tagger.scheme, "source_scheme": vocab.source_scheme,
        "tags": list(vocab.tags.items), "tokenizer": _tokenizer(tagger),
        "meta": {k: tagger.meta[k] for k in ("dev_f1", "epoch", "training") if k in tagger.meta},
        "caller_steps": caller_steps(tagger),
        "model_inputs": model_inputs(tagger),
        "model_outputs": {"tags": "(batch, time) int64: index in `tags`, -1 on padding",
                          "emissions": "(batch, time, tags) float32", "score": "(batch,) float32: the best path's score"},
        "lookup_onnx": "string -> id by ai.onnx.ml LabelEncoder: tokens (+ lowered) -> word_ids"
                       + (", tokens + lengths -> bigram_ids" if c.bigrams == "on" else "")
                       + (", context_tokens -> context_ids" if c.context == "lac" else "")
                       + (", features -> feature_ids" if c.features else "")
                       + "; its outputs are model.onnx's inputs of the same names",
        "padding_id": 0, "unknown_id": 1,
        "words": {"rule": "word_ids: the exact token in vocab.words (id = index) or vocab.frozen_words (id = "
                          "len(vocab.words) + index); then, if lowercase, the lower-cased token the same way; else 1",
                  "lowercase": vocab.lowercase},
        "casing": {"classes": list(CASINGS), "rules": CASING_RULES},
        "chars": {"rule": "index in vocab.chars, 1 when absent, 0 as padding", "empty_token": [1]},
        "vocab": vocab.to_json(),
        "lexicon": None, "context": None, "bigrams": None,
    }
    if c.bigrams == "on":
        out["bigrams"] = {"rule": "the token joined with the next one, with the end marker after a sentence's "
                                  "last token; index in vocab.bigrams, 1 when absent", "end": END}
    if c.lexicon:
        words = vocab.lexicon.words
        out["lexicon"] = {"words": [[w, f] for w, f in words.items()], "cells": list(lexicon.CELLS),
                          "scale": vocab.lexicon.scale, "rule": LEXICON_RULE}
    if c.context == "lac":
        out["context"] = {"oov": lac.OOV, "normalise": "characters U+FF01..U+FF5E (full-width ASCII) become "
                          "c - 0xFEE0, U+3000 becomes a space; then the index in vocab.context (the last one where "
                          "a string repeats), else the index of oov"}
    out["test_vectors"] = test_vectors(tagger, probe_sentences(vocab, _tokenizer(tagger) == "chars"))
    return out


LEXICON_RULE = (
    "every lexicon word spelt by tokens[i:j] (tokens joined) is a match; a match of n tokens adds to cells: "
    "n = 1: S at i; else B{m} at i, M{m} at i+1 .. j-2 (n >= 3), E{m} at j-1, where m = n for n <= 4 and '5+' "
    "for n >= 5. Per token and cell: count of matches and summed frequency. The 24 numbers: 12 flags "
    "(count > 0, as 1.0 / 0.0) in cell order, then 12 values log(1 + summed frequency) / scale (scale = "
    "log(1 + the largest frequency), or 1 when that is 0), float32")


def _tokenizer(tagger: "Tagger") -> str:
    return "words" if tagger.config.tokenizer == "auto" else tagger.config.tokenizer


def probe_sentences(vocab: Vocab, chars: bool) -> list[list[str]]:
    """Sentences that exercise every rule: known words as they are, title-cased and upper-cased (found
    lower-cased), frozen pretrained words, digits, punctuation, unknown words and characters, lexicon words,
    full-width characters; and a one-token sentence."""
    known = [w for w in vocab.words.items[2:] if w][:12] or ["x"]
    frozen = list(vocab.frozen.items[:: max(1, len(vocab.frozen) // 3)][:3])
    unknown_char = next(ch for ch in "ʬ㐀ꙮ\u2603" if ch not in vocab.chars.ids)
    shapes = ["2024", "3.14", "A4", "--", "iPhone4", "eBay", "Ünïcödé", unknown_char * 2, "qzxjvw", "e.g.", "ＡＢ１"]
    sentences = [known[:6], [w.title() for w in known[6:12]] + shapes[:4],
                 [w.upper() for w in known[:3]] + frozen + [w.title() for w in frozen] + shapes[4:]]
    if chars:  # a character model reads one character a token
        sentences = [list("".join(s)) for s in sentences]
    sentences.append([known[0][:1] if chars else known[0]])  # one token
    if vocab.lexicon is not None:  # the longest words, one after another: overlapping B/M/E/S matches
        longest = sorted(vocab.lexicon.words, key=lambda w: (-len(w), w))[:4]
        sentences.append(list("".join(longest)) if chars else longest)
    return [s for s in sentences if s]


def _features(vocab: Vocab, sentences: Sequence[Sequence[str]]) -> list[list[list[str]]]:
    """Feature values for the probe sentences: each column's known values in turn, and one unknown value."""
    out = []
    for k, tokens in enumerate(sentences):
        columns = []
        for index in vocab.features:
            values = [v for v in index.items[2:]] + ["<never-seen>"]
            columns.append([values[(k + t) % len(values)] for t in range(len(tokens))])
        out.append(columns)
    return out


def test_vectors(tagger: "Tagger", sentences: list[list[str]]) -> list[dict]:
    """Each sentence with every id its preprocessing gives, the tags and the best path's score, all from the
    project's encoder and the numpy engine: what a port of the preprocessing must reproduce."""
    vocab, c = tagger.vocab, tagger.config
    features = _features(vocab, sentences) if vocab.features else [()] * len(sentences)
    out = []
    for tokens, feats in zip(sentences, features):
        encoded = tagger.encode(tokens, features=feats)
        batch = collate([encoded])
        emissions = tagger.engine.emissions(batch)[0]  # (T, K)
        path = tagger.engine.tag(batch)[0]
        vector = {"tokens": tokens, "lowered": [t.lower() for t in tokens] if vocab.lowercase else None,
                  "casing": [casing(t) for t in tokens], "word_ids": [t[0] for t in encoded.tokens]}
        if c.char_encoder != "none":
            vector["chars"] = [list(t[2]) for t in encoded.tokens]
        if c.bigrams == "on":
            vector["bigrams"] = bigrams(tokens)
            vector["bigram_ids"] = encoded.bigrams
        if c.lexicon:
            vector["lexicon"] = encoded.lexicon.tolist()
        if c.context == "lac":
            vector["context_tokens"] = [lac.normalise(t) for t in tokens]
            vector["context_ids"] = encoded.context
        if c.features:
            vector["features"] = [list(col) for col in feats]
            vector["feature_ids"] = encoded.features
        vector["tag_ids"] = list(path)
        vector["tags"] = [vocab.tags.items[i] for i in path]
        vector["score"] = path_score(emissions, path, tagger.engine.crf)
        out.append(vector)
    return out


def path_score(emissions: np.ndarray, path: Sequence[int], crf: tuple) -> float:
    """The CRF score of one tag path: start, emissions, transitions and end, summed in float32 as the graph."""
    start, trans, end = crf
    score = np.float32(start[path[0]]) + np.float32(emissions[0, path[0]])
    for t in range(1, len(path)):
        score = score + np.float32(trans[path[t - 1], path[t]]) + np.float32(emissions[t, path[t]])
    return float(score + np.float32(end[path[-1]]))
