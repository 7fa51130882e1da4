"""The network for training (torch): word + casing + character (+ bigram, lexicon, feature) inputs -> BiLSTM -> emissions
-> constrained CRF loss. Tagging runs tagger/tagging/engine.py on the same tensors (tagger/tensors.py names them);
`Trainable` pairs this network with its config and vocabulary, saves it and hands it to the tagging engine.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_sequence

from corpora import schemes
from tagger import store
from tagger import tensors as spec
from tagger.config import Config, model_scheme
from tagger.encode import Batch, Encoder
from tagger.tagging.tagger import Tagger, read_saved
from tagger.tensors import sizes_of
from tagger.training.crf import ConstrainedCRF
from tagger.vocab import CASINGS, Vocab


def as_tensors(batch: Batch) -> Batch:
    """The same batch as torch tensors sharing the arrays' memory (itself if it already is)."""
    if isinstance(batch.mask, torch.Tensor):
        return batch
    return Batch(**{k: None if v is None else torch.from_numpy(v) for k, v in vars(batch).items()})


class CharCNN(nn.Module):
    """Max-pooled convolution over each word's characters (Ma & Hovy 2016).

    Works on the batch's distinct spellings laid end to end with padding only between words, and the
    convolution is one matrix product over stacked character windows: on CPU both matter, since the
    naive (tokens, longest word) layout spends most of its time on repeated words and padding.
    """

    def __init__(self, num_chars: int, dim: int, filters: int, kernel: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)  # on the character embeddings, as Ma & Hovy
        self.window = nn.Linear(kernel * dim, filters)
        self.kernel = kernel
        self.out_dim = filters

    def forward(self, spellings: Tensor, lengths: Tensor) -> Tensor:
        """spellings (N,) character ids, lengths (U,) per word; returns (U, filters)."""
        gap = self.kernel // 2  # zero vectors before, between and after words: no window spans two words
        word = torch.repeat_interleave(torch.arange(len(lengths)), lengths)  # (N,) each character's word
        at = torch.arange(len(spellings)) + gap * (word + 1)  # (N,) place in the gapped layout
        x = self.dropout(self.embed(spellings))  # (N, dim)
        laid = x.new_zeros(len(spellings) + gap * (len(lengths) + 1), x.shape[1]).index_copy(0, at, x)
        windows = torch.cat([laid[at + (i - gap)] for i in range(self.kernel)], 1)  # (N, kernel*dim)
        y = self.window(windows)  # (N, filters)
        return torch.segment_reduce(y, "max", lengths=lengths, axis=0)  # (U, filters)


class CharLSTM(nn.Module):
    """Final states of a BiLSTM over each word's characters (Lample et al. 2016)."""

    def __init__(self, num_chars: int, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, spellings: Tensor, lengths: Tensor) -> Tensor:
        """spellings (N,) character ids, lengths (U,) per word; returns (U, 2*hidden)."""
        words = torch.split(self.dropout(self.embed(spellings)), lengths.tolist())  # U x (length, dim)
        _, (h, _) = self.lstm(pack_sequence(words, enforce_sorted=False))  # h (2, U, hidden)
        return h.transpose(0, 1).reshape(len(words), -1)


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sentence, shared by all its time steps (Gal & Ghahramani 2016).

    Also far cheaper than nn.Dropout here: a (B, 1, D) mask instead of a Bernoulli draw per element.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not self.p:
            return x
        keep = (torch.rand(x.shape[0], 1, x.shape[2]) >= self.p).to(x.dtype)  # (B, 1, D)
        return x * keep / (1 - self.p)


class BiLSTMCRF(nn.Module):
    def __init__(self, config: Config, sizes: spec.Sizes,
                 allowed: tuple[list[bool], list[list[bool]], list[bool]]):
        super().__init__()
        c = self.config = config.resolved()
        self.sizes = sizes
        num_words, num_frozen, num_chars, num_tags = sizes.words, sizes.frozen, sizes.chars, sizes.tags
        feature_sizes = sizes.features
        self.word = nn.Embedding(num_words, c.word_dim, padding_idx=0)
        # pretrained vectors of words never seen in training: looked up, never trained
        self.register_buffer("frozen", torch.zeros(num_frozen, c.word_dim))
        self.casing = nn.Embedding(len(CASINGS), c.casing_dim, padding_idx=0)
        self.chars = {"cnn": lambda: CharCNN(num_chars, c.char_dim, c.char_filters, c.char_kernel, c.char_dropout),
                      "lstm": lambda: CharLSTM(num_chars, c.char_dim, c.char_filters, c.char_dropout),
                      "none": lambda: None}[c.char_encoder]()
        self.bigrams = nn.Embedding(sizes.bigrams, c.bigram_dim, padding_idx=0) if c.bigrams == "on" else None
        self.lexicon = c.lexicon  # its features go into the BiLSTM as they are
        # the frozen context encoder's tensors (tagger/tensors.py's context.*), numpy, outside the state dict:
        # never trained, so not in the optimizer, the checkpoint's trainer state or DDP's buffers
        self.context: dict[str, np.ndarray] = {}
        self.features = nn.ModuleList(nn.Embedding(n, c.feature_dim, padding_idx=0) for n in feature_sizes)
        in_dim = spec.input_size(c, len(feature_sizes))
        self.dropout = LockedDropout(c.dropout)
        self.lstm = nn.LSTM(in_dim, c.hidden_size, c.num_layers, batch_first=True, bidirectional=True,
                            dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.emit = nn.Linear(2 * c.hidden_size, num_tags)
        self.crf = ConstrainedCRF(num_tags, *allowed)
        self.word_dropout = c.word_dropout
        self.pretrained_swap = c.pretrained_swap
        self.pretrained: Tensor | None = None  # (num_words, word_dim): keep_pretrained sets both for training
        self.has_pretrained: Tensor | None = None  # (num_words,) bool

    def keep_pretrained(self, rows: Tensor, start: Tensor) -> None:
        """The pretrained vectors that rows (T,) of the word embedding started from, start (T, word_dim):
        training reads them instead of the rows now and then (pretrained_swap, tagger/training/unseen.py)."""
        self.pretrained = torch.zeros_like(self.word.weight, requires_grad=False)
        self.pretrained[rows] = start
        self.has_pretrained = torch.zeros(len(self.pretrained), dtype=torch.bool)
        self.has_pretrained[rows] = True

    def embed_words(self, words: Tensor) -> Tensor:
        n = self.word.num_embeddings
        if self.training and self.word_dropout:
            drop = torch.rand(words.shape) < self.word_dropout
            words = words.masked_fill(drop & (words > 0), 1)  # -> <unk>
        own = self.word(words.clamp(max=n - 1))  # (B, T, word_dim)
        if self.training and self.pretrained_swap and self.pretrained is not None:
            rows = words.clamp(max=n - 1)
            swap = (torch.rand(words.shape) < self.pretrained_swap) & (words < n) & self.has_pretrained[rows]
            own = torch.where(swap.unsqueeze(-1), self.pretrained[rows], own)  # (B, T, word_dim)
        if not len(self.frozen):
            return own
        pretrained = nn.functional.embedding((words - n).clamp(min=0), self.frozen)
        return torch.where((words >= n).unsqueeze(-1), pretrained, own)

    def _dropped(self, ids: Tensor) -> Tensor:
        """Ids replaced by <unk> (1) at the word-dropout rate while training: unseen bigrams are common in
        Chinese test text, and their <unk> row must be trained."""
        if not (self.training and self.word_dropout):
            return ids
        return ids.masked_fill((torch.rand(ids.shape) < self.word_dropout) & (ids > 0), 1)

    def emissions(self, batch: Batch) -> Tensor:
        """(B, T, num_tags) scores of a batch of sentences of one length, as training batches are (tagging
        batches mix lengths and go to tagger/tagging/engine.py)."""
        return self.emit(self.dropout(self.states(batch)))  # (B, T, num_tags)

    def states(self, batch: Batch) -> Tensor:
        """(B, T, 2*hidden) the BiLSTM's outputs, forward direction first (what cross-view training's
        auxiliary modules read, tagger/training/cvt.py)."""
        batch = as_tensors(batch)
        if not bool(batch.mask.all()):
            raise ValueError("the training network takes batches of sentences of one length")
        parts = [self.embed_words(batch.words), self.casing(batch.casing)]
        if self.chars is not None:
            spelt = self.chars(batch.spellings, batch.spelling_lengths)  # (U, char_dim)
            parts.append(spelt[batch.types])  # (B, T, char_dim)
        if self.bigrams is not None:
            parts.append(self.bigrams(self._dropped(batch.bigrams)))  # (B, T, bigram_dim)
        if self.lexicon:
            parts.append(batch.lexicon)  # (B, T, lexicon.FEATURES)
        if self.config.context != "none":
            if batch.context_features is None:
                raise ValueError("training batches bring their context features (tagger/training/setup.py's prepare_data)")
            parts.append(batch.context_features)  # (B, T, lac.FEATURES)
        parts += [emb(batch.features[:, i]) for i, emb in enumerate(self.features)]
        x = self.dropout(torch.cat(parts, -1))  # (B, T, in_dim)
        return self.lstm(x)[0]  # (B, T, 2*hidden)

    def loss(self, batch: Batch) -> Tensor:
        """Negative log-likelihood summed over the batch's sentences."""
        batch = as_tensors(batch)
        return self.crf.nll(self.emissions(batch), batch.tags, batch.mask)

    def tensors(self) -> dict[str, np.ndarray]:
        """The network's tensors under tagger/tensors.py's names, as numpy arrays sharing the live weights'
        memory (the CRF scores, with the forbidden moves set, are computed)."""
        with torch.no_grad():
            state = {k: v.detach().numpy() for k, v in self.state_dict().items()}
        tensors = spec.from_torch(state, list(spec.shapes(self.config, self.sizes))) | self.context
        # rounded as they are saved, so that dev is scored on the numbers the saved model will have
        return tensors | {k: tensors[k].astype(np.float16) for k in spec.HALF if k in tensors}

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        """Copy saved tensors (tagger/tensors.py's names) into the network."""
        state = self.state_dict()
        with torch.no_grad():
            for name, value in tensors.items():
                if spec.is_context(name):
                    self.context[name] = np.asarray(value, dtype=np.float32)
                    continue
                state[spec.torch_name(name)].copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))


@dataclasses.dataclass(frozen=True)
class Trainable:
    """The torch network with its config and vocabulary: what training builds, checkpoints and resumes. Frozen:
    a change (cross-view training's views, a resumed config) is a new Trainable (dataclasses.replace); the
    network's weights are what training changes."""

    config: Config
    vocab: Vocab
    model: BiLSTMCRF
    views: nn.Module | None = None  # cross-view training's auxiliary modules (tagger/training/cvt.py): in
                                    # checkpoints, never in the saved model

    def __post_init__(self):
        object.__setattr__(self, "encode", Encoder(self.vocab))  # made from the vocabulary, with it

    @classmethod
    def build(cls, config: Config, vocab: Vocab) -> Trainable:
        """A fresh, untrained network sized for this vocabulary, constrained by the model's tagging scheme."""
        tags, scheme = vocab.tags.items, model_scheme(config, vocab.source_scheme)
        if scheme is None:
            allowed = [True] * len(tags), [[True] * len(tags) for _ in tags], [True] * len(tags)
        else:
            allowed = schemes.allowed_transitions(tags, scheme)
        config = config.resolved()
        return cls(config, vocab, BiLSTMCRF(config, sizes_of(vocab), allowed))

    @classmethod
    def load(cls, path: str | Path) -> Trainable:
        """A saved model directory (any format version) as a trainable network."""
        return cls.from_saved(path, *store.load_model(path))

    @classmethod
    def from_saved(cls, path: str | Path, config: Config, vocab_json: dict, tensors: dict[str, np.ndarray],
                   meta: dict) -> Trainable:
        """A trainable network from what store.load_model read in `path` (a model or a checkpoint), read as
        Tagger.load reads it (tagger/tagging/tagger.py read_saved)."""
        vocab, tensors = read_saved(path, config, vocab_json, tensors, meta)
        trainable = cls.build(config, vocab)
        trainable.model.load_tensors(tensors)
        return trainable

    @property
    def scheme(self) -> str | None:
        return model_scheme(self.config, self.vocab.source_scheme)

    def as_tagger(self) -> Tagger:
        """The tagging engine over the live weights (the embeddings are not copied): what scores dev."""
        return Tagger(self.config, self.vocab, self.model.tensors())

    def save(self, path: str | Path, extra: dict | None = None, frozen: bool = True) -> None:
        """Write a model directory; frozen=False leaves out the pretrained-only words and rows (a checkpoint
        whose vectors file gives them back: tagger/training/checkpoints.py)."""
        vocab, tensors = self.vocab.to_json(), self.model.tensors()
        if not frozen:
            vocab["frozen_words"], tensors["words.frozen"] = [], tensors["words.frozen"][:0]
        store.save_model(path, self.config, vocab, tensors, extra, self.vocab.lexicon)
