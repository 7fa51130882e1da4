"""Calibrating a model's probabilities: the temperature (Config.temperature) that makes its entity scores
match how often its entities are right, fitted on labelled sentences (a dev set, never the test set).

`tagger calibrate MODEL DEV` runs `fit` and saves the temperature in the model's config.json; every
probability tagging reports (--scores, --n-best, Tagger.marginals) then uses it. bench/calibration.py
measures the result on a test set with the same `scored_entities`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from corpora import schemes
from corpora.conll import Sentence
from tagger.tagging import marginals, pipeline
from tagger.errors import InputError
from tagger.tagging.viterbi import viterbi

if TYPE_CHECKING:
    from tagger.tagging.tagger import Tagger

THRESHOLDS = (0.5, 0.8, 0.9, 0.95)


def scored_entities(tagger: "Tagger", sentences: Sequence[Sentence], scheme: str | None = None
                    ) -> tuple[list[ScoredEntities], int]:
    """The predicted (Viterbi) entities of each batch, each marked correct or not against the sentences'
    gold tags (in `scheme`, detected when None), and the number of gold entities."""
    from tagger.data import feature_columns

    if tagger.scheme is None:
        raise InputError("the model's tags are plain labels, not entity spans: it has no entity scores to calibrate")
    source = scheme or schemes.detect_scheme(s.tags for s in sentences) or tagger.scheme
    gold = [set(schemes.spans(schemes.convert(s.tags, source, tagger.scheme), tagger.scheme)) for s in sentences]
    names = tagger.tags
    columns = tagger.config.features
    features = [feature_columns(s, columns) for s in sentences] if columns else ()
    data = []
    for ids, emissions, mask in pipeline.emission_batches(tagger, [s.tokens for s in sentences], features):
        paths = viterbi(emissions, mask, *tagger.engine.crf)
        predicted = [schemes.spans([names[i] for i in path], tagger.scheme) for path in paths]
        correct = [[span in gold[i] for span in spans] for i, spans in zip(ids, predicted)]
        data.append(ScoredEntities(emissions, mask, predicted, correct))
    return data, sum(map(len, gold))


def entity_scores(tagger: "Tagger", data: Sequence[ScoredEntities], temperature: float
                  ) -> tuple[list[float], list[bool]]:
    """Every entity's probability at `temperature`, and whether it is correct, flattened over the batches."""
    scores, correct = [], []
    for item in data:
        lattice = marginals.forward_backward(item.emissions, item.mask, *tagger.engine.crf, temperature=temperature)
        for probs, flags in zip(marginals.span_probabilities(lattice, item.spans, tagger.tags, tagger.scheme),
                                item.correct):
            scores += probs
            correct += flags
    return scores, correct


def fit(tagger: "Tagger", sentences: Sequence[Sentence], scheme: str | None = None) -> dict:
    """The temperature minimising the entities' negative log-likelihood on `sentences`
    (fit_temperature), and the expected calibration error there before (at the model's current
    temperature) and after: {"temperature", "previous_temperature", "entities", "ece_before", "ece_after"}."""
    data, _ = scored_entities(tagger, sentences, scheme)
    count = sum(len(spans) for item in data for spans in item.spans)
    if not count:
        raise InputError("the model finds no entity in these sentences: there is nothing to calibrate on")
    temperature = fit_temperature(data, tagger.engine.crf, tagger.tags, tagger.scheme)
    previous = tagger.config.temperature
    return {"temperature": temperature, "previous_temperature": previous, "entities": count,
            "ece_before": calibration(*entity_scores(tagger, data, previous))["ece"],
            "ece_after": calibration(*entity_scores(tagger, data, temperature))["ece"]}


# -- the temperature and the calibration table -------------------------------------------------------------



@dataclass
class ScoredEntities:
    """A batch and the entities to score in it: emissions (B, T, K), mask (B, T), spans per sentence, and
    per span whether it is correct (in the gold annotation); what fit_temperature learns from."""

    emissions: np.ndarray
    mask: np.ndarray
    spans: list[list[marginals.Span]]
    correct: list[list[bool]]


def entity_nll(data: Iterable[ScoredEntities], crf: Sequence[np.ndarray], tags: Sequence[str], scheme: str,
               temperature: float) -> float:
    """Mean negative log-likelihood of "this entity is correct" under the entities' probabilities at
    `temperature` (binary cross-entropy; probabilities clipped to [1e-12, 1 - 1e-12])."""
    total, count = 0.0, 0
    for item in data:
        lattice = marginals.forward_backward(item.emissions, item.mask, *crf, temperature=temperature)
        p = np.clip(_flat(marginals.span_probabilities(lattice, item.spans, tags, scheme)), 1e-12, 1 - 1e-12)
        ok = np.asarray(_flat(item.correct), dtype=bool)
        total -= float(np.where(ok, np.log(p), np.log1p(-p)).sum())
        count += len(p)
    if not count:
        raise ValueError("no entities to calibrate on")
    return total / count


def fit_temperature(data: Sequence[ScoredEntities], crf: Sequence[np.ndarray], tags: Sequence[str], scheme: str,
                    bounds: tuple[float, float] = (0.05, 20.0), tol: float = 1e-3) -> float:
    """The temperature that minimises entity_nll on `data` (dev entities, e.g. the Viterbi path's, each
    marked correct or not): the negative log-likelihood is a proper scoring rule, so its minimiser is the
    temperature whose entity probabilities are calibrated. A 17-point grid over log T within `bounds`, then
    golden-section search around the grid's best point down to `tol` in log T. The predicted entities do
    not depend on T (dividing all scores by T keeps the best path)."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    cost = functools.lru_cache(maxsize=None)(lambda x: entity_nll(data, crf, tags, scheme, math.exp(x)))
    grid = np.linspace(lo, hi, 17).tolist()
    best = min(range(len(grid)), key=lambda i: cost(grid[i]))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    while b - a > tol:
        if cost(c) < cost(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    return math.exp((a + b) / 2)


def _flat(nested: Iterable[Sequence]) -> list:
    return [x for inner in nested for x in inner]


def calibration(scores: Sequence[float], correct: Sequence[bool], bins: int = 10, gold: int | None = None,
                thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """How well entity probabilities match how often the entities are right.

    Returns {"bins": [{"low", "high", "count", "mean_score", "precision"}...] (equal-width bins over [0, 1];
    mean_score and precision None in an empty bin), "ece": the expected calibration error (the bins' |mean
    score - precision| weighted by their share of entities), "entities", and "thresholds": per threshold t
    the entities scoring >= t, their precision, and recall = the correct ones among them / `gold` (the
    number of gold entities; recall is None without it)}."""
    s = np.asarray(scores, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if s.shape != ok.shape:
        raise ValueError(f"{len(s)} scores but {len(ok)} correctness flags")
    which = np.minimum((s * bins).astype(np.int64), bins - 1)  # (N,) a score of 1.0 goes in the last bin
    table, ece = [], 0.0
    for i in range(bins):
        inside = which == i
        n = int(inside.sum())
        mean = float(s[inside].mean()) if n else None
        precision = float(ok[inside].mean()) if n else None
        if n:
            ece += n / len(s) * abs(mean - precision)
        table.append({"low": i / bins, "high": (i + 1) / bins, "count": n, "mean_score": mean,
                      "precision": precision})
    return {"bins": table, "ece": ece, "entities": len(s),
            "thresholds": [_at_threshold(s, ok, t, gold) for t in thresholds]}


def _at_threshold(s: np.ndarray, ok: np.ndarray, threshold: float, gold: int | None) -> dict:
    kept = s >= threshold
    n, right = int(kept.sum()), int((kept & ok).sum())
    return {"threshold": threshold, "kept": n, "precision": right / n if n else None,
            "recall": right / gold if gold else None}
