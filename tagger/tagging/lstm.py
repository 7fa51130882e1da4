"""One BiLSTM layer in numpy, both directions stepping together: the tagger's word BiLSTM, its character
BiLSTM (tagger/tagging/engine.py) and a character language model's two LMs (tagger/tagging/charlm.py)."""
from __future__ import annotations

from typing import Mapping

import numpy as np


def joint_weights(tensors: Mapping[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One BiLSTM layer's weights for `bilstm`, both directions stacked: input (2, in_dim, 4*hidden), summed
    biases (2, 1, 4*hidden), recurrent (2, hidden, 4*hidden). The saved gate rows (i, f, g, o) are reordered
    (i, f, o, g) and the sigmoid gates' rows halved, so that one tanh gives all four gates:
    sigmoid(x) = (1 + tanh(x / 2)) / 2 (numpy's float32 tanh is vectorised; exp and a reciprocal cost 2x more)."""
    hidden = tensors[f"{prefix}.forward.weight_hh"].shape[1]
    order = np.concatenate([np.arange(2 * hidden), np.arange(3 * hidden, 4 * hidden), np.arange(2 * hidden, 3 * hidden)])
    scale = np.full(4 * hidden, 0.5, dtype=np.float32)
    scale[3 * hidden :] = 1.0

    def stacked(name: str) -> np.ndarray:  # (2, 4*hidden, ...)
        ws = [tensors[f"{prefix}.{d}.{name}"][order] for d in ("forward", "backward")]
        return np.stack([w * scale.reshape(-1, *[1] * (w.ndim - 1)) for w in ws])

    bias = (stacked("bias_ih") + stacked("bias_hh"))[:, None]
    return stacked("weight_ih").transpose(0, 2, 1), bias, stacked("weight_hh").transpose(0, 2, 1)


def bilstm(table: np.ndarray, rows: np.ndarray, mask: np.ndarray, w_hh: np.ndarray) -> np.ndarray:
    """Both directions of one BiLSTM layer, stepping together, table (2, R, 4*hidden) input
    projections with biases, rows (T, B) each token's row in it, mask (B, T). Returns (T, B, 2*hidden).
    The backward state is zeroed wherever the mask is off, so it starts afresh at each sentence's end.

    With every gate's pre-activation through one tanh (t_i, t_f, t_o, t_g; joint_weights halves the sigmoid
    gates' rows): c' = f c + i g = ((1 + t_f) c + (1 + t_i) t_g) / 2 and h' = (1 + t_o) tanh(c') / 2."""
    seq_len, batch = rows.shape
    hidden = w_hh.shape[1]
    on = mask.T[::-1, :, None].astype(table.dtype)  # (T, B, 1): backward step s reads t = T-1-s
    h = np.zeros((2, batch, hidden), dtype=table.dtype)
    c = np.zeros_like(h)
    out = np.empty((seq_len, batch, 2 * hidden), dtype=table.dtype)
    gates = np.empty((2, batch, 4 * hidden), dtype=table.dtype)
    recurrent, squashed = np.empty_like(gates), np.empty_like(c)
    i, f, o, g = (gates[:, :, k * hidden : (k + 1) * hidden] for k in range(4))
    for s in range(seq_len):
        np.take(table[0], rows[s], axis=0, out=gates[0], mode="clip")  # clip: no bounds check (rows are valid)
        np.take(table[1], rows[seq_len - 1 - s], axis=0, out=gates[1], mode="clip")
        gates += np.matmul(h, w_hh, out=recurrent)
        np.tanh(gates, out=gates)  # t_i, t_f, t_o, t_g  (2, B, 4*hidden)
        f += 1
        c *= f
        i += 1
        i *= g
        c += i
        c *= 0.5  # f c + i g
        c[1] *= on[s]
        np.tanh(c, out=squashed)
        o += 1
        np.multiply(o, squashed, out=h)
        h *= 0.5  # o tanh(c)
        out[s, :, :hidden] = h[0]
        out[seq_len - 1 - s, :, hidden:] = h[1]
    return out
