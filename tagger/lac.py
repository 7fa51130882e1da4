"""Baidu's LAC, the small lexical-analysis network that jieba ships (jieba/lac_small), read without Paddle.

LAC tags Chinese characters with word boundaries, parts of speech and PER / LOC / ORG / TIME, as Baidu
trained it on its own corpus: 128-dimensional character embeddings, two BiGRU layers of 128 a direction,
emissions for 57 tags and a CRF. Its weights are Paddle `save_persistables` files (a small header,
then float32 data), which `read_paddle_tensor` parses, and its network is small enough to run in numpy.

What tagger takes from it (tagger/commands/fitting.py):
- `--embeddings jieba`: its character embeddings, as pretrained vectors for a character corpus
  (`char_vectors`);
- `--context jieba` (config context = "lac"): per token, its top BiGRU layer (256 numbers) and its 57
  emission scores (`ContextNetwork.features`), a frozen contextual encoder whose output the BiLSTM reads
  beside the other inputs. No transformer: a character costs about 0.5 M multiply-adds.
The tensors travel in the model's safetensors as `context.*` (tagger/tensors.py) and its characters in
vocab.json, so a model needs no jieba to tag. Training computes the features of its sentences once (the
encoder never changes); tagging computes them per batch.
"""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tagger.config import JIEBA
from tagger.errors import InputError

OOV = "OOV"
FEATURES = 2 * 128 + 57  # per character: the top BiGRU layer, both directions, then the emissions
# tensor names (tagger/tensors.py's context.*) -> the Paddle files of jieba/lac_small/model_baseline
PADDLE_FILES = {"embedding": "word_emb", "emissions.weight": "fc_4.w_0", "emissions.bias": "fc_4.b_0",
                **{f"{layer}.{d}.{part}": f"{kind}_{2 * layer + k}.{p}_0"
                   for layer in (0, 1) for k, d in enumerate(("forward", "backward"))
                   for part, kind, p in (("input.weight", "fc", "w"), ("input.bias", "fc", "b"),
                                         ("weight", "gru", "w"), ("bias", "gru", "b"))}}


def shapes(rows: int, hidden: int = 128, tags: int = 57) -> dict[str, tuple[int, ...]]:
    """The context encoder's tensors (tagger/tensors.py), for an embedding of `rows` characters."""
    out = {"context.embedding": (rows, 128), "context.emissions.weight": (2 * hidden, tags),
           "context.emissions.bias": (tags,)}
    for layer, in_dim in ((0, 128), (1, 2 * hidden)):
        for d in ("forward", "backward"):
            p = f"context.{layer}.{d}"
            out |= {f"{p}.input.weight": (in_dim, 3 * hidden), f"{p}.input.bias": (3 * hidden,),
                    f"{p}.weight": (hidden, 3 * hidden), f"{p}.bias": (3 * hidden,)}
    return out


def names_jieba(ref: str | Path) -> bool:
    """Whether `--embeddings REF` / `--context REF` means the installed jieba's LAC (no file of that name)."""
    return str(ref) == JIEBA and not Path(ref).exists()


def lac_dir(ref: str | Path = JIEBA) -> Path:
    """The lac_small directory REF names: `jieba` for the installed jieba's, or a path to one. InputError
    when jieba is missing or the directory lacks LAC's files."""
    if names_jieba(ref):
        spec = importlib.util.find_spec("jieba")
        if spec is None or spec.origin is None:
            raise InputError("jieba's LAC model needs jieba installed: pip install jieba (or "
                             "pip install 'bilstm-tagger[chinese]')")
        path = Path(spec.origin).parent / "lac_small"
    else:
        path = Path(ref)
    missing = [f for f in ("word.dic", *(f"model_baseline/{n}" for n in PADDLE_FILES.values()))
               if not (path / f).is_file()]
    if missing:
        raise InputError(f"not a LAC model directory (lac_small): it lacks {missing[0]}", path=str(path))
    return path


def read_paddle_tensor(path: str | Path) -> np.ndarray:
    """A float32 tensor saved by Paddle: uint32 version, uint64 count of LoD levels and each level's size and
    data, uint32 version, int32 size of a TensorDesc protobuf (field 1 the data type, 2 the dims), the
    protobuf, then the raw data."""
    data = Path(path).read_bytes()
    try:
        (levels,) = struct.unpack_from("<Q", data, 4)
        at = 12
        for _ in range(levels):
            (size,) = struct.unpack_from("<Q", data, at)
            at += 8 + size
        (size,) = struct.unpack_from("<i", data, at + 4)
        at += 8
        dtype, dims = _tensor_desc(data[at : at + size])
        at += size
        if dtype != 5:  # FP32 in Paddle's VarType
            raise ValueError(f"data type {dtype}, not float32")
        return np.frombuffer(data, dtype="<f4", offset=at, count=int(np.prod(dims))).reshape(dims).copy()
    except (struct.error, ValueError, IndexError) as e:
        raise InputError(f"not a Paddle float32 tensor file: {e}", path=str(path)) from None


def _tensor_desc(buf: bytes) -> tuple[int, list[int]]:
    """(data_type, dims) of a serialised TensorDesc (varint fields 1 and 2; dims not packed)."""
    dtype, dims, at = -1, [], 0
    while at < len(buf):
        key, at = _varint(buf, at)
        value, at = _varint(buf, at)
        if key >> 3 == 1:
            dtype = value
        elif key >> 3 == 2:
            dims.append(value)
    return dtype, dims


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def normalise(token: str) -> str:
    """LAC's input form: full-width ASCII (ＡＢ，！) as half-width, the ideographic space as a space."""
    return "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else " " if c == "\u3000" else c
                   for c in token)


def from_jieba(directory: str | Path = JIEBA) -> tuple[list[str], dict[str, np.ndarray]]:
    """LAC's characters (row i of its embedding is chars[i]) and its tensors, named `context.*` as
    tagger/tensors.py lists them, from a lac_small directory (`lac_dir`: by default the installed jieba's).
    The embedding is rounded to float16, as a model saves it, so training sees what tagging will."""
    directory = lac_dir(directory)
    chars: dict[int, str] = {}
    for line in (directory / "word.dic").read_text(encoding="utf-8").split("\n"):  # U+2028 is a character here
        number, _, char = line.partition("\t")
        if number:
            chars[int(number)] = char
    tensors = {f"context.{name}": read_paddle_tensor(directory / "model_baseline" / file)
               for name, file in PADDLE_FILES.items()}
    tensors = {k: v.reshape(-1) if k.endswith("bias") else v for k, v in tensors.items()}
    tensors["context.embedding"] = tensors["context.embedding"].astype(np.float16).astype(np.float32)
    return [chars.get(i, "") for i in range(len(tensors["context.embedding"]))], tensors


def char_vectors(chars: Sequence[str], embedding: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(characters, (n, 128) vectors): LAC's embedding rows as pretrained vectors (`--embeddings jieba`),
    full-width forms of ASCII given their half-width row (LAC reads them so), its OOV rows left out."""
    index = set(chars)
    keep = [i for i, c in enumerate(chars) if len(c) == 1 and not c.isspace()]
    words = [chars[i] for i in keep]
    wide = [(chr(ord(c) + 0xFEE0), i) for c, i in zip(words, keep) if 0x21 <= ord(c) <= 0x7E]
    wide = [(w, i) for w, i in wide if w not in index]
    return words + [w for w, _ in wide], embedding[keep + [i for _, i in wide]]


def token_ids(index: Mapping[str, int], tokens: Sequence[str]) -> list[int]:
    """LAC's row of each token, OOV's for tokens it lacks; index maps LAC's characters to rows."""
    get, oov = index.get, index[OOV]
    return [get(normalise(t), oov) for t in tokens]


class ContextNetwork:
    """LAC's forward pass over batches of token rows, from tensors named `context.*` (tagger/tensors.py)."""

    ROWS = 64  # sentences a pass: a GRU step's arrays then stay in cache (1.3x the speed of 256 here)

    def __init__(self, tensors: Mapping[str, np.ndarray]):
        t = {k.removeprefix("context."): np.asarray(v, dtype=np.float32) for k, v in tensors.items()
             if k.startswith("context.")}
        self.embedding, self.emit = t["embedding"], (t["emissions.weight"], t["emissions.bias"])
        self.layers = [layer_weights(t, layer) for layer in (0, 1)]

    def features(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, T, FEATURES) float32 from ids (B, T) LAC rows and mask (B, T): per token, the top BiGRU
        layer (forward ; backward) and the emissions; zeros on padding."""
        if len(ids) > self.ROWS:
            return np.concatenate([self.features(ids[k : k + self.ROWS], mask[k : k + self.ROWS])
                                   for k in range(0, len(ids), self.ROWS)])
        return self._features(ids, mask)

    def _features(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """`features` of a few sentences; the first layer projects each distinct character once."""
        distinct, inverse = np.unique(ids, return_inverse=True)
        x, rows = self.embedding[distinct], inverse.reshape(ids.shape).T  # (U, 128); (T, B) rows of x
        for w_in, bias, w_gates, w_candidate in self.layers:
            h = bigru(x @ w_in + bias, rows, mask, w_gates, w_candidate)  # (T, B, 2H)
            x, rows = h.reshape(-1, h.shape[2]), np.arange(h.shape[0] * h.shape[1]).reshape(h.shape[:2])
        h = h.transpose(1, 0, 2)  # (B, T, 2H)
        w, b = self.emit
        out = np.concatenate([h, h @ w + b], 2)  # (B, T, FEATURES)
        out[~mask] = 0
        return out


def layer_weights(t: Mapping[str, np.ndarray], layer: int) -> tuple[np.ndarray, ...]:
    """One BiGRU layer's weights for `bigru`, both directions stacked: input (2, in, 3H), summed biases
    (2, 1, 3H), gates (2, H, 2H), candidate (2, H, H), the gates' columns halved so that one tanh gives the
    sigmoid: sigmoid(z) = (1 + tanh(z / 2)) / 2. Paddle keeps a GRU's (H, 3H) weight as two blocks laid end
    to end, not as columns: the update and reset gates' (H, 2H), then the candidate's (H, H)."""
    hidden = t[f"{layer}.forward.weight"].shape[0]
    half = np.ones(3 * hidden, dtype=np.float32)
    half[: 2 * hidden] = 0.5
    parts = []
    for d in ("forward", "backward"):
        w = t[f"{layer}.{d}.weight"].reshape(-1)
        bias = t[f"{layer}.{d}.input.bias"] + t[f"{layer}.{d}.bias"]
        parts.append((t[f"{layer}.{d}.input.weight"] * half, bias * half,
                      w[: 2 * hidden * hidden].reshape(hidden, 2 * hidden) * 0.5,
                      w[2 * hidden * hidden :].reshape(hidden, hidden)))
    w_in, bias, w_gates, w_candidate = (np.stack(p) for p in zip(*parts))
    return w_in, bias[:, None], w_gates, w_candidate


def bigru(table: np.ndarray, rows: np.ndarray, mask: np.ndarray, w_gates: np.ndarray,
          w_candidate: np.ndarray) -> np.ndarray:
    """Both directions of a Paddle GRU layer (origin_mode off), stepping together: table (2, R, 3H) input
    projections with biases, rows (T, B) each token's row in it, mask (B, T). Returns (T, B, 2H).
        u, r = sigmoid(x_u + h W_u), sigmoid(x_r + h W_r);  c = tanh(x_c + (r h) W_c);  h' = h + u (c - h)
    The backward state is zeroed wherever the mask is off, so it starts afresh at each sentence's end."""
    seq_len, batch = rows.shape
    hidden = w_candidate.shape[1]
    on = mask.T[::-1, :, None].astype(table.dtype)  # (T, B, 1): backward step s reads t = T-1-s
    h = np.zeros((2, batch, hidden), dtype=table.dtype)
    out = np.empty((seq_len, batch, 2 * hidden), dtype=table.dtype)
    x = np.empty((2, batch, 3 * hidden), dtype=table.dtype)
    recurrent = np.empty((2, batch, 2 * hidden), dtype=table.dtype)
    reset_h, candidate_h = np.empty_like(h), np.empty_like(h)
    gates, candidate = x[:, :, : 2 * hidden], x[:, :, 2 * hidden :]
    update, reset = gates[:, :, :hidden], gates[:, :, hidden:]
    for s in range(seq_len):
        np.take(table[0], rows[s], axis=0, out=x[0], mode="clip")  # clip: no bounds check (rows are valid)
        np.take(table[1], rows[seq_len - 1 - s], axis=0, out=x[1], mode="clip")
        gates += np.matmul(h, w_gates, out=recurrent)
        np.tanh(gates, out=gates)
        gates += 1
        gates *= 0.5  # u, r
        np.multiply(reset, h, out=reset_h)
        candidate += np.matmul(reset_h, w_candidate, out=candidate_h)
        np.tanh(candidate, out=candidate)
        candidate -= h
        candidate *= update
        h += candidate  # h + u (c - h)
        h[1] *= on[s]
        out[s, :, :hidden] = h[0]
        out[seq_len - 1 - s, :, hidden:] = h[1]
    return out
