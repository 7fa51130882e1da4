"""Exact probabilities from the CRF, in numpy: token marginals, log Z, entity (span) probabilities, k-best
paths with their probabilities, and temperature scaling (fitted in tagger/tagging/calibration.py).

The CRF defines a distribution over whole tag sequences, P(y | x) = exp(score(y) - log Z), so these are
exact answers, not softmaxes over Viterbi scores: one forward-backward pass gives every token marginal,
and an entity's probability is the forward score at its left edge, the scores of the tag paths that spell
that entity, and the backward score at its right edge. All of it is batched over sentences, in float64 and
log space (stable for long sentences and large scores), and works in the model's constrained transition
space: a move scored tagger.tensors.FORBIDDEN gets probability 0 (its exp underflows), and scores with no
forbidden entries (an unconstrained CRF) are just as right.

Inputs are what the tagging engine has: emissions (B, T, K), mask (B, T) bool, left-aligned with mask[:, 0]
on, start (K,), trans (K, K) from row tag to column tag, end (K,). numpy only: tagging never imports torch.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from corpora import schemes
from tagger.tensors import FORBIDDEN

Span = tuple[str, int, int]  # (label, start, end) with end exclusive, as corpora.schemes.spans gives them
NEG_INF = -np.inf


@dataclass
class Lattice:
    """One forward-backward pass over a batch, and the (temperature-scaled, float64) scores it used.

    log_alpha[b, t, k]: log of the summed scores of every prefix y_0..y_t with y_t = k (emission t included);
    log_beta[b, t, k]: log of the summed scores of every suffix after y_t = k (end score included);
    both -inf on padding. marginals[b, t, k] = P(y_t = k | x), 0 on padding."""

    log_alpha: np.ndarray  # (B, T, K)
    log_beta: np.ndarray   # (B, T, K)
    log_z: np.ndarray      # (B,)
    marginals: np.ndarray  # (B, T, K)
    emissions: np.ndarray  # (B, T, K) float64, divided by the temperature
    mask: np.ndarray       # (B, T) bool
    start: np.ndarray      # (K,)
    trans: np.ndarray      # (K, K)
    end: np.ndarray        # (K,)


def scale(emissions: np.ndarray, start: np.ndarray, trans: np.ndarray, end: np.ndarray, temperature: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scores as float64, divided by `temperature` (1: unchanged). Forbidden moves stay FORBIDDEN: a
    temperature softens the model's preferences, not the tagging scheme's rules."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a positive number, not {temperature!r}")

    def cool(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x <= FORBIDDEN, FORBIDDEN, x / value)

    return np.asarray(emissions, dtype=np.float64) / value, cool(start), cool(trans), cool(end)


def forward_backward(emissions: np.ndarray, mask: np.ndarray, start: np.ndarray, trans: np.ndarray,
                     end: np.ndarray, temperature: float = 1.0) -> Lattice:
    """Token marginals and log Z of every sentence, exact (see Lattice for what it holds).

    Works with the batch as the last axis, as tagger.tagging.viterbi does: each step's log-sum-exp over the
    previous tag is then a reduction over the first axis of a (K, K, B) array, vectorised over the batch."""
    em, start, trans, end = scale(emissions, start, trans, end, temperature)
    mask = _checked(mask, em.shape)
    last = mask.sum(1) - 1  # (B,)
    em_t = np.ascontiguousarray(em.transpose(1, 2, 0))  # (T, K, B)
    alpha = _forward(em_t, start, trans)  # (T, K, B)
    beta = _backward(em_t, last, trans, end)  # (T, K, B)
    rows = np.arange(em.shape[0])
    log_z = _logsumexp(alpha[last, :, rows] + end, 1)  # (B,)
    off = ~mask.T[:, None, :]  # (T, 1, B) padding
    alpha[np.broadcast_to(off, alpha.shape)] = NEG_INF
    beta[np.broadcast_to(off, beta.shape)] = NEG_INF
    log_alpha = np.ascontiguousarray(alpha.transpose(2, 0, 1))  # (B, T, K)
    log_beta = np.ascontiguousarray(beta.transpose(2, 0, 1))  # (B, T, K)
    marginals = np.exp(log_alpha + log_beta - log_z[:, None, None])  # (B, T, K), exp(-inf) = 0 on padding
    return Lattice(log_alpha, log_beta, log_z, marginals, em, mask, start, trans, end)


def _checked(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The mask as bool (B, T); ValueError unless it fits the emissions and every sentence has a token."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape[:2]) or not mask[:, 0].all():
        raise ValueError(f"mask {mask.shape} must be (batch, seq_len) of emissions {tuple(shape)} with mask[:, 0] on")
    return mask


def _logsumexp(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    """log(sum(exp(x))) over `axis`; -inf where every term is -inf (not nan)."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(x - top).sum(axis=axis)) + np.squeeze(top, axis=axis)


def _forward(em: np.ndarray, start: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """log alpha (T, K, B) from emissions (T, K, B); steps past a sentence's end hold values nobody reads."""
    alpha = np.empty_like(em)
    alpha[0] = start[:, None] + em[0]
    step = trans[:, :, None]  # (K previous, K current, 1)
    for t in range(1, em.shape[0]):
        alpha[t] = _logsumexp(alpha[t - 1][:, None, :] + step, 0) + em[t]  # (K, B)
    return alpha


def _backward(em: np.ndarray, last: np.ndarray, trans: np.ndarray, end: np.ndarray) -> np.ndarray:
    """log beta (T, K, B): each sentence's suffix scores, starting from `end` at its own last token."""
    beta = np.empty_like(em)
    beta[-1] = end[:, None]
    step = np.ascontiguousarray(trans.T)[:, :, None]  # (K next, K current, 1)
    for t in range(em.shape[0] - 2, -1, -1):
        nxt = _logsumexp((em[t + 1] + beta[t + 1])[:, None, :] + step, 0)  # (K, B)
        beta[t] = np.where(t >= last, end[:, None], nxt)
    return beta


def log_partition(emissions: np.ndarray, mask: np.ndarray, start: np.ndarray, trans: np.ndarray,
                  end: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """log Z of every sentence (B,) by the forward pass alone (what kbest needs)."""
    em, start, trans, end = scale(emissions, start, trans, end, temperature)
    last = _checked(mask, em.shape).sum(1) - 1
    alpha = _forward(np.ascontiguousarray(em.transpose(1, 2, 0)), start, trans)  # (T, K, B)
    return _logsumexp(alpha[last, :, np.arange(em.shape[0])] + end, 1)


# -- entities ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _span_rules(tags: tuple[str, ...], scheme: str
                ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """How tag pairs make entities, read off corpora.schemes.spans itself (so the lenient, conlleval-style
    reading of invalid sequences is the same): per label, which tags carry it (K,); and as additive log masks
    (K, K), 0 or -inf: `opens` (tag b starts an entity after tag a), `goes_on` (b continues a's entity),
    `closes` (the entity ending with tag a ends before tag b). spans() decides each of these from the two
    neighbouring tags alone, so an entity's probability factorises over the lattice."""
    k = len(tags)
    labels = [schemes.split_tag(tag)[1] for tag in tags]
    opens, goes_on, closes = (np.full((k, k), NEG_INF) for _ in range(3))
    for a, b in np.ndindex(k, k):
        found = schemes.spans([tags[a], tags[b]], scheme)
        if labels[b] is not None and any(s == 1 for _, s, _ in found):
            opens[a, b] = 0.0
        if labels[a] is not None and found[:1] == [(labels[a], 0, 2)]:
            goes_on[a, b] = 0.0
        if labels[a] is not None and found[:1] == [(labels[a], 0, 1)]:
            closes[a, b] = 0.0
    carries = {label: np.array([x == label for x in labels]) for label in labels if label is not None}
    return carries, opens, goes_on, closes


def span_probabilities(lattice: Lattice, spans: Sequence[Sequence[Span]], tags: Sequence[str], scheme: str
                       ) -> list[list[float]]:
    """P(exactly this entity | x) for every (label, start, end) asked of each sentence of the batch.

    The probability that spans(tag sequence, scheme) holds (label, s, e): the summed probability of every
    tag sequence that opens an entity of `label` at s (given the tag at s-1), continues it to e-1 and closes
    it there (given the tag at e). Computed for all entities of the batch at once: from alpha at s-1, a
    forward pass restricted to the entity's tags over s..e-1, and beta at e. Any span may be asked about,
    on the Viterbi path or not. tags: the K tag names in the model's scheme (e.g. vocab.tags.items)."""
    if scheme is None:
        raise ValueError("entity probabilities need a tagging scheme; these tags have none")
    scheme = schemes.normalize_scheme(scheme)
    carries, opens, goes_on, closes = _span_rules(tuple(tags), scheme)
    flat = [(b, *span) for b, asked in enumerate(spans) for span in asked]
    if len(spans) != len(lattice.log_z):
        raise ValueError(f"spans for {len(spans)} sentences given for a batch of {len(lattice.log_z)}")
    if not flat:
        return [[] for _ in spans]
    lengths = lattice.mask.sum(1)
    for b, label, s, e in flat:
        if label not in carries:
            raise ValueError(f"no tag of the model has the label {label!r}")
        if not 0 <= s < e <= lengths[b]:
            raise ValueError(f"span ({label!r}, {s}, {e}) is outside sentence {b} of {lengths[b]} tokens")
    sent = np.array([f[0] for f in flat])  # (N,)
    first = np.array([f[2] for f in flat])  # (N,)
    stop = np.array([f[3] for f in flat])  # (N,)
    labelled = np.stack([carries[f[1]] for f in flat])  # (N, K)
    log_p = _entity_scores(lattice, sent, first, stop, labelled, opens, goes_on, closes) - lattice.log_z[sent]
    probs = iter(np.exp(log_p).tolist())
    return [[next(probs) for _ in asked] for asked in spans]


def _entity_scores(lat: Lattice, sent: np.ndarray, first: np.ndarray, stop: np.ndarray, labelled: np.ndarray,
                   opens: np.ndarray, goes_on: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """log of the summed scores of the sequences holding each entity (N,); N entities, one per row."""
    t_max = lat.emissions.shape[1] - 1
    em = lat.emissions[sent]  # (N, T, K)
    rows = np.arange(len(sent))
    before = lat.log_alpha[sent, np.maximum(first - 1, 0)]  # (N, K) alpha at s-1
    entered = _logsumexp(before[:, :, None] + (lat.trans + opens)[None], 1)  # (N, K)
    v = np.where(first[:, None] == 0, lat.start, entered) + em[rows, first]
    v = np.where(labelled, v, NEG_INF)  # (N, K): the entity's first token, of its label
    inside = (lat.trans + goes_on)[None]  # (1, K, K)
    for j in range(1, int((stop - first).max())):
        at = np.minimum(first + j, t_max)
        nxt = _logsumexp(v[:, :, None] + inside, 1) + em[rows, at]  # (N, K)
        v = np.where((j < stop - first)[:, None], nxt, v)
    after = np.minimum(stop, t_max)
    behind = em[rows, after] + lat.log_beta[sent, after]  # (N, K) the tag at e and everything after it
    closed = _logsumexp(v[:, :, None] + (lat.trans + closes)[None] + behind[:, None, :], (1, 2))  # (N,)
    at_end = stop == lat.mask.sum(1)[sent]
    return np.where(at_end, _logsumexp(v + lat.end, 1), closed)


# -- k best paths -----------------------------------------------------------------------------------------


def kbest(emissions: np.ndarray, mask: np.ndarray, start: np.ndarray, trans: np.ndarray, end: np.ndarray,
          k: int, temperature: float = 1.0) -> list[list[tuple[list[int], float]]]:
    """The k highest-scoring distinct tag paths of every sentence, best first, each with its exact
    probability exp(score - log Z) (not renormalised over the k). Fewer than k where the sentence has fewer
    paths the scheme allows. The first path is tagger.tagging.viterbi.viterbi's, ties broken alike.

    The search runs on the scores as given (the same float arithmetic as viterbi, so the same first path;
    a temperature would not reorder paths); each path's probability is then scored in float64 at
    `temperature`. Per tag and step it keeps the k best partial paths, candidates ordered previous tag
    first, then rank, and a stable sort: the first maximum is viterbi's first best previous tag."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, not {k!r}")
    mask = _checked(mask, np.shape(emissions))
    order, found = _kbest_search(emissions, mask, start, trans, end, k)  # (B, k, T), (B, k)
    em64, s64, t64, e64 = scale(emissions, start, trans, end, temperature)
    log_z = log_partition(emissions, mask, start, trans, end, temperature)
    lengths = mask.sum(1).tolist()
    out = []
    for b, n in enumerate(lengths):
        paths = order[b, :, :n]  # (k, n)
        steps = np.arange(n)
        moves = [s64[paths[:, 0]], e64[paths[:, -1]], *(t64[paths[:, :-1], paths[:, 1:]].T)]
        allowed = found[b] & np.all(np.stack(moves) > FORBIDDEN, 0)  # (k,)
        score = em64[b, steps, paths].sum(1) + sum(moves)  # (k,)
        probs = np.exp(score - log_z[b])
        out.append([(p, q) for p, q, ok in zip(paths.tolist(), probs.tolist(), allowed.tolist()) if ok])
    return out


def _kbest_search(emissions: np.ndarray, mask: np.ndarray, start: np.ndarray, trans: np.ndarray,
                  end: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best paths (B, k, T) (padding: the last tag repeated) and whether each exists (B, k)."""
    batch, seq_len, num_tags = emissions.shape
    dtype = np.result_type(emissions, start, trans, end)
    em = emissions.transpose(1, 0, 2)  # (T, B, K)
    score = np.full((batch, num_tags, k), NEG_INF, dtype=dtype)  # (B, K current, k ranks)
    score[:, :, 0] = start[None, :] + em[0]
    stay = np.broadcast_to(np.arange(num_tags * k).reshape(num_tags, k), score.shape)  # a finished sentence
    to_from = np.ascontiguousarray(trans.T)[None, :, :, None]  # (1, Kc, Kp, 1)
    pointers = []  # per step t >= 1: (B, K, k) index into the previous step's (K * k) (tag, rank) pairs
    for t in range(1, seq_len):
        cand = to_from + score[:, None, :, :]  # (B, Kc, Kp, k), made in this layout: no transposed copy
        cand = cand.reshape(batch, num_tags, num_tags * k)  # (B, Kc, Kp * k): previous tag, then rank
        best, kept = _top(cand, k)  # (B, Kc, k) each
        on = mask[:, t, None, None]
        score = np.where(on, kept + em[t][:, :, None], score)
        pointers.append(np.where(on, best, stay).astype(np.int32))
    final = (score + end[None, :, None]).reshape(batch, num_tags * k)  # (B, K * k): last tag, then rank
    chosen, kept = (a[:, 0] for a in _top(final[:, None], k))  # (B, k) each
    found = kept > NEG_INF  # (B, k)
    paths = np.empty((batch, k, seq_len), dtype=np.int64)
    rows = np.arange(batch)[:, None]
    for t in range(seq_len - 1, -1, -1):
        tag, rank = np.divmod(chosen, k)  # (B, k)
        paths[:, :, t] = tag
        if t:
            chosen = pointers[t - 1][rows, tag, rank]
    return paths, found


def _top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest along the last axis, largest first, ties in index order (a stable argsort's first k),
    by k passes of argmax, which returns the first maximum: several times faster than sorting the K * k
    candidates of a step. Returns their indices and values; past the finite entries the values are -inf
    (those paths do not exist, and their indices mean nothing)."""
    work = scores.copy()
    shape = (*scores.shape[:-1], k)
    top, values = np.empty(shape, dtype=np.int64), np.empty(shape, dtype=scores.dtype)
    for r in range(k):
        top[..., r] = work.argmax(-1)
        picked = top[..., r, None]
        values[..., r] = np.take_along_axis(work, picked, -1)[..., 0]
        np.put_along_axis(work, picked, NEG_INF, -1)
    return top, values
