"""Cross-view training (Clark et al. 2018, "Semi-Supervised Sequence Modeling with Cross-View Training"):
learning from unlabelled sentences with the same network at tagging time.

On an unlabelled batch the full model, without dropout, gives each token a distribution over tags: the CRF's
marginals (exact, by the forward-backward algorithm). Four auxiliary prediction modules read restricted
views of the BiLSTM, with dropout, and learn to match it:

    forward   the forward LSTM at t        (the words up to t)
    backward  the backward LSTM at t       (the words from t on)
    past      the forward LSTM at t - 1    (only the words before t)
    future    the backward LSTM at t + 1   (only the words after t)

Their loss, KL(full || view) summed over tokens and views, trains the modules and, through them, the shared
embeddings and BiLSTM: the encoder learns representations from which each partial view predicts what the
full model does. The full model's distribution is a fixed target (no gradient). Labelled and unlabelled
batches alternate (tagger/training/loop.py). The modules are used in training only: the saved model has the
same tensors, format and tagging cost as one trained without unlabelled text.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from tagger.config import Config
from tagger.encode import Batch
from tagger.errors import ConfigError
from tagger.training.crf import ConstrainedCRF, log_partition
from tagger.training.model import BiLSTMCRF, as_tensors

VIEWS = ("forward", "backward", "past", "future")
PREFIX = "views."  # the modules' tensors in a checkpoint's trainer.safetensors


class Views(nn.Module):
    """The auxiliary prediction modules: one hidden layer (ReLU) each over its view, then tag scores."""

    def __init__(self, hidden_size: int, num_tags: int, width: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(hidden_size, width), nn.ReLU(), nn.Linear(width, num_tags))
                                   for _ in VIEWS)  # in VIEWS' order

    @classmethod
    def for_model(cls, model: BiLSTMCRF) -> Views:
        """Modules sized for `model` (check_config's errors for one they cannot serve)."""
        c = check_config(model.config)
        return cls(c.hidden_size, model.emit.out_features, c.hidden_size)

    def forward(self, states: Tensor) -> dict[str, Tensor]:
        """states (B, T, 2*hidden), forward direction first -> each view's tag scores (B, T, num_tags)."""
        h = self.hidden_size
        fwd, bwd = states[..., :h], states[..., h:]  # (B, T, hidden) each
        none = fwd.new_zeros(fwd.shape[0], 1, h)  # no word before the first token, none after the last
        views = {"forward": fwd, "backward": bwd, "past": torch.cat([none, fwd[:, :-1]], 1),
                 "future": torch.cat([bwd[:, 1:], none], 1)}
        return {name: head(views[name]) for name, head in zip(VIEWS, self.heads)}


def check_config(config: Config) -> Config:
    """ConfigError for a model cross-view training cannot train: one with feature columns (raw text has
    none), or a BiLSTM of several layers (above the first, each direction has read both, so no view is
    restricted)."""
    if config.features:
        raise ConfigError("--unlabeled cannot be combined with --features: raw text has no feature columns")
    if config.num_layers != 1:
        raise ConfigError(f"--unlabeled (cross-view training) needs num_layers = 1, not {config.num_layers}: "
                          "above the first layer, each direction has read the whole sentence")
    return config


def marginals(crf: ConstrainedCRF, emissions: Tensor, mask: Tensor) -> Tensor:
    """(B, T, num_tags) P(tag at t | sentence) under the CRF: the gradient of log Z with respect to the
    emissions, which is the forward-backward algorithm. No gradient flows back into the model."""
    with torch.enable_grad(), parametrize.cached():
        scores = emissions.detach().requires_grad_()
        log_z = log_partition(scores, mask, crf.start_transitions.detach(), crf.transitions.detach(),
                              crf.end_transitions.detach())
        (probs,) = torch.autograd.grad(log_z.sum(), scores)
    return probs.clamp(0.0, 1.0) * mask.unsqueeze(-1)  # rounding leaves -1e-17 where a tag is impossible


def disagreement(target: Tensor, scores: dict[str, Tensor], mask: Tensor) -> Tensor:
    """Sum over the views and the masked tokens of KL(target || softmax(view's scores)); zero when every view
    gives the target's distribution. target (B, T, K) rows summing to 1; each view (B, T, K); mask (B, T)."""
    m = mask.to(target.dtype).unsqueeze(-1)  # (B, T, 1)
    own = torch.special.xlogy(target, target)  # (B, T, K): p log p, 0 where p is 0 (a forbidden tag)
    total = target.new_zeros(())
    for view in scores.values():
        total = total + ((own - target * view.log_softmax(-1)) * m).sum()
    return total


def loss(model: BiLSTMCRF, views: Views, batch: Batch) -> Tensor:
    """The cross-view loss of an unlabelled batch (sentences of one length), summed over its sentences."""
    batch = as_tensors(batch)
    with torch.no_grad():
        model.eval()  # the full view: no dropout of any kind
        target = marginals(model.crf, model.emissions(batch), batch.mask)  # (B, T, K)
        model.train()
    states = model.dropout(model.states(batch))  # (B, T, 2*hidden), noised as in labelled training
    return disagreement(target, views(states), batch.mask)
