"""What a training step minimises, as one module: the CRF's loss on labelled batches, cross-view training's on
unlabelled ones (tagger/training/cvt.py), the teachers' marginals as well when distilling
(tagger/training/teachers.py). Its forward is the call DistributedDataParallel hooks: distributed.py wraps it
and knows nothing of which loss a batch gets.
"""
from __future__ import annotations

import torch
from torch import nn

from tagger.encode import Batch
from tagger.training import cvt, teachers


class Objective(nn.Module):
    """The summed loss of a batch as `forward`, for the network `model` (and cross-view training's `views`,
    trained on the unlabelled batches only). Its parameters are named `model.*` and `views.*`: the names the
    optimizer, the checkpoints and DDP's row tables use."""

    def __init__(self, model: nn.Module, views: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.views = views
        self.shape: tuple[int, int] | None = None  # the last batch's (sentences, length), for averaging's timing

    @property
    def leaves_parameters_unused(self) -> bool:
        """Whether a step may leave parameters without a gradient (the views on labelled batches; the output
        layer and CRF on unlabelled ones): DDP must then look for them."""
        return self.views is not None

    def forward(self, batch: Batch, unlabeled: bool = False, targets: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's summed loss. unlabeled: raw text (cross-view training's loss, or the teachers');
        targets (B, T, K): the teachers' marginals, learnt as well (with the gold tags when labelled)."""
        self.shape = tuple(batch.words.shape)
        if targets is not None:
            return teachers.loss(self.model, batch, targets, labelled=not unlabeled)
        if unlabeled:
            return cvt.loss(self.model, self.views, batch)
        return self.model.loss(batch)
