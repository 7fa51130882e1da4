"""One scoring pass over a batch: the best paths and, from the same emissions, what tagger/tagging/marginals.py
computes (tested there against brute force), per sentence, as the Python API and the writers use it."""
import numpy as np
import pytest

from corpora import schemes
from tagger.tagging import marginals
from tagger.tagging import confidence
from tagger.errors import ConfigError
from tagger.tagging.confidence import ScoreOptions
from tagger.tagging.viterbi import viterbi
from tagger.tensors import FORBIDDEN

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def iob2_crf(rng):
    """Random scores with IOB2's forbidden moves (O -> I-X, B-X/I-X -> I-Y, start -> I-X) pinned."""
    k = len(TAGS)
    start, trans, end = rng.normal(size=k), rng.normal(size=(k, k)), rng.normal(size=k)
    for b, tag in enumerate(TAGS):
        if tag.startswith("I-"):
            start[b] = FORBIDDEN
            for a, prev in enumerate(TAGS):
                if prev == "O" or prev[2:] != tag[2:]:
                    trans[a, b] = FORBIDDEN
    return start, trans, end


@pytest.fixture
def batch():
    rng = np.random.default_rng(4)
    lengths = [5, 2, 7, 1]
    emissions = 2 * rng.normal(size=(len(lengths), max(lengths), len(TAGS)))  # (B, T, K)
    mask = np.arange(max(lengths))[None, :] < np.array(lengths)[:, None]  # (B, T)
    return emissions, mask, iob2_crf(rng)


def test_scores_are_the_exact_probabilities_of_the_best_path_and_its_entities(batch):
    emissions, mask, crf = batch
    found = confidence.score_batch(emissions, mask, crf, TAGS, "iob2", ScoreOptions(scores=True))
    lattice = marginals.forward_backward(emissions, mask, *crf)
    for b, (s, path) in enumerate(zip(found, viterbi(emissions, mask, *crf))):
        assert s.tags == [TAGS[i] for i in path]
        assert s.spans == schemes.spans(s.tags, "iob2")
        want = marginals.span_probabilities(lattice, [[] for _ in range(b)] + [s.spans] + [[]] * (len(found) - b - 1),
                                            TAGS, "iob2")[b]
        np.testing.assert_allclose(s.span_scores, want)
        np.testing.assert_allclose(s.tag_scores, lattice.marginals[b, np.arange(len(path)), path])
        assert s.marginals.shape == (len(path), len(TAGS))
        assert s.alternatives == []  # not asked for


def test_each_sentence_gets_what_it_gets_alone(batch):
    emissions, mask, crf = batch
    options = ScoreOptions(scores=True, n_best=3)
    together = confidence.score_batch(emissions, mask, crf, TAGS, "iob2", options)
    for b, n in enumerate(mask.sum(1)):
        alone, = confidence.score_batch(emissions[b : b + 1, :n], mask[b : b + 1, :n], crf, TAGS, "iob2", options)
        assert alone.tags == together[b].tags
        np.testing.assert_allclose(alone.span_scores, together[b].span_scores)
        assert [p for p, _ in alone.alternatives] == [p for p, _ in together[b].alternatives]
        np.testing.assert_allclose([q for _, q in alone.alternatives], [q for _, q in together[b].alternatives])


def test_n_best_starts_with_the_best_path_and_never_sums_past_one(batch):
    emissions, mask, crf = batch
    for s in confidence.score_batch(emissions, mask, crf, TAGS, "iob2", ScoreOptions(n_best=4)):
        assert s.alternatives[0][0] == s.tags
        probabilities = [p for _, p in s.alternatives]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-9
        assert s.span_scores is None and s.marginals is None  # n-best alone runs no forward-backward


def test_plain_tags_score_each_token_by_its_marginal(batch):
    emissions, mask, crf = batch
    found = confidence.score_batch(emissions, mask, crf, TAGS, None, ScoreOptions(scores=True))
    for s in found:
        assert s.spans == [(tag, i, i + 1) for i, tag in enumerate(s.tags)]
        assert s.span_scores == s.tag_scores


def test_a_temperature_changes_the_probabilities_but_not_the_path(batch):
    emissions, mask, crf = batch
    cold, hot = (confidence.score_batch(emissions, mask, crf, TAGS, "iob2", ScoreOptions(scores=True), temperature=t)
                 for t in (1.0, 3.0))
    assert [s.tags for s in cold] == [s.tags for s in hot]
    assert any(not np.allclose(a.tag_scores, b.tag_scores) for a, b in zip(cold, hot))


def test_keep_drops_the_entities_below_the_minimum_and_tags_their_tokens_o(batch):
    emissions, mask, crf = batch
    scored = [s for s in confidence.score_batch(emissions, mask, crf, TAGS, "iob2", ScoreOptions(scores=True))
              if s.spans]
    assert len(scored) >= 2  # the fixture's sentences have entities to drop
    for s in scored:
        threshold = min(s.span_scores) + 1e-9  # drops at least the least sure entity
        kept = s.keep(threshold, TAGS)
        assert len(kept.spans) < len(s.spans)
        assert kept.spans == [span for span, p in zip(s.spans, s.span_scores) if p >= threshold]
        assert schemes.spans(kept.tags, "iob2") == kept.spans
        dropped = [span for span in s.spans if span not in kept.spans]
        assert all(kept.tags[i] == "O" for _, a, b in dropped for i in range(a, b))
        np.testing.assert_allclose(kept.tag_scores, s.marginals[np.arange(len(kept.tags)),
                                                                [TAGS.index(t) for t in kept.tags]])
        assert s.keep(0.0, TAGS) is s


@pytest.mark.parametrize("options, fragment", [
    (dict(min_score=1.5), "must be a probability in [0, 1], not 1.5"),
    (dict(min_score=-0.1), "must be a probability in [0, 1]"),
    (dict(min_score=float("nan")), "must be a probability in [0, 1]"),
    (dict(n_best=-1), "--n-best"),
    (dict(n_best=2.5), "--n-best"),
])
def test_nonsense_options_are_refused(options, fragment):
    with pytest.raises(ConfigError) as info:
        ScoreOptions(**options)
    assert fragment in str(info.value)


def test_a_minimum_score_implies_scores():
    assert ScoreOptions(min_score=0.5).marginals and not ScoreOptions(n_best=2).marginals
    assert not ScoreOptions().active and ScoreOptions(n_best=1).active
