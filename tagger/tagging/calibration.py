"""Calibrating a model's probabilities: the temperature (Config.temperature) that makes its entity scores
match how often its entities are right, fitted on labelled sentences (a dev set, never the test set).

`tagger calibrate MODEL DEV` runs `fit` and saves the temperature in the model's config.json; every
probability tagging reports (--scores, --n-best, Tagger.marginals) then uses it. bench/calibration.py
measures the result on a test set with the same `scored_entities`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from corpora import schemes
from corpora.conll import Sentence
from tagger.tagging import marginals, pipeline
from tagger.errors import InputError
from tagger.tagging.viterbi import viterbi

if TYPE_CHECKING:
    from tagger.tagging.tagger import Tagger


def scored_entities(tagger: "Tagger", sentences: Sequence[Sentence], scheme: str | None = None
                    ) -> tuple[list[marginals.ScoredEntities], int]:
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
        data.append(marginals.ScoredEntities(emissions, mask, predicted, correct))
    return data, sum(map(len, gold))


def entity_scores(tagger: "Tagger", data: Sequence[marginals.ScoredEntities], temperature: float
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
    (marginals.fit_temperature), and the expected calibration error there before (at the model's current
    temperature) and after: {"temperature", "previous_temperature", "entities", "ece_before", "ece_after"}."""
    data, _ = scored_entities(tagger, sentences, scheme)
    count = sum(len(spans) for item in data for spans in item.spans)
    if not count:
        raise InputError("the model finds no entity in these sentences: there is nothing to calibrate on")
    temperature = marginals.fit_temperature(data, tagger.engine.crf, tagger.tags, tagger.scheme)
    previous = tagger.config.temperature
    return {"temperature": temperature, "previous_temperature": previous, "entities": count,
            "ece_before": marginals.calibration(*entity_scores(tagger, data, previous))["ece"],
            "ece_after": marginals.calibration(*entity_scores(tagger, data, temperature))["ece"]}
