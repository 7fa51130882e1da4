"""lookup.onnx: the string -> id steps of a model's encoder as ai.onnx.ml LabelEncoders (words, bigrams, LAC
rows, feature columns), whose outputs are model.onnx's id inputs of the same names (tagger/export/onnx.py)."""
from __future__ import annotations

import numpy as np

from tagger import lac
from tagger.config import Config
from tagger.export.onnx import Graph, checked_model, import_onnx
from tagger.vocab import END, Vocab


def _lookup(g: Graph, strings: str, shape: str, items: list[str], default: int) -> str:
    """(B, T) ids of (B, T) strings: their index in `items` (the last one where an item repeats, as a dict
    built from the list keeps), else `default`."""
    keys = dict(zip(items, range(len(items))))
    flat = g.op("Reshape", [strings, g.const([-1])])
    ids = g.op("LabelEncoder", [flat], domain="ai.onnx.ml", keys_strings=list(keys), values_int64s=list(keys.values()),
               default_int64=default)
    return g.op("Reshape", [ids, shape])


def build_lookup(config: Config, vocab: Vocab, name: str = "tagger_lookup"):
    """The onnx.ModelProto of the string -> id steps (ai.onnx.ml LabelEncoder): its outputs are model.onnx's
    id inputs of the same names. Inputs: tokens (B, T) string, lowered (B, T) string (vocab.lowercase),
    lengths (B,) int64, context_tokens (B, T) string (LAC's form; context lac), features (B, F, T) string.
    Outputs: word_ids, bigram_ids (bigrams on), context_ids (context lac), feature_ids (feature columns)."""
    onnx = import_onnx()
    helper, T = onnx.helper, onnx.TensorProto
    config = config.resolved()
    g = Graph()
    inputs = [helper.make_tensor_value_info("tokens", T.STRING, ["batch", "time"])]
    if vocab.lowercase:
        inputs.append(helper.make_tensor_value_info("lowered", T.STRING, ["batch", "time"]))
    inputs.append(helper.make_tensor_value_info("lengths", T.INT64, ["batch"]))
    shape = g.op("Shape", ["tokens"])  # (2,): B, T
    found = {"word_ids": _word_ids(g, vocab, shape)}
    if config.bigrams == "on":
        seq_len = g.op("Gather", [shape, g.const(1)])
        mask = g.op("Less", [g.op("Unsqueeze", [g.op("Range", [g.const(0), seq_len, g.const(1)]), g.const([0])]),
                             g.op("Unsqueeze", ["lengths", g.const([1])])], "mask")  # (B, T) bool
        found["bigram_ids"] = _bigram_ids(g, vocab, shape, mask)
    if config.context == "lac":
        inputs.append(helper.make_tensor_value_info("context_tokens", T.STRING, ["batch", "time"]))
        items = vocab.context.items
        found["context_ids"] = _lookup(g, "context_tokens", shape, items, dict(zip(items, range(len(items))))[lac.OOV])
    if config.features:
        inputs.append(helper.make_tensor_value_info("features", T.STRING, ["batch", len(config.features), "time"]))
        columns = [_lookup(g, g.op("Gather", ["features", g.const(i)], axis=1), shape, index.items, default=1)
                   for i, index in enumerate(vocab.features)]  # (B, T) each
        found["feature_ids"] = g.op("Concat", [g.op("Unsqueeze", [c, g.const([1])]) for c in columns], axis=1)
    g.nodes += [helper.make_node("Identity", [value], [key]) for key, value in found.items()]
    dims = {"feature_ids": ["batch", len(config.features), "time"]}
    outputs = [helper.make_tensor_value_info(key, T.INT64, dims.get(key, ["batch", "time"])) for key in found]
    return checked_model(g.subgraph(name, inputs, outputs))


def _word_ids(g: Graph, vocab: Vocab, shape: str) -> str:
    """vocab.word_id in the graph: the exact form among trained then frozen words, then (lowercase on) the
    lower-cased form, else <unk> (1). Frozen words are numbered after the trained ones."""
    items = [*vocab.words.items, *vocab.frozen.items]
    exact = _lookup(g, "tokens", shape, items, default=-1)
    fallback = _lookup(g, "lowered", shape, items, default=1) if vocab.lowercase else g.const(1)
    return g.op("Where", [g.op("GreaterOrEqual", [exact, g.const(0)]), exact, fallback], "word_ids")


def _bigram_ids(g: Graph, vocab: Vocab, shape: str, mask: str) -> str:
    """(B, T) ids of the bigram starting at each token: it and the next token joined, vocab.END after the last."""
    nxt = g.op("Concat", [g.op("Slice", ["tokens", g.const([1]), g.const([np.iinfo(np.int64).max]), g.const([1])]),
                          g.op("Slice", ["tokens", g.const([0]), g.const([1]), g.const([1])])], axis=1)  # (B, T)
    last = g.op("Not", [g.op("Concat", [g.op("Slice", [mask, g.const([1]), g.const([np.iinfo(np.int64).max]),
                                                       g.const([1])]),
                                        g.op("Slice", [mask, g.const([0]), g.const([1]), g.const([1])])],
                                 axis=1)])  # (B, T): no token follows (the first column's value is never on)
    last = g.op("Or", [last, g.op("Equal", [g.op("Range", [g.const(0), g.op("Gather", [shape, g.const(1)]),
                                                           g.const(1)]),
                                            g.op("Sub", [g.op("Gather", [shape, g.const(1)]), g.const(1)])])])
    nxt = g.op("Where", [last, g.const(np.array(END, dtype=object)), nxt])
    joined = g.op("StringConcat", ["tokens", nxt])
    return _lookup(g, joined, shape, vocab.bigrams.items, default=1)
