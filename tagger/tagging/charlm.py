"""A character language model's states as contextual embeddings of tokens (config context = "lm"), in numpy.

The LM (`tagger lm`, tagger/training/lm.py) is frozen: a tagger keeps its embedding and its one BiLSTM
layer as `context.*` (tagger/tensors.py) and reads, for each token, the forward LM's state on the separator
after the token beside the backward LM's state on the separator before it (tagger/lmtext.py), 2 x hidden
numbers, after Akbik et al. 2018. The two LMs run as the two directions of one `bilstm` pass over each
sentence's characters: its backward half starts afresh at each sentence's end, as the backward LM reads a
sentence alone. Every character's input projection is looked up in a table made once (the LM has a few
hundred characters), so a character costs one (hidden x 4 hidden) product a direction.
"""
from __future__ import annotations

from typing import Mapping, Union

import numpy as np

from tagger import lac
from tagger.encode import Batch
from tagger.tagging.lstm import bilstm, joint_weights


class CharLMNetwork:
    """The frozen LM's forward pass over a batch's sentences, from tensors named `context.*`."""

    ROWS = 128  # sentences a pass: enough rows for the (rows x hidden) products, and bounded memory

    def __init__(self, tensors: Mapping[str, np.ndarray]):
        t = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items() if k.startswith("context.")}
        w_ih, bias, self.w_hh = joint_weights(t, "context.0")
        self.table = t["context.embedding"] @ w_ih + bias  # (2, num_chars, 4*hidden)
        self.hidden = self.w_hh.shape[1]

    def batch_features(self, batch: Batch) -> np.ndarray:
        """(B, T, 2*hidden) float32: each token's forward state after it ; backward state before it; zeros
        on padding."""
        out = np.zeros((*batch.mask.shape, 2 * self.hidden), dtype=np.float32)
        for k in range(0, len(batch.mask), self.ROWS):
            part = slice(k, k + self.ROWS)
            chars, char_mask = batch.context[part], batch.context_mask[part]
            longest = int(char_mask.sum(1).max())
            h = bilstm(self.table, chars[:, :longest].T, char_mask[:, :longest], self.w_hh)  # (C, b, 2H)
            rows = np.arange(h.shape[1])[:, None]
            ahead = h[batch.context_after[part], rows, : self.hidden]  # (b, T, H)
            behind = h[batch.context_before[part], rows, self.hidden :]
            out[part] = np.concatenate([ahead, behind], 2)
        out[~batch.mask] = 0
        return out


class LACNetwork:
    """LAC (tagger/lac.py) over a batch's tokens: each token is one character, a row of LAC's."""

    def __init__(self, tensors: Mapping[str, np.ndarray]):
        self.network = lac.ContextNetwork(tensors)

    def batch_features(self, batch: Batch) -> np.ndarray:
        """(B, T, lac.FEATURES) float32, zeros on padding."""
        return self.network.features(batch.context, batch.mask)


ContextEncoder = Union[LACNetwork, CharLMNetwork]  # either has batch_features(batch) -> (B, T, size)


def context_network(kind: str, tensors: Mapping[str, np.ndarray]) -> ContextEncoder:
    """The frozen context encoder of a config's `context` ("lac" or "lm"), from the model's tensors."""
    return CharLMNetwork(tensors) if kind == "lm" else LACNetwork(tensors)
