"""The network: word + casing + character (+ feature) embeddings -> BiLSTM -> emissions -> constrained CRF."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence, pad_packed_sequence

from tagger.config import Config
from tagger.crf import ConstrainedCRF
from tagger.encode import Batch
from tagger.vocab import CASINGS


class CharCNN(nn.Module):
    """Max-pooled convolution over each word's characters (Ma & Hovy 2016).

    Works on the batch's distinct spellings laid end to end with padding only between words, and the
    convolution is one matrix product over stacked character windows: on CPU both matter, since the
    naive (tokens, longest word) layout spends most of its time on repeated words and padding.
    """

    def __init__(self, num_chars: int, dim: int, filters: int, kernel: int):
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=0)
        self.window = nn.Linear(kernel * dim, filters)
        self.kernel = kernel
        self.out_dim = filters

    def forward(self, spellings: Tensor, lengths: Tensor) -> Tensor:
        """spellings (N,) character ids, lengths (U,) per word; returns (U, filters)."""
        gap = self.kernel // 2  # zero vectors before, between and after words: no window spans two words
        word = torch.repeat_interleave(torch.arange(len(lengths)), lengths)  # (N,) each character's word
        at = torch.arange(len(spellings)) + gap * (word + 1)  # (N,) place in the gapped layout
        x = self.embed(spellings)  # (N, dim)
        laid = x.new_zeros(len(spellings) + gap * (len(lengths) + 1), x.shape[1]).index_copy(0, at, x)
        windows = torch.cat([laid[at + (i - gap)] for i in range(self.kernel)], 1)  # (N, kernel*dim)
        y = self.window(windows)  # (N, filters)
        return torch.segment_reduce(y, "max", lengths=lengths, axis=0)  # (U, filters)


class CharLSTM(nn.Module):
    """Final states of a BiLSTM over each word's characters (Lample et al. 2016)."""

    def __init__(self, num_chars: int, dim: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, spellings: Tensor, lengths: Tensor) -> Tensor:
        """spellings (N,) character ids, lengths (U,) per word; returns (U, 2*hidden)."""
        words = torch.split(self.embed(spellings), lengths.tolist())  # U x (length, dim)
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
    def __init__(self, config: Config, num_words: int, num_frozen: int, num_chars: int, num_tags: int,
                 feature_sizes: list[int], allowed: tuple[list[bool], list[list[bool]], list[bool]]):
        super().__init__()
        c = config
        self.word = nn.Embedding(num_words, c.word_dim, padding_idx=0)
        # pretrained vectors of words never seen in training: looked up, never trained
        self.register_buffer("frozen", torch.zeros(num_frozen, c.word_dim))
        self.casing = nn.Embedding(len(CASINGS), c.casing_dim, padding_idx=0)
        self.chars = {"cnn": lambda: CharCNN(num_chars, c.char_dim, c.char_filters, c.char_kernel),
                      "lstm": lambda: CharLSTM(num_chars, c.char_dim, c.char_filters),
                      "none": lambda: None}[c.char_encoder]()
        self.features = nn.ModuleList(nn.Embedding(n, c.feature_dim, padding_idx=0) for n in feature_sizes)
        in_dim = (c.word_dim + c.casing_dim + (self.chars.out_dim if self.chars else 0)
                  + c.feature_dim * len(feature_sizes))
        self.dropout = LockedDropout(c.dropout)
        self.lstm = nn.LSTM(in_dim, c.hidden_size, c.num_layers, batch_first=True, bidirectional=True,
                            dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.emit = nn.Linear(2 * c.hidden_size, num_tags)
        self.crf = ConstrainedCRF(num_tags, *allowed)
        self.word_dropout = c.word_dropout

    def embed_words(self, words: Tensor) -> Tensor:
        n = self.word.num_embeddings
        if self.training and self.word_dropout:
            drop = torch.rand(words.shape) < self.word_dropout
            words = words.masked_fill(drop & (words > 0), 1)  # -> <unk>
        own = self.word(words.clamp(max=n - 1))  # (B, T, word_dim)
        if not len(self.frozen):
            return own
        pretrained = nn.functional.embedding((words - n).clamp(min=0), self.frozen)
        return torch.where((words >= n).unsqueeze(-1), pretrained, own)

    def emissions(self, batch: Batch) -> Tensor:
        parts = [self.embed_words(batch.words), self.casing(batch.casing)]
        if self.chars is not None:
            spelt = self.chars(batch.spellings, batch.spelling_lengths)  # (U, char_dim)
            parts.append(spelt[batch.types])  # (B, T, char_dim)
        parts += [emb(batch.features[:, i]) for i, emb in enumerate(self.features)]
        x = self.dropout(torch.cat(parts, -1))  # (B, T, in_dim)
        if bool(batch.mask.all()):
            x, _ = self.lstm(x)  # (B, T, 2*hidden)
        else:
            x = self.ragged_lstm(x, batch.mask.sum(1))
        return self.emit(self.dropout(x))  # (B, T, num_tags)

    def ragged_lstm(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The BiLSTM over sentences of different lengths, left-aligned and padded: each sentence's outputs
        equal those of the sentence alone. The backward direction reads every sentence reversed in place, so
        both directions run as plain padded LSTMs (packed sequences are far slower on CPU)."""
        if not isinstance(self.lstm, nn.LSTM):  # a quantised LSTM: packing is its exact way
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]
        t = torch.arange(x.shape[1])
        flip = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)  # (B, T), its own inverse
        for layer in range(self.lstm.num_layers):
            if layer:
                x = nn.functional.dropout(x, self.lstm.dropout, self.training)
            reverse = _along(_lstm(_along(x, flip), self.lstm, f"l{layer}_reverse"), flip)
            x = torch.cat([_lstm(x, self.lstm, f"l{layer}"), reverse], 2)  # (B, T, 2*hidden)
        return x

    def loss(self, batch: Batch) -> Tensor:
        """Negative log-likelihood summed over the batch's sentences."""
        return self.crf.nll(self.emissions(batch), batch.tags, batch.mask)

    def decode(self, batch: Batch) -> list[list[int]]:
        return self.crf.viterbi(self.emissions(batch), batch.mask)


def _along(x: Tensor, index: Tensor) -> Tensor:
    """x (B, T, D) reordered along time by index (B, T)."""
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.shape[2]))


def _lstm(x: Tensor, lstm: nn.LSTM, suffix: str) -> Tensor:
    """One direction of one layer of `lstm`, run forward over x (B, T, D); returns (B, T, hidden)."""
    params = [getattr(lstm, f"{name}_{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    h0 = x.new_zeros(1, x.shape[0], lstm.hidden_size)
    return torch.lstm(x, (h0, h0), params, True, 1, 0.0, False, False, True)[0]
