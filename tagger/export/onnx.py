"""A trained model as ONNX: the whole network and the CRF's Viterbi in one graph, its string lookups in another.

The graphs are written from the tensors tagger/tensors.py names and the maths of the numpy engine
(tagger/tagging/engine.py), operator by operator, never through torch's tracer, whose export loses the
LSTM's sequence lengths (the backward direction then reads the padding) and drops in-place updates of a
Viterbi loop. Every step honours `lengths`: the LSTMs and GRUs get them as `sequence_lens`, the character
encoders mask their padding, and Viterbi keeps each sentence's score from its last token on.

model.onnx (`build`), B sentences padded to T tokens of at most L characters:

    word_ids     (B, T) int64      vocab.word_id (trained rows, then frozen pretrained rows)
    casing       (B, T) int64      the token's shape class (tagger.vocab.casing)
    chars        (B, T, L) int64   character ids, 0 after the word's end (char encoder cnn | lstm)
    bigram_ids   (B, T) int64      the bigram starting at each token (bigrams on)
    lexicon      (B, T, 24) float32  the lexicon's B/M/E/S cells (config lexicon)
    context_ids  (B, T) int64      LAC's row of each token (config context lac)
    feature_ids  (B, F, T) int64   the feature columns' ids
    lengths      (B,) int64        tokens in each sentence (>= 1)
    -> tags (B, T) int64 (the best path's tag ids, -1 on padding), emissions (B, T, K) float32 and
       score (B,) float32 (the best path's score)

lookup.onnx (tagger/export/lookup.py `build_lookup`): the string -> id steps as ai.onnx.ml LabelEncoders, from tokens (B, T),
lowered (B, T), lengths (B,), context_tokens (B, T) and features (B, F, T) to model.onnx's id inputs of the
same names (word_ids, bigram_ids, context_ids, feature_ids). Ids are model.onnx's inputs, not strings, so that
the Python runtime (tagger/export/runtime.py) can run the batches the project's own encoder makes.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from tagger import lexicon
from tagger.config import Config
from tagger.errors import ModelError
from tagger.export import ONNX_HINT
from tagger.vocab import Vocab

OPSET = 20  # StringConcat (bigrams) is new in opset 20
ML_OPSET = 3  # ai.onnx.ml: LabelEncoder with string keys and int64 values
CRF = ("crf.start", "crf.to_from", "crf.end")  # initializers the runtime reads back (to_from: transitions transposed)
LOWEST = float(np.finfo(np.float32).min)  # what a masked position scores before a max


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise ModelError(f"exporting to ONNX needs the onnx package: {ONNX_HINT}") from None
    return onnx


class Graph:
    """Nodes, initializers and unique names for one ONNX graph (the main graph or a loop's body)."""

    def __init__(self, prefix: str = ""):
        self.onnx = import_onnx()
        self.nodes, self.initializers, self.prefix, self.count = [], [], prefix, 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def const(self, value, hint: str = "c", dtype=None) -> str:
        """An initializer holding `value` (a numpy array or a Python number/list)."""
        array = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def named(self, value: np.ndarray, name: str) -> str:
        """An initializer under a fixed name (the CRF's scores, which the runtime reads back)."""
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: int = 1,
           domain: str = "", **attrs) -> str | list[str]:
        names = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, names, domain=domain, **attrs))
        return names[0] if outputs == 1 else names

    def subgraph(self, name: str, inputs: list, outputs: list):
        return self.onnx.helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)


def build(config: Config, vocab: Vocab, tensors: Mapping[str, np.ndarray], name: str = "tagger"):
    """The onnx.ModelProto of a model (config, vocab and tensors as a loaded `Tagger` holds them)."""
    helper, T = import_onnx().helper, import_onnx().TensorProto
    config = config.resolved()
    g = Graph()
    shape = g.op("Shape", ["word_ids"])  # (2,): B, T
    seq_len = g.op("Gather", [shape, g.const(1, "one")], "seq_len")  # scalar T
    mask = g.op("Less", [g.op("Unsqueeze", [g.op("Range", [g.const(0), seq_len, g.const(1)]), g.const([0])]),
                         g.op("Unsqueeze", ["lengths", g.const([1])])], "mask")  # (B, T) bool
    x = g.op("Concat", _token_inputs(g, config, tensors, shape, mask), "input", axis=2)  # (B, T, input_size)
    x = g.op("Transpose", [x], perm=[1, 0, 2])  # (T, B, input_size)
    lengths32 = g.op("Cast", ["lengths"], to=T.INT32)
    for layer in range(config.num_layers):
        x = _bilstm(g, x, lengths32, tensors, f"lstm.{layer}")  # (T, B, 2*hidden)
    emissions = g.op("Add", [g.op("MatMul", [g.op("Transpose", [x], perm=[1, 0, 2]),
                                             g.const(tensors["emissions.weight"].T.copy(), "emit_w")]),
                             g.const(tensors["emissions.bias"], "emit_b")])  # (B, T, K)
    tags, score = _viterbi(g, emissions, mask, seq_len, tensors)
    g.nodes += [helper.make_node("Identity", [tags], ["tags"]), helper.make_node("Identity", [emissions], ["emissions"]),
                helper.make_node("Identity", [score], ["score"])]
    outputs = [helper.make_tensor_value_info("tags", T.INT64, ["batch", "time"]),
               helper.make_tensor_value_info("emissions", T.FLOAT, ["batch", "time", len(vocab.tags)]),
               helper.make_tensor_value_info("score", T.FLOAT, ["batch"])]
    return checked_model(g.subgraph(name, _model_inputs(config), outputs))


def _model_inputs(config: Config) -> list:
    """model.onnx's inputs for a (resolved) config, in the order the module's docstring lists them."""
    helper, T = import_onnx().helper, import_onnx().TensorProto
    dims = {"word_ids": ["batch", "time"], "casing": ["batch", "time"]}
    if config.char_encoder != "none":
        dims["chars"] = ["batch", "time", "letters"]
    if config.bigrams == "on":
        dims["bigram_ids"] = ["batch", "time"]
    if config.lexicon:
        dims["lexicon"] = ["batch", "time", lexicon.FEATURES]
    if config.context == "lac":
        dims["context_ids"] = ["batch", "time"]
    if config.features:
        dims["feature_ids"] = ["batch", len(config.features), "time"]
    dims["lengths"] = ["batch"]
    return [helper.make_tensor_value_info(name, T.FLOAT if name == "lexicon" else T.INT64, d) for name, d in dims.items()]


def _token_inputs(g: Graph, config: Config, tensors: Mapping[str, np.ndarray], shape: str, mask: str) -> list[str]:
    """What the BiLSTM reads of each token, (B, T, D) each, in tensors.input_size's order: word, casing,
    characters, bigram, lexicon cells, context, feature columns."""
    parts = [_embed_words(g, "word_ids", tensors), g.op("Gather", [g.const(tensors["casing"], "casing_table"), "casing"])]
    if config.char_encoder == "cnn":
        parts.append(_char_cnn(g, tensors, config.char_kernel, shape))
    elif config.char_encoder == "lstm":
        parts.append(_char_lstm(g, tensors, shape))
    if config.bigrams == "on":
        parts.append(g.op("Gather", [g.const(tensors["bigrams"], "bigram_table"), "bigram_ids"]))
    if config.lexicon:
        parts.append("lexicon")
    if config.context == "lac":
        parts.append(_context(g, tensors, mask))
    for i in range(len(config.features)):
        column = g.op("Gather", ["feature_ids", g.const(i)], axis=1)  # (B, T)
        parts.append(g.op("Gather", [g.const(tensors[f"features.{i}"], f"feature_table_{i}"), column]))
    return parts


def checked_model(graph):
    """A checked ModelProto of a graph, with the opsets it uses."""
    onnx = import_onnx()
    model = onnx.helper.make_model(graph, producer_name="bilstm-tagger", opset_imports=[
        onnx.helper.make_opsetid("", OPSET), onnx.helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    model.ir_version = min(model.ir_version, 10)  # what onnxruntime releases of 2024 on read
    onnx.checker.check_model(model, full_check=True)
    return model


def _embed_words(g: Graph, ids: str, tensors: Mapping[str, np.ndarray]) -> str:
    """(B, T, word_dim): rows of the trained embedding, or of the frozen one (float16) for ids past it."""
    trained, frozen = tensors["words.trained"], tensors["words.frozen"]
    n = len(trained)
    own = g.op("Gather", [g.const(trained, "words_trained"), g.op("Min", [ids, g.const(n - 1)])])
    if not len(frozen):
        return own
    rows = g.op("Max", [g.op("Sub", [ids, g.const(n)]), g.const(0)])
    pretrained = g.op("Cast", [g.op("Gather", [g.const(np.asarray(frozen, dtype=np.float16), "words_frozen"), rows])],
                      to=g.onnx.TensorProto.FLOAT)
    is_frozen = g.op("Unsqueeze", [g.op("GreaterOrEqual", [ids, g.const(n)]), g.const([2])])
    return g.op("Where", [is_frozen, pretrained, own], "words")


def _chars(g: Graph, tensors: Mapping[str, np.ndarray]) -> tuple[str, str, str, str]:
    """The batch's distinct spellings, as the numpy engine encodes them (text repeats its words: a CoNLL-2003
    batch of 256 sentences has 2.5 tokens per distinct word): their character embeddings (U, L, dim) with
    zeros after each word's end, their character mask (U, L), whether each has characters (U,) (padding's
    row has none), and each token's row among them (B*T,)."""
    letters = g.op("Unsqueeze", [g.op("Gather", [g.op("Shape", ["chars"]), g.const(2)]), g.const([0])])
    flat = g.op("Reshape", ["chars", g.op("Concat", [g.const([-1]), letters], axis=0)])  # (B*T, L)
    distinct, _, inverse, _ = g.op("Unique", [flat], "spellings", outputs=4, axis=0)  # (U, L); (B*T,)
    on = g.op("Greater", [distinct, g.const(0)])  # (U, L)
    x = g.op("Gather", [g.const(tensors["chars.embedding"], "char_table"), distinct])  # (U, L, dim)
    x = g.op("Mul", [x, g.op("Unsqueeze", [g.op("Cast", [on], to=g.onnx.TensorProto.FLOAT), g.const([2])])])
    has = g.op("ReduceMax", [g.op("Cast", [on], to=g.onnx.TensorProto.INT64), g.const([1])], keepdims=0)
    return x, on, g.op("Greater", [has, g.const(0)]), inverse


def _per_token(g: Graph, encoded: str, has_chars: str, inverse: str, shape: str) -> str:
    """(B, T, D) from (U, D) encodings of the distinct spellings, zero for padding (no characters)."""
    encoded = g.op("Where", [g.op("Unsqueeze", [has_chars, g.const([1])]), encoded, g.const(np.float32(0))])
    return g.op("Reshape", [g.op("Gather", [encoded, inverse]), g.op("Concat", [shape, g.const([-1])], axis=0)])


def _char_cnn(g: Graph, tensors: Mapping[str, np.ndarray], kernel: int, shape: str) -> str:
    """engine.spell's CNN: windows of `kernel` characters, zeros beyond the word, the max over its characters.
    Positions past the word's end must not win the max: an extra input channel, 1 there, weighs LOWEST at the
    window's centre, so the convolution itself scores them lowest (no mask over its larger output)."""
    x, on, has, inverse = _chars(g, tensors)
    w = tensors["chars.cnn.weight"]  # (filters, kernel*dim): window position i's dims at i*dim
    filters, dim = w.shape[0], tensors["chars.embedding"].shape[1]
    gap = kernel // 2
    conv_w = np.zeros((filters, dim + 1, kernel), dtype=np.float32)  # (filters, dim + past-the-end, kernel)
    conv_w[:, :dim] = w.reshape(filters, kernel, dim).transpose(0, 2, 1)
    conv_w[:, dim, gap] = LOWEST
    off = g.op("Cast", [g.op("Not", [g.op("Unsqueeze", [on, g.const([1])])])], to=g.onnx.TensorProto.FLOAT)
    x = g.op("Concat", [g.op("Transpose", [x], perm=[0, 2, 1]), off], axis=1)  # (U, dim + 1, L)
    y = g.op("Conv", [x, g.const(conv_w, "char_cnn_w"), g.const(tensors["chars.cnn.bias"], "char_cnn_b")],
             pads=[gap, kernel - 1 - gap])  # (U, F, L)
    return _per_token(g, g.op("ReduceMax", [y, g.const([2])], keepdims=0), has, inverse, shape)  # (B, T, F)


def _char_lstm(g: Graph, tensors: Mapping[str, np.ndarray], shape: str) -> str:
    """engine._spell_lstm: the character BiLSTM's forward state at the last character, backward at the first."""
    x, on, has, inverse = _chars(g, tensors)
    lengths = g.op("Max", [g.op("ReduceSum", [g.op("Cast", [on], to=g.onnx.TensorProto.INT64), g.const([1])],
                                keepdims=0), g.const(1)])  # (U,) padding's row runs one zero character
    lengths = g.op("Cast", [lengths], to=g.onnx.TensorProto.INT32)
    hidden = tensors["chars.lstm.0.forward.weight_hh"].shape[1]
    _, last = _lstm_node(g, g.op("Transpose", [x], perm=[1, 0, 2]), lengths, tensors, "chars.lstm.0")
    final = g.op("Reshape", [g.op("Transpose", [last], perm=[1, 0, 2]), g.const([-1, 2 * hidden])])  # (U, 2H)
    return _per_token(g, final, has, inverse, shape)


def _lstm_node(g: Graph, x: str, lengths32: str, tensors: Mapping[str, np.ndarray], prefix: str) -> list[str]:
    """An ONNX bidirectional LSTM over x (T, B, D): its Y (T, 2, B, H) and Y_h (2, B, H). Gate rows go from
    the saved i, f, g, o to ONNX's i, o, f, c."""
    hidden = tensors[f"{prefix}.forward.weight_hh"].shape[1]
    order = np.r_[0:hidden, 3 * hidden:4 * hidden, hidden:2 * hidden, 2 * hidden:3 * hidden]

    def both(name: str) -> np.ndarray:
        return np.stack([np.asarray(tensors[f"{prefix}.{d}.{name}"], dtype=np.float32)[order]
                         for d in ("forward", "backward")])

    bias = np.concatenate([both("bias_ih"), both("bias_hh")], 1)  # (2, 8H)
    return g.op("LSTM", [x, g.const(both("weight_ih"), "lstm_w"), g.const(both("weight_hh"), "lstm_r"),
                         g.const(bias, "lstm_b"), lengths32], outputs=2, direction="bidirectional", hidden_size=hidden)


def _bilstm(g: Graph, x: str, lengths32: str, tensors: Mapping[str, np.ndarray], prefix: str) -> str:
    """One BiLSTM layer: (T, B, D) -> (T, B, 2*hidden), forward ; backward, zeros on padding."""
    y, _ = _lstm_node(g, x, lengths32, tensors, prefix)  # (T, 2, B, H)
    hidden = tensors[f"{prefix}.forward.weight_hh"].shape[1]
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3])  # (T, B, 2, H)
    return g.op("Reshape", [y, g.const([0, 0, 2 * hidden])])


def _context(g: Graph, tensors: Mapping[str, np.ndarray], mask: str) -> str:
    """lac.ContextNetwork.features over context_ids: LAC's two BiGRU layers, then its emissions; zeros on
    padding. A Paddle GRU is ONNX's with the update gate flipped: Paddle's h' = h + u (c - h) is ONNX's
    (1 - z) c + z h with z = 1 - u = sigmoid(-(u's pre-activation)), so u's weights and bias are negated."""
    t = {k.removeprefix("context."): np.asarray(v, dtype=np.float32) for k, v in tensors.items()
         if k.startswith("context.")}
    x = g.op("Transpose", [g.op("Gather", [g.const(t["embedding"], "lac_table"), "context_ids"])], perm=[1, 0, 2])  # (T, B, 128)
    lengths32 = g.op("Cast", ["lengths"], to=g.onnx.TensorProto.INT32)
    for layer in (0, 1):
        hidden = t[f"{layer}.forward.weight"].shape[0]
        ws, rs, bs = [], [], []
        for d in ("forward", "backward"):
            w_in = t[f"{layer}.{d}.input.weight"]  # (in, 3H): update, reset, candidate columns
            w = t[f"{layer}.{d}.weight"].reshape(-1)
            gates = w[: 2 * hidden * hidden].reshape(hidden, 2 * hidden)  # (H, 2H): update, reset
            candidate = w[2 * hidden * hidden :].reshape(hidden, hidden)
            bias = t[f"{layer}.{d}.input.bias"] + t[f"{layer}.{d}.bias"]
            sign = np.r_[-np.ones(hidden), np.ones(2 * hidden)].astype(np.float32)  # z = 1 - u
            ws.append((w_in * sign).T)
            rs.append((np.concatenate([gates, candidate], 1) * sign).T)
            bs.append(np.concatenate([bias * sign, np.zeros(3 * hidden, dtype=np.float32)]))
        y = g.op("GRU", [x, g.const(np.stack(ws), "gru_w"), g.const(np.stack(rs), "gru_r"),
                         g.const(np.stack(bs), "gru_b"), lengths32], direction="bidirectional", hidden_size=hidden,
                 linear_before_reset=0)  # (T, 2, B, H)
        x = g.op("Reshape", [g.op("Transpose", [y], perm=[0, 2, 1, 3]), g.const([0, 0, 2 * hidden])])  # (T, B, 2H)
    h = g.op("Transpose", [x], perm=[1, 0, 2])  # (B, T, 2H)
    scores = g.op("Add", [g.op("MatMul", [h, g.const(t["emissions.weight"], "lac_emit_w")]),
                          g.const(t["emissions.bias"], "lac_emit_b")])
    out = g.op("Concat", [h, scores], axis=2)  # (B, T, lac.FEATURES)
    return g.op("Where", [g.op("Unsqueeze", [mask, g.const([2])]), out, g.const(np.float32(0))], "context")


def _viterbi(g: Graph, emissions: str, mask: str, seq_len: str, tensors: Mapping[str, np.ndarray]
             ) -> tuple[str, str]:
    """tagger.tagging.viterbi in two ONNX Loops over time: the best (B, T) tag ids (-1 on padding) and the
    (B,) best path scores. Ties go to the first best previous tag, as numpy's and torch's argmax do."""
    helper, T = g.onnx.helper, g.onnx.TensorProto
    start, trans, end = (np.asarray(tensors[k], dtype=np.float32) for k in ("crf.start", "crf.transitions", "crf.end"))
    em = g.op("Transpose", [emissions], perm=[1, 0, 2])  # (T, B, K)
    mask_t = g.op("Transpose", [mask], perm=[1, 0])  # (T, B)
    start_c, to_from = g.named(start, CRF[0]), g.named(trans.T.copy(), CRF[1])  # (K,), (K cur, K prev)
    batch = g.op("Gather", [g.op("Shape", [emissions]), g.const([0])])
    k = len(start)
    score0 = g.op("ConstantOfShape", [g.op("Concat", [batch, g.const([k])], axis=0)],
                  value=helper.make_tensor("zero", T.FLOAT, [1], [0.0]))  # (B, K)
    cond = g.const(np.array(True))

    # forward: score_t = max_prev(score_{t-1} + trans) + em_t where the sentence goes on; history_t = argmax
    b = Graph("fwd_")
    e = b.op("Gather", [em, "t"], axis=0)  # (B, K)
    candidates = b.op("Add", [b.op("Unsqueeze", ["score_in", b.const([1])]), to_from])  # (B, K cur, K prev)
    best = b.op("ReduceMax", [candidates, b.const([2])], keepdims=0)
    history = b.op("ArgMax", [candidates], "history", axis=2, keepdims=0)  # (B, K)
    new = b.op("Where", [b.op("Equal", ["t", b.const(np.int64(0))]), b.op("Add", [start_c, e]), b.op("Add", [best, e])])
    on = b.op("Unsqueeze", [b.op("Gather", [mask_t, "t"], axis=0), b.const([1])])  # (B, 1)
    score_out = b.op("Where", [on, new, "score_in"], "score_out")
    cond_out = b.op("Identity", ["cond_in"], "cond_out")
    body = b.subgraph("viterbi_forward", [
        helper.make_tensor_value_info("t", T.INT64, []), helper.make_tensor_value_info("cond_in", T.BOOL, []),
        helper.make_tensor_value_info("score_in", T.FLOAT, None)], [
        helper.make_tensor_value_info(cond_out, T.BOOL, []), helper.make_tensor_value_info(score_out, T.FLOAT, None),
        helper.make_tensor_value_info(history, T.INT64, None)])
    score, histories = g.op("Loop", [seq_len, cond, score0], "viterbi", outputs=2, body=body)  # (B, K), (T, B, K)
    final = g.op("Add", [score, g.named(end, CRF[2])])
    last = g.op("ArgMax", [final], axis=1, keepdims=0)  # (B,)
    best_score = g.op("ReduceMax", [final, g.const([1])], keepdims=0)  # (B,)

    # backward: from each sentence's own last token, follow history back to its first
    ends = g.op("Sub", ["lengths", g.const(1)])  # (B,)
    r = Graph("back_")
    t = r.op("Sub", [r.op("Sub", [seq_len, "s"]), r.const(np.int64(1))])  # T-1-s
    cur = r.op("Where", [r.op("Equal", [ends, t]), last, "cur_in"])  # (B,)
    hist = r.op("Gather", [histories, t], axis=0)  # (B, K)
    previous = r.op("Squeeze", [r.op("GatherElements", [hist, r.op("Unsqueeze", [cur, r.const([1])])], axis=1),
                                r.const([1])])
    cur_out = r.op("Where", [r.op("LessOrEqual", [t, ends]), previous, cur], "cur_out")
    path = r.op("Identity", [cur], "path")
    cond_out = r.op("Identity", ["cond_in"], "cond_out")
    body = r.subgraph("viterbi_backtrack", [
        helper.make_tensor_value_info("s", T.INT64, []), helper.make_tensor_value_info("cond_in", T.BOOL, []),
        helper.make_tensor_value_info("cur_in", T.INT64, None)], [
        helper.make_tensor_value_info(cond_out, T.BOOL, []), helper.make_tensor_value_info(cur_out, T.INT64, None),
        helper.make_tensor_value_info(path, T.INT64, None)])
    _, reversed_paths = g.op("Loop", [seq_len, cond, last], "backtrack", outputs=2, body=body)  # (T, B), last t first
    paths = g.op("Slice", [reversed_paths, g.const([-1]), g.const([np.iinfo(np.int64).min]), g.const([0]),
                           g.const([-1])])  # (T, B)
    tags = g.op("Where", [mask, g.op("Transpose", [paths], perm=[1, 0]), g.const(np.int64(-1))])  # (B, T)
    return tags, best_score
