"""Confidence of tagged sentences: from one batch's emissions, the best paths and (as asked) their token
marginals, entity probabilities and n-best alternatives, exact under the CRF (tagger/tagging/marginals.py).

The network runs once per batch: Viterbi, forward-backward and k-best all read the same emissions. Plain
tagging (tagger/tagging/engine.py `Engine.tag`) never comes here, so it costs nothing more than before.
numpy only: tagging never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from corpora import schemes
from tagger.tagging import marginals
from tagger.errors import ConfigError
from tagger.tagging.marginals import Span
from tagger.tagging.viterbi import viterbi


@dataclass(frozen=True)
class ScoreOptions:
    """What to add to tagging: `scores` (each entity's probability and each chosen tag's marginal),
    `min_score` (drop entities less probable than this; implies scores) and `n_best` (the n most probable
    analyses with their probabilities; 0: none). Raises ConfigError for values that make no sense."""

    scores: bool = False
    min_score: float | None = None
    n_best: int = 0

    def __post_init__(self) -> None:
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:  # `not <=` also catches nan
            raise ConfigError(f"the minimum score (--min-score) must be a probability in [0, 1], not {self.min_score}")
        if isinstance(self.n_best, bool) or not isinstance(self.n_best, int) or self.n_best < 0:
            raise ConfigError(f"the number of analyses (--n-best) must be a whole number (0: none), not {self.n_best!r}")

    @property
    def marginals(self) -> bool:
        """Whether entity and tag probabilities are needed (--scores or --min-score)."""
        return self.scores or self.min_score is not None

    @property
    def active(self) -> bool:
        """Whether anything beyond the best tags is asked for."""
        return self.marginals or self.n_best > 0


@dataclass
class Scored:
    """One sentence tagged and scored, in the model's scheme. `marginals` (T, K) has the model's tags as
    columns (Tagger.tags); it, `span_scores` and `tag_scores` are None unless scores were asked for."""

    tags: list[str]                    # the best path (Viterbi)
    spans: list[Span]                  # its entities (label, start, end); plain tags: one per token
    marginals: np.ndarray | None       # (T, K) P(y_t = k | x)
    span_scores: list[float] | None    # P(exactly this entity | x), one per span
    tag_scores: list[float] | None     # P(y_t = tags[t] | x), one per token
    alternatives: list[tuple[list[str], float]]  # the n best paths, best first, with their probabilities

    def keep(self, min_score: float, names: Sequence[str]) -> "Scored":
        """This sentence with the entities scored below `min_score` removed: their tokens tagged O (and
        their tag scores P(O)). The alternatives stay whole analyses."""
        low = [span for span, p in zip(self.spans, self.span_scores) if p < min_score]
        if not low:
            return self
        if "O" not in names:
            raise ConfigError("--min-score: the model has no O tag to give the dropped entities' tokens")
        tags, tag_scores = list(self.tags), list(self.tag_scores)
        outside = names.index("O")
        for _, s, e in low:
            tags[s:e] = ["O"] * (e - s)
            tag_scores[s:e] = self.marginals[s:e, outside].tolist()
        kept = [(span, p) for span, p in zip(self.spans, self.span_scores) if p >= min_score]
        return replace(self, tags=tags, tag_scores=tag_scores, spans=[s for s, _ in kept],
                       span_scores=[p for _, p in kept])


def score_batch(emissions: np.ndarray, mask: np.ndarray, crf: Sequence[np.ndarray], names: Sequence[str],
                scheme: str | None, options: ScoreOptions, temperature: float = 1.0) -> list[Scored]:
    """Every sentence of a batch, emissions (B, T, K) and mask (B, T): its best path and its entities, with
    their probabilities when options.marginals, and its options.n_best best paths. All probabilities are at
    `temperature` (the model's calibrated one, Config.temperature); the paths do not depend on it."""
    paths = viterbi(emissions, mask, *crf)
    tags = [[names[i] for i in path] for path in paths]
    spans = [schemes.tag_spans(t, scheme) for t in tags]
    span_scores: list = [None] * len(paths)
    tag_scores: list = [None] * len(paths)
    token_marginals: list = [None] * len(paths)
    if options.marginals:
        lattice = marginals.forward_backward(emissions, mask, *crf, temperature=temperature)
        for b, path in enumerate(paths):
            token_marginals[b] = lattice.marginals[b, : len(path)]  # (T, K)
            tag_scores[b] = token_marginals[b][np.arange(len(path)), path].tolist()
        if scheme is None:  # a plain tag is its own "entity": its probability is the tag's marginal
            span_scores = tag_scores
        else:
            span_scores = marginals.span_probabilities(lattice, spans, names, scheme)
    alternatives: list = [[] for _ in paths]
    if options.n_best:
        alternatives = [[([names[i] for i in path], p) for path, p in found]
                        for found in marginals.kbest(emissions, mask, *crf, k=options.n_best, temperature=temperature)]
    return [Scored(*fields) for fields in zip(tags, spans, token_marginals, span_scores, tag_scores, alternatives)]


def empty(num_tags: int, options: ScoreOptions) -> Scored:
    """What scoring a sentence of no tokens gives: no entities, and one analysis (the empty one), certain."""
    scored = options.marginals
    return Scored([], [], np.zeros((0, num_tags)) if scored else None, [] if scored else None,
                  [] if scored else None, [([], 1.0)] if options.n_best else [])
