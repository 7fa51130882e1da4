"""What a training step minimises (tagger/training/objective.py): one module picks each batch's loss, the
distributed plumbing only wraps it."""
from __future__ import annotations

import torch
from conftest import TINY_CONFIG, make_sentences

from tagger.config import Config
from tagger.encode import collate
from tagger.training import cvt, teachers
from tagger.training.model import Trainable
from tagger.training.objective import Objective
from tagger.vocab import build_vocab


def network() -> tuple[Trainable, object]:
    pairs = make_sentences(8, seed=3)
    vocab = build_vocab((t for t, _ in pairs), (g for _, g in pairs), source_scheme="iob2")
    torch.manual_seed(0)
    trainable = Trainable.build(Config.from_dict(TINY_CONFIG), vocab)
    trainable.model.eval()  # no dropout: the same loss twice
    length = len(pairs[0][0])
    same = [trainable.encode(t, g) for t, g in pairs if len(t) == length]
    return trainable, collate(same)


def test_each_batch_gets_its_loss():
    trainable, batch = network()
    views = cvt.Views.for_model(trainable.model)
    objective = Objective(trainable.model, views)
    assert torch.equal(objective(batch), trainable.model.loss(batch))
    assert torch.equal(objective(batch, unlabeled=True), cvt.loss(trainable.model, views, batch))
    targets = torch.full((*batch.words.shape, len(trainable.vocab.tags)), 1 / len(trainable.vocab.tags))
    assert torch.equal(objective(batch, targets=targets), teachers.loss(trainable.model, batch, targets, labelled=True))
    assert objective.leaves_parameters_unused and not Objective(trainable.model).leaves_parameters_unused


def test_its_parameters_keep_the_names_checkpoints_use():
    trainable, _ = network()
    names = {name for name, _ in Objective(trainable.model, cvt.Views.for_model(trainable.model)).named_parameters()}
    assert {name.split(".")[0] for name in names} == {"model", "views"}
