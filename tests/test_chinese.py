"""Chinese, one character a line in BMES: trains with the defaults' tokenizer choice, tags raw Chinese text."""
from pathlib import Path

import pytest

from corpora.conll import read_conll
from tagger import jobs
from tagger.api import Tagger

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "zh"


@pytest.fixture(scope="module")
def chinese_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("zh") / "model"
    config = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    config.write_text("hidden_size = 32\nchar_filters = 10\nword_dim = 32\nepochs = 6\nbatch_size = 8\n"
                      "lr = 0.05\npatience = 6\n")
    result = jobs.train(str(SAMPLES / "train.txt"), str(SAMPLES / "dev.txt"), out, config_file=config)
    return out, result


def test_bmes_corpus_is_detected_and_the_tokenizer_becomes_chars(chinese_model):
    out, result = chinese_model
    tagger = Tagger.load(out)
    assert tagger.vocab.source_scheme == "bmes"
    assert tagger.config.tokenizer == "chars"
    assert result["best_dev_f1"] > 0.5


def test_raw_chinese_text_gets_exact_character_offsets(chinese_model):
    tagger = Tagger.load(chinese_model[0])
    texts = ["王小明在北京大学工作。", "  张伟：去上海银行，😀 then Apple 2024年！\t李娜"]
    for text, entities in zip(texts, tagger.predict_texts(texts)):
        for e in entities:
            assert text[e["start"] : e["end"]] == e["text"]
            assert e["label"] in {"PER", "LOC", "ORG"}
    assert any(e["label"] in {"PER", "ORG", "LOC"} for e in tagger.predict(texts[0]))


def test_predicted_tags_come_back_in_bmes_and_are_scored(chinese_model):
    tagger = Tagger.load(chinese_model[0])
    test = list(read_conll(SAMPLES / "test.txt"))
    tags = tagger.predict_tokens([s.tokens for s in test[:20]])
    assert {t.split("-")[0] for seq in tags for t in seq} <= {"B", "M", "E", "S", "O"}
    scores = tagger.evaluate(test)
    assert scores["scored_as"] == "IOBES" and scores["f1"] > 0.5
