"""The CRF: exact likelihood, scheme constraints, batched Viterbi equal to pytorch-crf's decode."""
import itertools

import pytest
import torch

from corpora import schemes
from tagger.training.crf import ConstrainedCRF
from tagger.tagging.viterbi import viterbi

IOB2_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BIOES_TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def crf_for(tags, scheme):
    torch.manual_seed(0)
    crf = ConstrainedCRF(len(tags), *schemes.allowed_transitions(tags, scheme))
    with torch.no_grad():  # pytorch-crf starts near zero: make the scores matter
        for p in crf.parameters():
            p.normal_(0, 1)
    return crf


def decode(crf, emissions, mask):
    """tagger.viterbi (what tagging decodes with) on the CRF's constrained scores."""
    scores = (crf.start_transitions, crf.transitions, crf.end_transitions)
    return viterbi(*(t.detach().numpy() for t in (emissions, mask, *scores)))


def brute_force_log_z(crf, emissions):
    """log sum over every tag sequence of exp(score), by enumeration."""
    seq_len, k = emissions.shape
    scores = []
    for path in itertools.product(range(k), repeat=seq_len):
        s = crf.start_transitions[path[0]] + emissions[0, path[0]] + crf.end_transitions[path[-1]]
        for t in range(1, seq_len):
            s = s + crf.transitions[path[t - 1], path[t]] + emissions[t, path[t]]
        scores.append(s)
    return torch.logsumexp(torch.stack(scores), 0)


@pytest.mark.parametrize("seq_len", [1, 2, 4])
def test_log_likelihood_equals_enumeration(seq_len):
    crf = crf_for(IOB2_TAGS, "iob2")
    emissions = torch.randn(1, seq_len, len(IOB2_TAGS))
    gold = torch.tensor([[1] + [2] * (seq_len - 1)])  # B-PER I-PER ...: a valid sequence
    mask = torch.ones(1, seq_len, dtype=torch.bool)
    nll = crf.nll(emissions, gold, mask)
    path = gold[0].tolist()
    gold_score = crf.start_transitions[path[0]] + emissions[0, 0, path[0]] + crf.end_transitions[path[-1]]
    for t in range(1, seq_len):
        gold_score = gold_score + crf.transitions[path[t - 1], path[t]] + emissions[0, t, path[t]]
    expected = brute_force_log_z(crf, emissions[0]) - gold_score
    assert nll.item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("tags,scheme", [(IOB2_TAGS, "iob2"), (BIOES_TAGS, "bioes")])
def test_constrained_viterbi_never_yields_an_invalid_sequence(tags, scheme):
    crf = crf_for(tags, scheme)
    torch.manual_seed(1)
    emissions = torch.randn(200, 7, len(tags)) * 5  # emissions that on their own favour invalid sequences
    mask = torch.ones(200, 7, dtype=torch.bool)
    for path in decode(crf, emissions, mask):
        assert schemes.is_valid([tags[i] for i in path], scheme)


def test_forbidden_transitions_get_no_gradient():
    crf = crf_for(IOB2_TAGS, "iob2")
    emissions = torch.randn(3, 5, len(IOB2_TAGS))
    gold = torch.tensor([[0, 1, 2, 0, 3]] * 3)
    crf.nll(emissions, gold, torch.ones(3, 5, dtype=torch.bool)).backward()
    grad = crf.parametrizations.transitions.original.grad
    o, i_per = IOB2_TAGS.index("O"), IOB2_TAGS.index("I-PER")
    assert grad[o, i_per] == 0  # O -> I-PER is impossible in IOB2


def test_batched_viterbi_equals_pytorch_crf_decode_and_one_sentence_decoding():
    crf = crf_for(BIOES_TAGS, "bioes")
    torch.manual_seed(2)
    lengths = [1, 3, 9, 4, 9, 2]
    emissions = torch.randn(len(lengths), 9, len(BIOES_TAGS))
    mask = torch.tensor([[t < n for t in range(9)] for n in lengths])
    batched = decode(crf, emissions, mask)
    assert batched == crf.decode(emissions, mask)
    for i, n in enumerate(lengths):
        assert batched[i] == decode(crf, emissions[i : i + 1, :n], mask[i : i + 1, :n])[0]
        assert len(batched[i]) == n


def test_fast_log_likelihood_equals_pytorch_crf_with_ragged_masks():
    crf = crf_for(BIOES_TAGS, "bioes")
    torch.manual_seed(3)
    lengths = [1, 5, 12, 7]
    emissions = torch.randn(len(lengths), 12, len(BIOES_TAGS)) * 3
    mask = torch.tensor([[t < n for t in range(12)] for n in lengths])
    gold = torch.zeros(len(lengths), 12, dtype=torch.long)  # all O: valid in BIOES
    gold[2, 3:6] = torch.tensor([1, 2, 3])  # B-PER I-PER E-PER
    ours = crf.nll(emissions, gold, mask)
    theirs = -crf(emissions, gold, mask, reduction="sum")
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    ours_grad = torch.autograd.grad(crf.nll(emissions.requires_grad_(), gold, mask), emissions)[0]
    theirs_grad = torch.autograd.grad(-crf(emissions, gold, mask, reduction="sum"), emissions)[0]
    assert torch.allclose(ours_grad, theirs_grad, atol=1e-5)
