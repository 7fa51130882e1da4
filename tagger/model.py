"""The network: word + casing + character (+ feature) embeddings -> BiLSTM -> emissions -> constrained CRF."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence, pad_packed_sequence

from tagger.config import Config
from tagger.crf import ConstrainedCRF
from tagger.encode import Batch
from tagger.lite import gate_layout
from tagger.vocab import CASINGS


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
    def __init__(self, config: Config, num_words: int, num_frozen: int, num_chars: int, num_tags: int,
                 feature_sizes: list[int], allowed: tuple[list[bool], list[list[bool]], list[bool]]):
        super().__init__()
        c = config
        self.word = nn.Embedding(num_words, c.word_dim, padding_idx=0)
        # pretrained vectors of words never seen in training: looked up, never trained
        self.register_buffer("frozen", torch.zeros(num_frozen, c.word_dim))
        self.casing = nn.Embedding(len(CASINGS), c.casing_dim, padding_idx=0)
        self.chars = {"cnn": lambda: CharCNN(num_chars, c.char_dim, c.char_filters, c.char_kernel, c.char_dropout),
                      "lstm": lambda: CharLSTM(num_chars, c.char_dim, c.char_filters, c.char_dropout),
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
        self.pretrained_swap = c.pretrained_swap
        self.pretrained: Tensor | None = None  # (num_words, word_dim): keep_pretrained sets both for training
        self.has_pretrained: Tensor | None = None  # (num_words,) bool

    def keep_pretrained(self, rows: Tensor, start: Tensor) -> None:
        """The pretrained vectors that rows (T,) of the word embedding started from, start (T, word_dim):
        training reads them instead of the rows now and then (pretrained_swap, tagger/unseen.py)."""
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

    def emissions(self, batch: Batch) -> Tensor:
        batch = batch.tensors()
        if not self.training and not len(self.features) and isinstance(self.lstm, nn.LSTM):
            return self.emit(self.tag_lstm(batch))
        parts = [self.embed_words(batch.words), self.casing(batch.casing)]
        if self.chars is not None:
            spelt = self.chars(batch.spellings, batch.spelling_lengths)  # (U, char_dim)
            parts.append(spelt[batch.types])  # (B, T, char_dim)
        parts += [emb(batch.features[:, i]) for i, emb in enumerate(self.features)]
        x = self.dropout(torch.cat(parts, -1))  # (B, T, in_dim)
        if bool(batch.mask.all()):
            x, _ = self.lstm(x)  # (B, T, 2*hidden)
        else:
            x = self.ragged_lstm(x, batch.mask)
        return self.emit(self.dropout(x))  # (B, T, num_tags)

    def tag_lstm(self, batch: Batch) -> Tensor:
        """The BiLSTM's outputs (B, T, 2*hidden) at tagging time (no dropout, no feature columns), with the
        first layer's input projection computed once per distinct word of the batch: the same numbers as
        projecting every token, at a fraction of the cost."""
        typed = [self.embed_words(batch.type_words), self.casing(batch.type_casing)]
        if self.chars is not None:
            typed.append(self.chars(batch.spellings, batch.spelling_lengths))
        w_ih, bias, w_hh = _joint_weights(self.lstm, 0)
        table = torch.baddbmm(bias, torch.cat(typed, 1).expand(2, -1, -1), w_ih)  # (2, U, 4*hidden)
        h = _bilstm(table, batch.types.t(), batch.mask, w_hh)  # (T, B, 2*hidden)
        return self._layers(h, batch.mask, first=1).transpose(0, 1)

    def ragged_lstm(self, x: Tensor, mask: Tensor) -> Tensor:
        """The BiLSTM over left-aligned, padded sentences of different lengths, each sentence getting exactly
        its outputs alone (packed sequences are far slower on CPU). x (B, T, in_dim) -> (B, T, 2*hidden)."""
        if not isinstance(self.lstm, nn.LSTM):  # a quantised LSTM: packing is its exact way
            packed = pack_padded_sequence(x, mask.sum(1), batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]
        return self._layers(x.transpose(0, 1), mask, first=0).transpose(0, 1)

    def _layers(self, h: Tensor, mask: Tensor, first: int) -> Tensor:
        """BiLSTM layers `first`, first + 1, ... over time-major inputs: h (T, B, D) -> (T, B, 2*hidden)."""
        rows = torch.arange(h.shape[0] * h.shape[1]).view(h.shape[:2])  # (T, B) each step's rows of the table
        for layer in range(first, self.lstm.num_layers):
            w_ih, bias, w_hh = _joint_weights(self.lstm, layer)
            if layer:
                h = nn.functional.dropout(h, self.lstm.dropout, self.training)
            table = torch.baddbmm(bias, h.reshape(1, -1, h.shape[2]).expand(2, -1, -1), w_ih)  # (2, T*B, 4*hidden)
            h = _bilstm(table, rows, mask, w_hh)
        return h

    def loss(self, batch: Batch) -> Tensor:
        """Negative log-likelihood summed over the batch's sentences."""
        batch = batch.tensors()
        return self.crf.nll(self.emissions(batch), batch.tags, batch.mask)

    def decode(self, batch: Batch) -> list[list[int]]:
        batch = batch.tensors()
        return self.crf.viterbi(self.emissions(batch), batch.mask)

    def tag(self, batch: Batch) -> list[list[int]]:
        """Best tag ids of each sentence, in eval mode and without autograd (as tagger.lite.LiteNetwork.tag)."""
        self.eval()
        with torch.inference_mode():
            return self.decode(batch)


def _joint_weights(lstm: nn.LSTM, layer: int) -> tuple[Tensor, Tensor, Tensor]:
    """One layer's weights for _bilstm, both directions stacked: input (2, in_dim, 4*hidden), summed biases
    (2, 1, 4*hidden), recurrent (2, hidden, 4*hidden). Gates are reordered (i, f, o, g) and the g rows doubled,
    so that one sigmoid gives all four (tanh(x) = 2 sigmoid(2x) - 1; torch's CPU tanh is 4x slower)."""
    order, scale = map(torch.from_numpy, gate_layout(lstm.hidden_size))

    def stacked(name: str) -> Tensor:  # (2, 4*hidden, ...)
        ws = [getattr(lstm, f"{name}_l{layer}{d}")[order] for d in ("", "_reverse")]
        return torch.stack([w * scale.view(-1, *[1] * (w.dim() - 1)) for w in ws])

    bias = (stacked("bias_ih") + stacked("bias_hh")).unsqueeze(1)
    return stacked("weight_ih").transpose(1, 2), bias, stacked("weight_hh").transpose(1, 2)


def _bilstm(table: Tensor, rows: Tensor, mask: Tensor, w_hh: Tensor) -> Tensor:
    """Both directions of one BiLSTM layer, stepping together. table (2, R, 4*hidden): input projections with
    biases, per direction; rows (T, B): each token's row in it; mask (B, T). Returns (T, B, 2*hidden).
    The backward direction starts from a zero state at each sentence's last token, because its state is
    zeroed wherever the mask is off."""
    seq_len, batch, hidden = rows.shape[0], rows.shape[1], w_hh.shape[1]
    on = mask.t().unsqueeze(2).to(table.dtype)  # (T, B, 1)
    keep = torch.stack([torch.ones_like(on), on.flip(0)], 1)  # (T, 2, B, 1): step s reads t = s and T-1-s
    h = c = table.new_zeros(2, batch, hidden)
    forward, backward = [], []
    for s in range(seq_len):
        gates = torch.stack([table[0].index_select(0, rows[s]), table[1].index_select(0, rows[seq_len - 1 - s])])
        act = torch.sigmoid(torch.baddbmm(gates, h, w_hh))  # (2, B, 4*hidden): i, f, o, (g + 1) / 2
        i, f, o, g = act.split(hidden, 2)
        c = (torch.addcmul(f * c, i, g, value=2) - i) * keep[s]  # f c + i tanh(.), tanh = 2 (g + 1) / 2 - 1
        h = torch.addcmul(-o, o, torch.sigmoid(2 * c), value=2)  # o tanh(c)
        forward.append(h[0])
        backward.append(h[1])
    return torch.cat([torch.stack(forward), torch.stack(backward[::-1])], 2)
