"""Pretrained words never seen in training (tagger/training/unseen.py): training reads some words from their pretrained
vectors (pretrained_swap), and unseen words follow the fine-tuning drift of their nearest trained words; both are on
when enough dev tokens are such words (unseen_remedies = "auto")."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, interrupt_loss_at, make_sentences
from safetensors.torch import load_file

from corpora.conll import Sentence
from tagger.api import Tagger
from tagger.config import Config
from tagger.errors import ConfigError
from tagger.training import loop as training
from tagger.training import distributed, unseen
from tagger.training.setup import Inputs, build_trainable
from tagger.training.warmstart import WarmStart

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
    config = Config.from_dict({**TINY_CONFIG, "dropout": 0.3, "unseen_remedies": "on", "pretrained_swap": 0.3,
                               "unseen_drift": 2.0, "unseen_neighbours": 2, **changes})
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


# -- when the remedies are on: unseen_remedies ---------------------------------------------------------------

def test_the_share_counts_dev_tokens_read_only_through_a_pretrained_vector():
    train_words, vector_words = ["Paris", "visited", "the"], {"paris", "berlin", "oslo", "the"}
    dev = ["Paris", "visited", "Berlin", "OSLO", "Zurich", "the"]
    # Paris, visited, the: trained (Paris as "paris"); Berlin, OSLO: only a vector (lower-cased); Zurich: <unk>
    assert unseen.unseen_share(train_words, dev, vector_words) == 2 / 6
    assert unseen.unseen_share(train_words, dev, vector_words, lowercase=False) == 0.0  # no "Berlin", "OSLO"
    assert unseen.unseen_share(train_words, [], vector_words) == 0.0


def test_auto_is_on_from_the_threshold_between_the_two_measured_corpora():
    assert unseen.decide(0.0615)[0] and not unseen.decide(0.0128)[0]  # CoNLL-2003 with GloVe; Weibo with jieba
    assert unseen.decide(unseen.AUTO_FROM)[0]
    on, why = unseen.decide(None)
    assert not on and why.startswith("no dev set")


class Heard(training.Silent):
    def __init__(self):
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


def decided(remedies: str = "auto", dev=(), vectors_given: bool = True) -> tuple[Config, list[str]]:
    """The config a training on the tiny corpus starts with, and the messages it gave."""
    heard = Heard()
    config = Config.from_dict({**TINY_CONFIG, "unseen_remedies": remedies})
    trainable, _ = build_trainable(config, sentences(40, 5), "iob2", inputs=Inputs(vectors=vectors() if
                                   vectors_given else None), reporter=heard, dev=dev)
    return trainable.config, heard.messages


def remedies(config: Config) -> tuple[str, float, float]:
    return config.unseen_remedies, config.pretrained_swap, config.unseen_drift


SEEN = ["john", "visited", "paris", "."]  # every word trained
UNSEEN = ["john", "visited", "zurich", "madrid", "oslo", "."]  # 3 words of 6 only in the vectors


def test_auto_turns_the_remedies_on_for_a_dev_set_of_words_only_vectors_know():
    config, messages = decided(dev=[UNSEEN])
    assert remedies(config) == ("on", 0.3, 3.0)  # the defaults' strengths
    assert "unseen-word remedies on: 50.0% of dev tokens have pretrained vectors but never occur in training " \
           "(auto: on from 3%)" in messages


def test_auto_leaves_them_off_below_three_percent_of_the_dev_tokens():
    assert remedies(decided(dev=[SEEN] * 8 + [["oslo"]])[0]) == ("on", 0.3, 3.0)  # 1 of 33 tokens: 3.03%
    config, messages = decided(dev=[SEEN] * 9 + [["oslo"]])  # 1 of 37: 2.7%
    assert remedies(config) == ("off", 0.0, 0.0)
    assert any(m.startswith("unseen-word remedies off: 2.7% of dev tokens") for m in messages)


def test_auto_is_off_without_a_dev_set_or_without_vectors_and_says_why():
    config, messages = decided(dev=())
    assert remedies(config) == ("off", 0.0, 0.0)
    assert any(m.startswith("unseen-word remedies off: no dev set") for m in messages)
    config, messages = decided(dev=[UNSEEN], vectors_given=False)
    assert remedies(config) == ("off", 0.0, 0.0) and not any("remedies" in m for m in messages)


def test_on_and_off_are_taken_as_given():
    assert remedies(decided("on", dev=[SEEN])[0]) == ("on", 0.3, 3.0)
    assert remedies(decided("off", dev=[UNSEEN])[0]) == ("off", 0.0, 0.0)


class SecondRank(distributed.World):
    """Rank 1 of 2, as `--processes 2` spawns it (with no dev set), receiving rank 0's dev tokens."""

    def share(self, value):
        assert value is None  # rank 1 sends nothing
        return [UNSEEN]


def test_every_rank_decides_on_rank_0_s_dev_set(tmp_path):
    config = Config.from_dict(TINY_CONFIG)
    trainable, *_ = training._started(config, sentences(40, 5), "iob2", Inputs(vectors=vectors()), tmp_path, (),
                                      training.Silent(), SecondRank(rank=1, size=2), False, dev_sents=())
    assert remedies(trainable.config) == ("on", 0.3, 3.0)


def train_auto(output, dev, resume=False, given=()):
    config = Config.from_dict({**TINY_CONFIG, "dropout": 0.3, "unseen_neighbours": 2})
    return training.train(config=config, train_sents=sentences(40, 5), dev_sents=dev, output=output,
                          source_scheme="iob2", dev_scheme="iob2", inputs=Inputs(vectors=vectors()), resume=resume,
                          given=given)


UNSEEN_DEV = [Sentence(tuple(UNSEEN), ("B-PER", "O", "B-LOC", "B-LOC", "B-LOC", "O"))]


def saved_remedies(directory) -> tuple[str, float, float]:
    return remedies(Tagger.load(directory).config)


def test_the_saved_model_and_checkpoint_record_what_auto_decided(tmp_path):
    train_auto(tmp_path / "on", UNSEEN_DEV)
    train_auto(tmp_path / "off", sentences(12, 6))  # every dev word trained
    assert saved_remedies(tmp_path / "on") == ("on", 0.3, 3.0)
    assert saved_remedies(tmp_path / "off") == ("off", 0.0, 0.0)
    checkpoint = json.loads((tmp_path / "on" / "checkpoint" / "config.json").read_text())["config"]
    assert checkpoint["unseen_remedies"] == "on"


def test_a_resume_keeps_the_decision_even_where_its_dev_set_would_decide_otherwise(tmp_path, monkeypatch):
    interrupt_loss_at(monkeypatch, 8)  # Ctrl-C in epoch 2
    with pytest.raises(training.Interrupted):
        train_auto(tmp_path / "out", UNSEEN_DEV)
    monkeypatch.undo()
    # unseen_remedies = "auto" given again (as a --config would): not a change, the checkpoint's "on" holds
    train_auto(tmp_path / "out", sentences(12, 6), resume=True, given={"unseen_remedies", "pretrained_swap"})
    assert saved_remedies(tmp_path / "out") == ("on", 0.3, 3.0)


def test_a_warm_start_records_the_remedies_off_and_refuses_them_on(tmp_path):
    train_auto(tmp_path / "first", UNSEEN_DEV)
    config = Config.from_dict({**TINY_CONFIG, "unseen_remedies": "auto"})
    warm = WarmStart(tmp_path / "first", given=frozenset({"unseen_remedies"}))
    trainable, pretrained = build_trainable(config, sentences(40, 5), "iob2", inputs=Inputs(init=warm), dev=[UNSEEN])
    assert remedies(trainable.config) == ("off", 0.0, 0.0) and pretrained is None
    on = Config.from_dict({**TINY_CONFIG, "unseen_remedies": "on"})
    with pytest.raises(ConfigError, match="unseen_remedies needs the pretrained vectors"):
        build_trainable(on, sentences(40, 5), "iob2", inputs=Inputs(init=warm))
