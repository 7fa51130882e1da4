"""Batched Viterbi decoding in numpy, shared by both tagging engines (torch's and tagger.lite's).

pytorch-crf's `decode` backtracks each sentence in a Python loop; this one is vectorised over the batch,
backtracking included, and breaks ties as it does (first maximum), so the paths are equal (tested).
numpy rather than torch: its small array operations cost a few microseconds less each, and it lets a
process tag without importing torch.
"""
from __future__ import annotations

import numpy as np


def viterbi(emissions: np.ndarray, mask: np.ndarray, start: np.ndarray, trans: np.ndarray, end: np.ndarray
            ) -> list[list[int]]:
    """Best tag path of every sentence. emissions (B, T, K), mask (B, T) bool with mask[:, 0] all on,
    start (K,), trans (K, K) from row tag to column tag, end (K,); returns the unpadded paths."""
    batch, seq_len, _ = emissions.shape
    lengths = mask.sum(1)  # (B,)
    score = start + emissions[:, 0]  # (B, K)
    history = []
    for t in range(1, seq_len):
        candidates = score[:, :, None] + trans  # (B, K, K): previous tag x current tag
        idx = candidates.argmax(1)  # (B, K) best previous tag of each current tag
        history.append(idx)
        best = np.take_along_axis(candidates, idx[:, None, :], 1)[:, 0]  # (B, K)
        score = np.where(mask[:, t : t + 1], best + emissions[:, t], score)
    last = (score + end).argmax(1)  # (B,)
    paths = np.empty((batch, seq_len), dtype=np.int64)
    rows = np.arange(batch)
    cur = last
    for t in range(seq_len - 1, -1, -1):
        cur = np.where(lengths - 1 == t, last, cur)  # a sentence's backtrack starts at its own end
        paths[:, t] = cur
        if t:
            cur = np.where(t <= lengths - 1, history[t - 1][rows, cur], cur)
    return [p[:n] for p, n in zip(paths.tolist(), lengths.tolist())]
