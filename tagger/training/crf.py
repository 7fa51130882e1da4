"""The training loss: pytorch-crf's CRF with the tagging scheme's impossible transitions forbidden, and a
fast likelihood. (Tagging decodes with tagger.tagging.viterbi, in numpy, on the saved scores.)

The constraints are torch parametrizations of the CRF's own parameters, so pytorch-crf's log-likelihood
and `decode` see the constrained scores too: a forbidden transition scores -10000 in training and decoding.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torchcrf import CRF

from tagger.tensors import FORBIDDEN


class Forbid(nn.Module):
    """Parametrization: scores where `allowed` is False are pinned to FORBIDDEN (and get no gradient)."""

    def __init__(self, allowed: Tensor):
        super().__init__()
        self.register_buffer("allowed", allowed.bool())

    def forward(self, scores: Tensor) -> Tensor:
        return scores.masked_fill(~self.allowed, FORBIDDEN)


class ConstrainedCRF(CRF):
    """A batch-first torchcrf.CRF whose start, transition and end scores obey the tagging scheme."""

    def __init__(self, num_tags: int, start: list[bool], trans: list[list[bool]], end: list[bool]):
        super().__init__(num_tags, batch_first=True)
        for name, allowed in (("start_transitions", start), ("transitions", trans), ("end_transitions", end)):
            parametrize.register_parametrization(self, name, Forbid(torch.tensor(allowed, dtype=torch.bool)))

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood summed over the batch. emissions (B, T, K), tags (B, T), mask (B, T) bool.

        Equals pytorch-crf's `-self(emissions, tags, mask, reduction="sum")` (tested), at a fraction of the
        cost: its forward algorithm does a (B, K, K) logsumexp per time step, the loop that dominated training.
        """
        with parametrize.cached():
            start, trans, end = self.start_transitions, self.transitions, self.end_transitions
            gold = path_score(emissions, tags, mask, start, trans, end)
            return (log_partition(emissions, mask, start, trans, end) - gold).sum()


def path_score(emissions: Tensor, tags: Tensor, mask: Tensor, start: Tensor, trans: Tensor, end: Tensor
               ) -> Tensor:
    """Score of the given tag paths, all time steps at once. Returns (B,)."""
    m = mask.to(emissions.dtype)  # (B, T)
    last = tags.gather(1, (mask.sum(1, keepdim=True) - 1)).squeeze(1)  # (B,)
    score = start[tags[:, 0]] + end[last]
    score = score + (emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * m).sum(1)
    return score + (trans[tags[:, :-1], tags[:, 1:]] * m[:, 1:]).sum(1)


def log_partition(emissions: Tensor, mask: Tensor, start: Tensor, trans: Tensor, end: Tensor) -> Tensor:
    """log Z of every sentence by the forward algorithm in rescaled probability space. Returns (B,).

    Four small ops a step (a (B, K) x (K, K) product, a product, a sum, a division) instead of a (B, K, K)
    logsumexp; float64 and per-step rescaling keep it exact (forbidden transitions become exact zeros).
    """
    e = emissions.double()
    m = mask.double()  # (B, T)
    shift = e.max(2).values  # (B, T): each step's best emission is scaled to 1
    p = torch.exp(e - shift.unsqueeze(2))  # (B, T, K)
    t_max, s_max, e_max = trans.max().double(), start.max().double(), end.max().double()
    step = torch.exp(trans.double() - t_max)  # (K, K)
    p = p.unbind(1)  # T x (B, K): one backward op for all steps, not one (B, T, K) scatter per step
    alpha = torch.exp(start.double() - s_max) * p[0]  # (B, K)
    ragged = not bool(mask.all())
    norms = [alpha.sum(1, keepdim=True)]  # each (B, 1)
    alpha = alpha / norms[0]
    for t in range(1, len(p)):
        nxt = (alpha @ step) * p[t]  # (B, K)
        norm = nxt.sum(1, keepdim=True)
        if ragged:  # finished sentences keep their alpha and scale by 1
            on = mask[:, t : t + 1]
            norm = torch.where(on, norm, 1.0)
            nxt = torch.where(on, nxt, alpha * norm)
        norms.append(norm)
        alpha = nxt / norm
    final = (alpha * torch.exp(end.double() - e_max)).sum(1)  # (B,)
    log_z = torch.cat(norms, 1).log().sum(1) + final.log() + (shift * m).sum(1)
    log_z = log_z + s_max + e_max + t_max * (m.sum(1) - 1)
    return log_z.to(emissions.dtype)
