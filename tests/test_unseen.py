"""Pretrained words never seen in training (tagger/training/unseen.py): training reads some words from their pretrained
vectors (pretrained_swap), and unseen words follow the fine-tuning drift of their nearest trained words."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, interrupt_loss_at, make_sentences
from safetensors.torch import load_file

from corpora.conll import Sentence
from tagger.api import Tagger
from tagger.config import Config
from tagger.training import loop as training
from tagger.training import unseen
from tagger.training.setup import Inputs

# trained rows 2..4 start at these pretrained vectors (rows 0, 1: padding and <unk>)
ROWS = torch.tensor([2, 3, 4])
START = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
FROZEN = torch.tensor([[2.0, 0.1], [0.1, -3.0]])  # near row 2 (then 3); near nothing but row 3's opposite


def test_each_frozen_word_gets_its_most_similar_trained_words():
    nb = unseen.Pretrained(ROWS, START).with_neighbours(FROZEN, k=2)
    assert nb.index[0].tolist() == [0, 1]  # (1, 0) first, then (0, 1): cosine, not distance
    assert nb.index.shape == (2, 2) and nb.weight.shape == (2, 2)
    assert torch.allclose(nb.weight[0].sum(), torch.tensor(1.0))
    assert nb.weight[0, 0] > nb.weight[0, 1] > 0


def test_dissimilar_neighbours_do_not_pull():
    nb = unseen.Pretrained(ROWS, START).with_neighbours(FROZEN, k=3)  # the second frozen word points away
    word = torch.zeros(5, 2)
    word[ROWS] = START + 5.0  # every trained word drifted
    moved = unseen.moved(nb, word, FROZEN, scale=1.0)
    similar = [i for i, w in zip(nb.index[1].tolist(), nb.weight[1].tolist()) if w > 0]
    assert similar == [0]  # only (1, 0) has a positive cosine with (0.1, -3)
    assert torch.allclose(moved[1], FROZEN[1] + 5.0)


def test_frozen_words_move_by_scale_times_their_neighbours_drift():
    nb = unseen.Pretrained(ROWS, START).with_neighbours(FROZEN, k=2)
    word = torch.zeros(5, 2)
    word[ROWS] = START + torch.tensor([0.5, -0.25])  # the same drift for every trained word
    assert torch.allclose(unseen.moved(nb, word, FROZEN, scale=2.0), FROZEN + torch.tensor([1.0, -0.5]))
    assert torch.equal(unseen.moved(nb, word, FROZEN, scale=0.0), FROZEN)
    word[ROWS] = START  # no drift, no move
    assert torch.allclose(unseen.moved(nb, word, FROZEN, scale=2.0), FROZEN)


def test_chunks_do_not_change_the_neighbours():
    frozen = torch.randn(37, 2)
    whole, chunked = (unseen.Pretrained(ROWS, START).with_neighbours(frozen, k=2, chunk=c) for c in (64, 5))
    assert torch.equal(whole.index, chunked.index) and torch.equal(whole.weight, chunked.weight)


def test_k_larger_than_the_trained_words_takes_them_all():
    assert unseen.Pretrained(ROWS, START).with_neighbours(FROZEN, k=50).index.shape == (2, 3)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word = torch.nn.Embedding(5, 2)
        self.register_buffer("frozen", FROZEN.clone())


def test_moved_vectors_only_inside_the_block_even_on_error():
    model, nb = Model(), unseen.Pretrained(ROWS, START).with_neighbours(FROZEN, k=2)
    with torch.no_grad():
        model.word.weight[ROWS] = START + 1.0
    with pytest.raises(RuntimeError), unseen.drifted(model, nb, 1.0):
        assert not torch.equal(model.frozen, FROZEN)
        assert "frozen" in model.state_dict() and torch.equal(model.state_dict()["frozen"], model.frozen)
        raise RuntimeError
    assert torch.equal(model.frozen, FROZEN)
    with unseen.drifted(model, None, 1.0), unseen.drifted(model, nb, 0.0):
        assert torch.equal(model.frozen, FROZEN)


def test_what_training_keeps_survives_a_checkpoint():
    nb = unseen.Pretrained(ROWS, START).with_neighbours(FROZEN, k=2)
    back = unseen.Pretrained.from_state(nb.state())
    assert all(torch.equal(getattr(nb, f), getattr(back, f)) for f in ("rows", "start", "index", "weight"))
    only_start = unseen.Pretrained.from_state(unseen.Pretrained(ROWS, START).state())
    assert torch.equal(only_start.start, START) and only_start.index is None
    assert unseen.Pretrained.from_state({}) is None


def test_swapped_words_are_read_from_their_pretrained_vectors_while_training_only():
    from test_model import tiny

    tagger = tiny()
    model, vocab = tagger.model, tagger.vocab
    rows = torch.tensor([vocab.words.get("accepts"), vocab.words.get("offer")])
    assert rows.min() > 1  # real training words
    start = torch.randn(2, model.word.embedding_dim)
    model.keep_pretrained(rows, start)
    model.pretrained_swap = 0.999999
    words = torch.tensor([[vocab.words.get("accepts"), vocab.words.get("offer"), vocab.words.get("UN"), 1]])
    model.train()
    got = model.embed_words(words)[0]
    assert torch.equal(got[:2], start)  # rows with a pretrained vector: read from it
    assert torch.equal(got[2:], model.word.weight[words[0, 2:]])  # no pretrained vector, <unk>: their own rows
    model.eval()
    assert torch.equal(model.embed_words(words)[0], model.word.weight[words[0]])


# -- in training ----------------------------------------------------------------------------------------

WORDS = ["john", "smith", "paris", "berlin", "london", "visited", "zurich", "madrid", "oslo"]  # last 3 unseen


def vectors(dim: int = 16) -> tuple[list[str], np.ndarray]:
    return WORDS, np.random.default_rng(0).normal(size=(len(WORDS), dim)).astype(np.float32)


def sentences(n: int, seed: int) -> list[Sentence]:
    return [Sentence(tuple(tokens), tuple(tags)) for tokens, tags in make_sentences(n, seed)]


def train(output, resume=False, **changes):
    config = Config.from_dict({**TINY_CONFIG, "dropout": 0.3, "pretrained_swap": 0.3, "unseen_drift": 2.0,
                               "unseen_neighbours": 2, **changes})
    return training.train(config=config, train_sents=sentences(40, 5), dev_sents=sentences(12, 6), output=output,
                          source_scheme="iob2", dev_scheme="iob2", inputs=Inputs(vectors=vectors()), resume=resume)


def test_the_saved_model_holds_the_moved_vectors_and_the_checkpoint_the_original(tmp_path):
    train(tmp_path / "out")
    words, matrix = vectors()
    unseen = torch.from_numpy(matrix[-3:]).half()  # frozen words (sorted: madrid, oslo, zurich), saved in float16
    model = load_file(str(tmp_path / "out" / "model.safetensors"))
    checkpoint = load_file(str(tmp_path / "out" / "checkpoint" / "model.safetensors"))
    assert torch.equal(checkpoint["words.frozen"], unseen[[1, 2, 0]])
    assert not torch.allclose(model["words.frozen"].float(), unseen[[1, 2, 0]].float(), atol=1e-3)
    assert Tagger.load(tmp_path / "out").predict_tokens([["john", "visited", "zurich", "."]])  # loads, tags


def test_without_unseen_drift_frozen_vectors_are_saved_as_they_came(tmp_path):
    train(tmp_path / "out", unseen_drift=0.0)
    unseen = torch.from_numpy(vectors()[1][-3:]).half()  # as they came, in float16
    assert torch.equal(load_file(str(tmp_path / "out" / "model.safetensors"))["words.frozen"], unseen[[1, 2, 0]])


def test_resume_swaps_and_moves_words_as_an_uninterrupted_run(tmp_path, monkeypatch):
    train(tmp_path / "whole")
    interrupt_loss_at(monkeypatch, 12)  # Ctrl-C in epoch 2
    with pytest.raises(training.Interrupted):
        train(tmp_path / "part")
    monkeypatch.undo()
    train(tmp_path / "part", resume=True)  # the pretrained vectors and neighbours come from the checkpoint
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
