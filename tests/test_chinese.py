"""Chinese, one character a line in BMES: trains with the defaults' tokenizer choice, tags raw Chinese text."""
import json
import shutil
from pathlib import Path

import pytest

from corpora import schemes
from corpora.conll import read_conll
from tagger import commands
from tagger.api import Tagger
from tagger.errors import ModelError
from tagger.lexicon import read_lexicon

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "zh"


@pytest.fixture(scope="module")
def chinese_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("zh") / "model"
    config = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    config.write_text("hidden_size = 32\nchar_filters = 10\nword_dim = 32\nepochs = 6\nbatch_size = 8\n"
                      "lr = 0.05\npatience = 6\n")
    result = commands.train(str(SAMPLES / "train.txt"), str(SAMPLES / "dev.txt"), out, config_file=config)
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
    for text, entities in zip(texts, tagger.predict(texts)):
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


def test_character_defaults_are_recorded_in_config_json(chinese_model):
    meta = json.loads((chinese_model[0] / "config.json").read_text(encoding="utf-8"))
    config = meta["config"]
    assert (config["tokenizer"], config["char_encoder"], config["bigrams"], config["lexicon"]) == \
        ("chars", "none", "on", False)
    assert not (chinese_model[0] / "lexicon.txt").exists()
    assert len(Tagger.load(chinese_model[0]).vocab.bigrams) > 100


def synthetic_lexicon(path: Path) -> Path:
    """Words of the synthetic sample: its entities (invented names, places) and a few common words."""
    spans = {"".join(s.tokens[a:b]) for s in read_conll(SAMPLES / "train.txt")
             for _, a, b in schemes.spans(s.tags, "bmes")}
    words = sorted(spans)[:150] + ["工作", "大学", "银行", "北京", "上海", "北京大学", "举行", "明年"]
    path.write_text("".join(f"{w} {i % 7 + 1}\n" for i, w in enumerate(words)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lexicon_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("zh-lexicon")
    config = root / "tiny.toml"
    config.write_text("hidden_size = 32\nbigram_dim = 20\nword_dim = 32\nepochs = 6\nbatch_size = 8\n"
                      "lr = 0.05\npatience = 6\n")
    lexicon = synthetic_lexicon(root / "words.txt")
    result = commands.train(str(SAMPLES / "train.txt"), str(SAMPLES / "dev.txt"), root / "model", config_file=config,
                        lexicon=str(lexicon))
    return root / "model", lexicon, result


def test_the_sample_trains_with_bigrams_and_a_lexicon_kept_in_the_model(lexicon_model):
    out, lexicon, result = lexicon_model
    assert result["best_dev_f1"] > 0.5
    meta = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert meta["config"]["lexicon"] is True and meta["config"]["bigrams"] == "on"
    assert meta["training"]["lexicon"] == "words.txt"
    assert "lexicon.txt" in meta["sha256"]
    tagger = Tagger.load(out)
    assert tagger.vocab.lexicon == read_lexicon(lexicon)  # what predict uses, with no flag


def test_a_lexicon_model_predicts_raw_chinese_text_with_exact_offsets(lexicon_model, tmp_path):
    out = lexicon_model[0]
    tagger = Tagger.load(out)
    texts = ["王小明在北京大学工作。", "  张伟：去上海银行，😀 then Apple 2024年！\t李娜", "", "。。"]
    for text, entities in zip(texts, tagger.predict(texts)):
        for e in entities:
            assert text[e["start"] : e["end"]] == e["text"] and e["label"] in {"PER", "LOC", "ORG"}
    test = list(read_conll(SAMPLES / "test.txt"))
    assert tagger.evaluate(test)["f1"] > 0.5
    copy = tmp_path / "copy"
    tagger.save(copy)  # saves and loads again to the same predictions
    assert Tagger.load(copy).predict(texts) == tagger.predict(texts)


def test_an_altered_or_missing_lexicon_file_is_refused(lexicon_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(lexicon_model[0], copy, ignore=shutil.ignore_patterns("checkpoint*"))
    with open(copy / "lexicon.txt", "a", encoding="utf-8") as f:
        f.write("新词 1\n")
    with pytest.raises(ModelError, match="lexicon.txt: checksum does not match"):
        Tagger.load(copy)
    (copy / "lexicon.txt").unlink()
    with pytest.raises(ModelError, match="lacks lexicon.txt"):
        Tagger.load(copy)


def test_the_lexicon_s_trie_is_saved_built_and_a_model_without_it_still_loads(lexicon_model, tmp_path):
    saved = lexicon_model[0]
    meta = json.loads((saved / "config.json").read_text(encoding="utf-8"))
    assert {"lexicon.txt", "lexicon.safetensors"} <= set(meta["sha256"])
    texts = ["王小明在北京大学工作。", "张伟去上海银行"]
    tagger = Tagger.load(saved)
    assert tagger.vocab.lexicon.nodes == read_lexicon(lexicon_model[1]).nodes
    older = tmp_path / "older"  # saved before the trie was kept: lexicon.txt alone, the trie built on loading
    shutil.copytree(saved, older, ignore=shutil.ignore_patterns("checkpoint*", "lexicon.safetensors"))
    del meta["sha256"]["lexicon.safetensors"]
    (older / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    assert Tagger.load(older).vocab.lexicon == tagger.vocab.lexicon
    assert Tagger.load(older).predict(texts) == tagger.predict(texts)
    altered = tmp_path / "altered"
    shutil.copytree(saved, altered, ignore=shutil.ignore_patterns("checkpoint*"))
    with open(altered / "lexicon.safetensors", "r+b") as f:
        f.seek(-3, 2)
        f.write(b"\xff")
    with pytest.raises(ModelError, match="lexicon.safetensors: checksum does not match"):
        Tagger.load(altered)


def test_training_reads_a_lexicon_model_as_tagging_does_from_its_saved_trie(lexicon_model, monkeypatch):
    """Trainable.load (--init, checkpoints) reads the trie the directory keeps, not lexicon.txt again."""
    from tagger.tagging import tagger as tagging_tagger
    from tagger.training.model import Trainable

    def unread(*args):
        raise AssertionError("lexicon.txt parsed although the trie is saved")

    monkeypatch.setattr(tagging_tagger, "parse_saved", unread)
    assert Trainable.load(lexicon_model[0]).vocab.lexicon == Tagger.load(lexicon_model[0]).vocab.lexicon
