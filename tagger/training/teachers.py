"""Distillation (`tagger train --teacher M`): the student learns the teachers' exact token marginals as well as
the gold tags, and, with --unlabeled, the teachers' marginals on raw text.

This is token-level posterior distillation for CRFs (Wang et al. 2020, "Structure-Level Knowledge Distillation
for Multilingual Sequence Labeling", ACL: the student's CRF posteriors P_s(y_t | x), computed by
forward-backward, are trained towards the teacher's), from an ensemble of teachers as in Kim & Rush 2016
("Sequence-Level Knowledge Distillation") and, on raw text, self-training from the ensemble's soft labels.
The target of a token is the mean of the teachers' exact marginals (an ensemble directory counts as one
teacher, its own mean; tagger/tagging/ensemble.py); the loss per token is KL(target || P_s), summed:

    labelled batch:    NLL(gold) + teacher_weight * sum_t KL(q_t || P_s(y_t | x))
    unlabelled batch:  teacher_weight * sum_t KL(q_t || P_s(y_t | x))

The teachers are read-only inputs run by tagging's numpy engine (no gradient, no dropout), once over the
training set and per batch on raw text. They must share the student's vocabulary (the same corpus and
vectors), so a batch encoded for the student is theirs too; a teacher may read a context encoder the
student does not (a character LM, `--embeddings lm:DIR`), and then encodes the batch's tokens again with
its own vocabulary. The student is an ordinary model: the same format and tagging cost as one trained
without teachers.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils import parametrize

from tagger.encode import Batch, Encoded, Encoder, collate, iter_batches
from tagger.errors import InputError
from tagger.tagging.ensemble import exact_marginals
from tagger.tagging.tagger import Tagger
from tagger.training.model import BiLSTMCRF, as_tensors
from tagger.vocab import Vocab

TINY = 1e-30  # a student marginal that underflowed to 0 is read as this (its target is 0 too, or nearly)


class Teachers:
    """The teachers' engines, each with its own Encoder when its context encoder is not the student's;
    `marginals` gives the mean of their exact token marginals for a batch."""

    def __init__(self, taggers: Sequence[Tagger], student: Vocab):
        same = [t.vocab.context_kind == student.context_kind and t.vocab.context == student.context for t in taggers]
        self.engines = [(t.engine, None if own else Encoder(t.vocab)) for t, own in zip(taggers, same)]

    def marginals(self, batch: Batch, items: Sequence[Encoded]) -> np.ndarray:
        """(B, T, K) float32: the mean over teachers of P(y_t = k | x), 0 on padding; items: the batch's
        sentences, for a teacher that encodes their tokens itself."""
        total = sum(exact_marginals(e, batch if own is None else collate([own(s.words) for s in items]))
                    for e, own in self.engines)
        return (total / len(self.engines)).astype(np.float32)

    def targets(self, encoded: Sequence[Encoded], batch_size: int = 256) -> list[np.ndarray]:
        """Each sentence's (T, K) target, computed once (the labelled set: every epoch would repeat it)."""
        out: list = [None] * len(encoded)
        for ids, batch in iter_batches(encoded, batch_size, mixed=True):
            found = self.marginals(batch, [encoded[i] for i in ids])  # (B, T, K)
            for row, i in enumerate(ids):
                out[i] = found[row, : len(encoded[i])]
        return out


def load(paths: Sequence[str | Path], vocab: Vocab) -> Teachers:
    """The teacher models (or ensembles) at `paths`, checked against the student's vocabulary: InputError
    naming the teacher whose tags or vocabulary differ."""
    taggers = []
    for path in paths:
        teacher = Tagger.load(path)
        if teacher.tags != list(vocab.tags.items):
            raise InputError(f"--teacher: its tags ({', '.join(teacher.tags)}) differ from the student's "
                             f"({', '.join(vocab.tags.items)})", path=str(path))
        if _shared(teacher.vocab) != _shared(vocab):
            raise InputError("--teacher: its vocabulary differs from the student's: train the student on the same "
                             "corpus with the same --embeddings and vocabulary settings as the teacher", path=str(path))
        taggers.append(teacher)
    return Teachers(taggers, vocab)


def _shared(vocab: Vocab) -> dict:
    """What a teacher's vocabulary must share with the student's: all but its context encoder's characters."""
    return {k: v for k, v in vocab.to_json().items() if k not in ("context", "context_kind")}


def student_marginals(emissions: Tensor, start: Tensor, trans: Tensor, end: Tensor) -> Tensor:
    """(B, T, K) float64 P(y_t = k | x) under the student's CRF, differentiable: forward-backward over a
    batch of one length, in probability space rescaled at every step (as crf.log_partition does; forbidden
    moves, scored FORBIDDEN, become exact zeros). emissions (B, T, K); start, end (K,); trans (K, K)."""
    e = emissions.double()
    p = torch.exp(e - e.max(2, keepdim=True).values).unbind(1)  # T x (B, K)
    step = torch.exp(trans.double() - trans.max().double())  # (K, K) previous -> next
    alpha = [_norm(torch.exp(start.double() - start.max().double()) * p[0])]  # each (B, K)
    for t in range(1, len(p)):
        alpha.append(_norm((alpha[-1] @ step) * p[t]))
    beta = [_norm(torch.exp(end.double() - end.max().double()).expand_as(p[-1]))]
    for t in range(len(p) - 2, -1, -1):
        beta.append(_norm((p[t + 1] * beta[-1]) @ step.T))
    joint = torch.stack(alpha, 1) * torch.stack(beta[::-1], 1)  # (B, T, K) ∝ P(y_t = k | x)
    return joint / joint.sum(2, keepdim=True)


def _norm(x: Tensor) -> Tensor:
    """Rows scaled to sum to 1: the rescaling that keeps long sentences from underflowing."""
    return x / x.sum(1, keepdim=True)


def divergence(target: Tensor, student: Tensor) -> Tensor:
    """sum over the batch's tokens of KL(target || student); target and student (B, T, K), rows summing to 1."""
    target = target.double()
    return (torch.special.xlogy(target, target) - target * student.clamp_min(TINY).log()).sum()


def loss(model: BiLSTMCRF, batch: Batch, targets: Tensor | np.ndarray, labelled: bool) -> Tensor:
    """The student's loss on a batch of one length with the teachers' marginals `targets` (B, T, K): the gold
    tags' NLL plus teacher_weight times the KL (labelled), or the weighted KL alone (unlabelled)."""
    batch = as_tensors(batch)
    if not bool(batch.mask.all()):
        raise ValueError("distillation takes batches of sentences of one length")
    emissions = model.emissions(batch)  # (B, T, K), with dropout as in labelled training
    crf = model.crf
    with parametrize.cached():
        probs = student_marginals(emissions, crf.start_transitions, crf.transitions, crf.end_transitions)
    soft = model.config.teacher_weight * divergence(torch.as_tensor(targets), probs)
    if not labelled:
        return soft.to(emissions.dtype)
    return (crf.nll(emissions, batch.tags, batch.mask) + soft).to(emissions.dtype)


def stacked(targets: Sequence[np.ndarray]) -> np.ndarray:
    """(B, T, K) from the targets of a batch's sentences, all of one length."""
    return np.stack(targets)
