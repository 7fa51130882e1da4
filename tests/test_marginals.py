"""Exact CRF probabilities (tagger.marginals) against brute-force enumeration of every tag sequence."""
import itertools

import numpy as np
import pytest
import torch

from corpora import schemes
from tagger.tagging import marginals as M
from tagger.training.crf import log_partition as torch_log_partition
from tagger.tagging.viterbi import viterbi
from tagger.tensors import FORBIDDEN

IOB2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
IOB1 = ["O", "I-PER", "B-PER", "I-LOC", "B-LOC"]
BIOES_1 = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
BIOES_2 = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
BMES_1 = ["O", "B-W", "M-W", "E-W", "S-W"]
BMES_2 = ["O", "B-W", "M-W", "E-W", "S-W", "B-N", "M-N", "E-N", "S-N"]

PROBLEMS = [  # (tags, scheme, constrained, seq_len)
    (IOB2, "iob2", False, 5),
    (IOB2, "iob2", True, 6),
    (IOB1, "iob1", True, 5),
    (IOB1, "iob1", False, 4),
    (BIOES_1, "bioes", True, 6),
    (BIOES_2, "bioes", True, 4),
    (BIOES_1, "bioes", False, 4),
    (BMES_1, "bmes", True, 6),
    (BMES_2, "bmes", True, 4),
]
IDS = [f"{scheme}-{len(tags)}tags-{'constrained' if c else 'free'}-T{n}" for tags, scheme, c, n in PROBLEMS]


def crf_scores(tags, scheme, constrained, rng, scale=1.0):
    """Random float32 start (K,), trans (K, K), end (K,); FORBIDDEN where the scheme forbids a move."""
    k = len(tags)
    start, trans, end = (rng.normal(0, scale, shape).astype(np.float32) for shape in ((k,), (k, k), (k,)))
    if constrained:
        ok_start, ok_trans, ok_end = map(np.array, schemes.allowed_transitions(tags, scheme))
        start, trans, end = (np.where(ok, x, np.float32(FORBIDDEN)) for ok, x in
                             ((ok_start, start), (ok_trans, trans), (ok_end, end)))
    return start, trans, end


def enumerate_paths(emissions, start, trans, end):
    """Every tag sequence of one sentence (P, T) and its probability (P,), in float64 by brute force."""
    seq_len, k = emissions.shape
    paths = np.array(list(itertools.product(range(k), repeat=seq_len)))  # (P, T)
    em, start, trans, end = (np.asarray(x, np.float64) for x in (emissions, start, trans, end))
    score = start[paths[:, 0]] + end[paths[:, -1]] + em[np.arange(seq_len), paths].sum(1)
    score += trans[paths[:, :-1], paths[:, 1:]].sum(1)
    log_z = np.logaddexp.reduce(score)
    return paths, score, np.exp(score - log_z), log_z


def problem(tags, scheme, constrained, seq_len, seed):
    rng = np.random.default_rng(seed)
    crf = crf_scores(tags, scheme, constrained, rng)
    emissions = rng.normal(0, 2, (1, seq_len, len(tags))).astype(np.float32)  # (1, T, K)
    return emissions, np.ones((1, seq_len), bool), crf


@pytest.mark.parametrize("tags,scheme,constrained,seq_len", PROBLEMS, ids=IDS)
def test_token_marginals_and_log_z_equal_enumeration(tags, scheme, constrained, seq_len):
    emissions, mask, crf = problem(tags, scheme, constrained, seq_len, seed=seq_len)
    paths, _, probs, log_z = enumerate_paths(emissions[0], *crf)
    expected = np.zeros((seq_len, len(tags)))
    for t in range(seq_len):
        np.add.at(expected[t], paths[:, t], probs)
    lattice = M.forward_backward(emissions, mask, *crf)
    assert lattice.log_z[0] == pytest.approx(log_z, abs=1e-9)
    np.testing.assert_allclose(lattice.marginals[0], expected, atol=1e-12)
    assert M.log_partition(emissions, mask, *crf)[0] == pytest.approx(log_z, abs=1e-9)


@pytest.mark.parametrize("tags,scheme", [(IOB2, "iob2"), (BIOES_2, "bioes"), (BMES_2, "bmes")])
def test_marginals_sum_to_one_and_are_exactly_zero_for_forbidden_tags(tags, scheme):
    rng = np.random.default_rng(7)
    crf = crf_scores(tags, scheme, True, rng)
    emissions = rng.normal(0, 3, (4, 9, len(tags))).astype(np.float32)
    mask = np.arange(9) < np.array([9, 1, 5, 2])[:, None]
    lattice = M.forward_backward(emissions, mask, *crf)
    np.testing.assert_allclose(lattice.marginals.sum(2), mask.astype(float), atol=1e-12)
    ok_start, _, ok_end = schemes.allowed_transitions(tags, scheme)
    for b, n in enumerate(mask.sum(1)):
        assert all(lattice.marginals[b, 0, k] == 0.0 for k in range(len(tags)) if not ok_start[k])
        assert all(lattice.marginals[b, n - 1, k] == 0.0 for k in range(len(tags)) if not ok_end[k])
        assert (lattice.marginals[b, n:] == 0.0).all()  # padding


def test_log_z_equals_the_training_loss_normaliser():
    rng = np.random.default_rng(3)
    crf = crf_scores(BIOES_2, "bioes", True, rng)
    emissions = rng.normal(0, 2, (3, 7, len(BIOES_2)))
    mask = np.arange(7) < np.array([7, 3, 1])[:, None]
    ours = M.forward_backward(emissions, mask, *crf).log_z
    theirs = torch_log_partition(*map(torch.from_numpy, (emissions, mask, *(np.float64(x) for x in crf))))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12)


def all_spans(tags, seq_len):
    labels = sorted({schemes.split_tag(t)[1] for t in tags} - {None})
    return [(x, s, e) for x in labels for s in range(seq_len) for e in range(s + 1, seq_len + 1)]


@pytest.mark.parametrize("tags,scheme,constrained,seq_len", PROBLEMS, ids=IDS)
def test_span_probabilities_equal_enumeration_for_every_span(tags, scheme, constrained, seq_len):
    """Every (label, s, e): on or off the Viterbi path, touching either edge; free scores include invalid
    sequences, which count as corpora.schemes.spans reads them."""
    emissions, mask, crf = problem(tags, scheme, constrained, seq_len, seed=seq_len + 10)
    paths, _, probs, _ = enumerate_paths(emissions[0], *crf)
    expected: dict = {}
    for path, p in zip(paths[probs > 0].tolist(), probs[probs > 0]):  # forbidden paths have p == 0 exactly
        for span in schemes.spans([tags[i] for i in path], scheme):
            expected[span] = expected.get(span, 0.0) + p
    asked = all_spans(tags, seq_len)
    got = M.span_probabilities(M.forward_backward(emissions, mask, *crf), [asked], tags, scheme)[0]
    np.testing.assert_allclose(got, [expected.get(span, 0.0) for span in asked], atol=1e-12)
    best = [tags[i] for i in viterbi(emissions, mask, *crf)[0]]
    assert any(expected.get(span, 0) > 0 for span in set(asked) - set(schemes.spans(best, scheme)))


@pytest.mark.parametrize("tags,scheme,constrained,seq_len", PROBLEMS[:6], ids=IDS[:6])
def test_kbest_paths_and_probabilities_equal_enumeration(tags, scheme, constrained, seq_len):
    emissions, mask, crf = problem(tags, scheme, constrained, seq_len, seed=seq_len + 20)
    paths, score, probs, _ = enumerate_paths(emissions[0], *crf)
    order = np.argsort(-score, kind="stable")[:8]
    (got,) = M.kbest(emissions, mask, *crf, k=8)
    assert [p for p, _ in got] == paths[order].tolist()
    np.testing.assert_allclose([q for _, q in got], probs[order], rtol=1e-9)
    assert got[0][0] == viterbi(emissions, mask, *crf)[0]


def test_kbest_returns_fewer_paths_when_fewer_exist():
    rng = np.random.default_rng(0)
    crf = crf_scores(BIOES_1, "bioes", True, rng)
    emissions = rng.normal(0, 1, (2, 2, len(BIOES_1))).astype(np.float32)
    mask = np.array([[True, True], [True, False]])
    two, one = M.kbest(emissions, mask, *crf, k=10)
    # two tokens: O O, O S, S O, S S, B E; one token: O, S
    assert sorted(p for p, _ in two) == [[0, 0], [0, 4], [1, 3], [4, 0], [4, 4]]
    assert sorted(p for p, _ in one) == [[0], [4]]
    assert sum(q for _, q in one) == pytest.approx(1.0)
    free = M.kbest(emissions[:1], mask[:1], *(np.zeros_like(x) for x in crf), k=30)[0]
    assert len(free) == 25 and len({tuple(p) for p, _ in free}) == 25  # K ** T distinct paths, no more


def test_kbest_first_path_breaks_ties_as_viterbi_does():
    rng = np.random.default_rng(5)
    crf = tuple(np.round(x) for x in crf_scores(IOB2, "iob2", True, rng))
    emissions = np.round(rng.normal(0, 1, (40, 6, len(IOB2)))).astype(np.float32)  # integer scores: many ties
    mask = np.arange(6) < rng.integers(1, 7, 40)[:, None]
    best = viterbi(emissions, mask, *crf)
    assert [paths[0][0] for paths in M.kbest(emissions, mask, *crf, k=3)] == best


def test_a_batch_gives_each_sentence_what_it_gets_alone():
    rng = np.random.default_rng(11)
    crf = crf_scores(BIOES_2, "bioes", True, rng)
    lengths = [6, 1, 4, 2]
    emissions = rng.normal(0, 2, (4, 6, len(BIOES_2))).astype(np.float32)
    mask = np.arange(6) < np.array(lengths)[:, None]
    emissions[~mask] = 1e4  # padding scores must not matter
    spans = [all_spans(BIOES_2, n)[::3] for n in lengths]
    batch = M.forward_backward(emissions, mask, *crf)
    batch_spans = M.span_probabilities(batch, spans, BIOES_2, "bioes")
    batch_best = M.kbest(emissions, mask, *crf, k=4)
    for b, n in enumerate(lengths):
        alone_em, alone_mask = emissions[b : b + 1, :n], mask[b : b + 1, :n]
        alone = M.forward_backward(alone_em, alone_mask, *crf)
        np.testing.assert_allclose(batch.marginals[b, :n], alone.marginals[0], rtol=1e-13, atol=1e-15)
        assert batch.log_z[b] == pytest.approx(alone.log_z[0], rel=1e-14)
        alone_spans = M.span_probabilities(alone, [spans[b]], BIOES_2, "bioes")[0]
        np.testing.assert_allclose(batch_spans[b], alone_spans, rtol=1e-12, atol=1e-15)
        alone_best = M.kbest(alone_em, alone_mask, *crf, k=4)[0]
        assert [p for p, _ in batch_best[b]] == [p for p, _ in alone_best]
        np.testing.assert_allclose([q for _, q in batch_best[b]], [q for _, q in alone_best], rtol=1e-12)


def test_long_sentences_and_large_scores_stay_exact():
    rng = np.random.default_rng(2)
    crf = crf_scores(BIOES_2, "bioes", True, rng, scale=30.0)
    emissions = rng.normal(0, 100, (2, 500, len(BIOES_2))).astype(np.float32)
    mask = np.arange(500) < np.array([500, 377])[:, None]
    lattice = M.forward_backward(emissions, mask, *crf)
    assert np.isfinite(lattice.log_z).all()
    np.testing.assert_allclose(lattice.marginals.sum(2), mask.astype(float), atol=1e-9)
    from_beta = M._logsumexp(lattice.start + lattice.emissions[:, 0] + lattice.log_beta[:, 0], 1)
    np.testing.assert_allclose(from_beta, lattice.log_z, rtol=1e-12)
    best = [[BIOES_2[i] for i in p] for p in viterbi(emissions, mask, *crf)]
    probs = M.span_probabilities(lattice, [schemes.spans(p, "bioes") for p in best], BIOES_2, "bioes")
    assert all(0.0 <= q <= 1.0 + 1e-9 for q in itertools.chain(*probs))
    plain = [np.float64(emissions) / 100, mask, *(np.float64(x) / 30 for x in crf)]  # no FORBIDDEN left: free
    theirs = torch_log_partition(*map(torch.from_numpy, plain))
    np.testing.assert_allclose(M.forward_backward(*plain).log_z, theirs.numpy(), rtol=1e-10)


def test_temperature_divides_every_score_but_keeps_forbidden_moves_forbidden():
    emissions, mask, crf = problem(BIOES_1, "bioes", True, 4, seed=1)
    assert M.forward_backward(emissions, mask, *crf, temperature=1.0).log_z == \
        M.forward_backward(emissions, mask, *crf).log_z
    warm = M.forward_backward(emissions, mask, *crf, temperature=2.5)
    cooled = (np.where(x <= FORBIDDEN, x, x / 2.5) for x in map(np.float64, crf))
    paths, _, probs, _ = enumerate_paths(np.float64(emissions[0]) / 2.5, *cooled)
    expected = np.zeros((4, len(BIOES_1)))
    for t in range(4):
        np.add.at(expected[t], paths[:, t], probs)
    np.testing.assert_allclose(warm.marginals[0], expected, atol=1e-12)
    hot = M.forward_backward(emissions, mask, *crf, temperature=1000.0)
    assert hot.marginals[0, 0, 2] == 0.0 and hot.marginals[0, 3, 1] == 0.0  # I- cannot start, B- cannot end
    (best,) = M.kbest(emissions, mask, *crf, k=2, temperature=2.5)
    assert best[0][1] == pytest.approx(probs.max(), rel=1e-9)
    with pytest.raises(ValueError, match="temperature"):
        M.forward_backward(emissions, mask, *crf, temperature=0.0)


def test_bad_requests_are_refused_with_the_reason():
    emissions, mask, crf = problem(IOB2, "iob2", True, 3, seed=0)
    lattice = M.forward_backward(emissions, mask, *crf)
    with pytest.raises(ValueError, match="outside sentence 0 of 3 tokens"):
        M.span_probabilities(lattice, [[("PER", 2, 4)]], IOB2, "iob2")
    with pytest.raises(ValueError, match="label 'ORG'"):
        M.span_probabilities(lattice, [[("ORG", 0, 1)]], IOB2, "iob2")
    with pytest.raises(ValueError, match="scheme"):
        M.span_probabilities(lattice, [[("PER", 0, 1)]], IOB2, None)
    with pytest.raises(ValueError, match="k must be"):
        M.kbest(emissions, mask, *crf, k=0)
    with pytest.raises(ValueError, match="mask"):
        M.forward_backward(emissions, np.zeros_like(mask), *crf)
