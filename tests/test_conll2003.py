"""Smoke test on real data: one short epoch on CoNLL-2003 must already find most entities.

The data is not in the repository: set CONLL2003_DIR (default: ../shared/data/conll2003 beside the repo), or
the test is skipped. About 10 s on one core: 2,000 training sentences, 500 dev sentences, a small network.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from corpora.conll import read_conll
from tagger.api import Tagger
from tagger.config import Config
from tagger.data import check_tags
from tagger.training import loop as training

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CONLL2003_DIR", REPO / ".." / "shared" / "data" / "conll2003")).resolve()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "train.txt").is_file() or not (DATA / "valid.txt").is_file(),
                       reason=f"CoNLL-2003 not found in {DATA} (set CONLL2003_DIR to the folder holding "
                              "train.txt and valid.txt)"),
]


def test_one_epoch_on_2000_sentences_scores_above_50_f1(tmp_path):
    train = list(itertools.islice(read_conll(DATA / "train.txt"), 2000))
    dev = list(itertools.islice(read_conll(DATA / "valid.txt"), 500))
    scheme = check_tags(train, str(DATA / "train.txt"))
    assert scheme in ("iob1", "iob2")  # the original files are IOB1; many copies were converted to IOB2
    config = Config(epochs=1, hidden_size=32, word_dim=50, char_dim=16, char_filters=20, casing_dim=8,
                    batch_size=16, optimizer="adam", lr=0.015, dropout=0.25, word_dropout=0.05, threads=1)
    progress = training.train(config=config, train_sents=train, dev_sents=dev, output=tmp_path / "model",
                              source_scheme=scheme, dev_scheme=scheme)
    scores = Tagger.load(tmp_path / "model").evaluate(dev)
    assert scores["f1"] == pytest.approx(progress.best_f1)  # the saved model is the one scored during training
    assert scores["f1"] > 0.5
    assert {"PER", "LOC", "ORG", "MISC"} <= set(scores["per_type"])
