"""The tagging engine: the trained network's forward pass and Viterbi in numpy, from a model's tensors.

The one inference path: `Tagger` (tagger/tagging/tagger.py) tags with it, so `tagger predict`, `tagger evaluate` and
training's dev scores (built from the live weights, tagger/training/model.py) run the same code. It never imports
torch: `import torch` alone takes 1.4-1.8 s on a 2-core machine, most of a cold start, and a process
without torch is half the size. It reads the tensors tagger/tensors.py names, never torch's keys.

Its matrix products are small (a BiLSTM step is 256 x 100 by 100 x 400): OpenBLAS's threads cost more
than they give, so `Tagger` limits them to one around tagging (threadpoolctl).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from tagger.config import Config
from tagger.encode import Batch
from tagger.tagging.charlm import context_network
from tagger.tagging.lstm import bilstm, joint_weights
from tagger.tagging.viterbi import viterbi


class Engine:
    """The network's tagging pass (no dropout) over numpy arrays; `tensors` as tagger/tensors.py names them."""

    def __init__(self, config: Config, tensors: Mapping[str, np.ndarray]):
        t, config = tensors, config.resolved()
        self.word, self.frozen, self.casing = t["words.trained"], t["words.frozen"], t["casing"]
        self.features = [t[f"features.{i}"] for i in range(len(config.features))]
        self.char_encoder = config.char_encoder
        self.bigrams = t["bigrams"] if config.bigrams == "on" else None
        self.lexicon = config.lexicon
        self.context = None if config.context == "none" else context_network(config.context, t)
        if config.char_encoder != "none":
            self.char_embed = t["chars.embedding"]
        if config.char_encoder == "cnn":
            self.char_window = (t["chars.cnn.weight"].T, t["chars.cnn.bias"])  # (kernel*dim, filters)
            self.char_kernel = config.char_kernel
        elif config.char_encoder == "lstm":
            self.char_lstm = joint_weights(t, "chars.lstm.0")
        self.lstm = [joint_weights(t, f"lstm.{layer}") for layer in range(config.num_layers)]
        self.emit = (t["emissions.weight"].T, t["emissions.bias"])  # (2*hidden, num_tags)
        self.crf = (t["crf.start"], t["crf.transitions"], t["crf.end"])

    def tag(self, batch: Batch) -> list[list[int]]:
        """Best tag ids of each sentence of the batch."""
        return viterbi(self.emissions(batch), batch.mask, *self.crf)

    def emissions(self, batch: Batch) -> np.ndarray:
        """(B, T, num_tags) scores; the first layer projects each distinct word of the batch once."""
        typed = [self.embed_words(batch.type_words), self.casing[batch.type_casing]]
        if self.char_encoder != "none":
            typed.append(self.spell(batch.spellings, batch.spelling_lengths))
        x, rows = np.concatenate(typed, 1), batch.types.T  # (U, D); (T, B) each token's row of x
        per_token = self.per_token(batch)
        if per_token:  # bigrams, lexicon features, feature columns vary per token: project every token
            per_token = [x[batch.types], *per_token]  # (B, T, D) each
            x, rows = np.concatenate(per_token, 2).transpose(1, 0, 2).reshape(rows.size, -1), _rows(rows.shape)
        for w_ih, bias, w_hh in self.lstm:
            h = bilstm(x @ w_ih + bias, rows, batch.mask, w_hh)  # (T, B, 2*hidden)
            x, rows = h.reshape(-1, h.shape[2]), _rows(h.shape[:2])
        w, b = self.emit
        return h.transpose(1, 0, 2) @ w + b  # (B, T, num_tags)

    def per_token(self, batch: Batch) -> list[np.ndarray]:
        """The inputs that depend on a token's neighbours or columns, in the input's order: (B, T, D) each."""
        out = [] if self.bigrams is None else [self.bigrams[batch.bigrams]]
        if self.lexicon:
            out.append(batch.lexicon)
        if self.context is not None:  # training's sentences bring theirs, computed once
            features = batch.context_features
            out.append(self.context.batch_features(batch) if features is None else features)
        return out + [emb[batch.features[:, i]] for i, emb in enumerate(self.features)]

    def embed_words(self, words: np.ndarray) -> np.ndarray:
        """Rows of the trained embedding, or of the frozen pretrained one for ids past it."""
        n = len(self.word)
        own = self.word[np.minimum(words, n - 1)]
        if not len(self.frozen):
            return own
        return np.where((words >= n)[:, None], self.frozen[np.maximum(words - n, 0)], own)

    def spell(self, spellings: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(U, out_dim) character encodings of the spellings laid end to end."""
        x = self.char_embed[spellings]  # (N, dim)
        if self.char_encoder == "lstm":
            return self._spell_lstm(x, lengths)
        gap = self.char_kernel // 2  # zero vectors before, between and after words, as in model.CharCNN
        at = np.arange(len(spellings)) + gap * (np.repeat(np.arange(len(lengths)), lengths) + 1)
        laid = np.zeros((len(spellings) + gap * (len(lengths) + 1), x.shape[1]), dtype=x.dtype)
        laid[at] = x
        windows = np.concatenate([laid[at + (i - gap)] for i in range(self.char_kernel)], 1)  # (N, kernel*dim)
        w, b = self.char_window
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return np.maximum.reduceat(windows @ w + b, starts, axis=0)  # (U, filters)

    def _spell_lstm(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Final states of the character BiLSTM: forward at each word's last character, backward at its first."""
        w_ih, bias, w_hh = self.char_lstm
        longest = int(lengths.max())
        mask = np.arange(longest) < lengths[:, None]  # (U, L)
        rows = np.zeros(mask.shape, dtype=np.int64)
        rows[mask] = np.arange(len(x))
        h = bilstm(x @ w_ih + bias, rows.T, mask, w_hh)  # (L, U, 2*hidden)
        hidden = w_hh.shape[1]
        words = np.arange(len(lengths))
        return np.concatenate([h[lengths - 1, words, :hidden], h[0, :, hidden:]], 1)


def _rows(shape: tuple[int, int]) -> np.ndarray:
    """(T, B) row numbers of a time-major (T, B, D) array flattened to (T*B, D)."""
    return np.arange(shape[0] * shape[1]).reshape(shape)
