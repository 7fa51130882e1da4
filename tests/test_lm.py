"""The character language model: `tagger lm` trains it on raw text, `tagger train --embeddings lm:DIR` reads its
states as contextual embeddings of tokens (tagger/training/lm.py, tagger/lmtext.py, tagger/tagging/charlm.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

from cli.main import app
from conftest import ctrl_c, make_sentences, write_corpus, write_toml
from tagger import commands, lmtext
from tagger.api import Tagger
from tagger.encode import Encoder, collate
from tagger.errors import ConfigError, InputError, ModelError
from tagger.tagging.charlm import CharLMNetwork
from tagger.training import lm, lm_dir
from tagger.vocab import Index, SortedWords, Vocab

TINY = lm.LMOptions(hidden=12, char_dim=6, chunk=40, batch_size=4, epochs=2, threads=1, min_count=1)


def raw_text(path: Path, lines: int = 150, seed: int = 0) -> Path:
    """A raw text file made from the test corpus's sentences, a few to a line."""
    sentences = [" ".join(tokens) for tokens, _ in make_sentences(3 * lines, seed)]
    path.write_text("\n".join(" ".join(sentences[3 * i:3 * i + 3]) for i in range(lines)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_lm(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm")
    lm.train_lm([raw_text(root / "raw.txt")], root / "lm", TINY)
    return root / "lm"


def test_a_sentence_is_its_tokens_between_newlines_and_each_token_knows_its_separators():
    index = {c: i for i, c in enumerate(["<unk>", "\n", " ", "E", "U"])}
    ids, before = lmtext.encode_sentence(["EU", "rejects", ""], index)
    assert lmtext.sentence_text(["EU", "rejects", ""]) == "\nEU rejects \ufffd\n"
    assert ids[:5] == [1, 3, 4, 2, 0] and ids[-3:] == [2, 0, 1]  # unknown characters read as row 0
    assert before == [0, 3, 11]  # the empty token still has a place: one unknown character


def test_characters_are_kept_by_count_and_looked_up():
    chars = lmtext.choose_chars("aab\nab\nc", min_count=2, max_vocab=10)
    assert chars == ["<unk>", "a", "\n", "b"]
    assert lmtext.char_ids("abcz\n", chars).tolist() == [1, 3, 0, 0, 2]
    assert lmtext.choose_chars("aab\nab\nc", min_count=1, max_vocab=2) == ["<unk>", "a", "\n"]


def test_the_lm_learns_and_is_saved_as_a_readable_directory(trained_lm):
    meta = json.loads((trained_lm / "config.json").read_text())
    chars = json.loads((trained_lm / "vocab.json").read_text())["chars"]
    assert meta["format"] == "tagger-charlm" and meta["options"]["hidden"] == 12
    bits = [e["heldout_bits_per_char"] for e in meta["training"]["epochs"]]
    assert bits[-1] < bits[0] < np.log2(len(chars))  # it predicts better than chance, and better with training
    tensors = load_file(trained_lm / "model.safetensors")
    assert tensors["context.embedding"].shape == (len(chars), 6)
    assert tensors["context.0.backward.weight_hh"].shape == (48, 12)
    assert tensors["decoder.forward.weight"].shape == (len(chars), 12)
    assert not (trained_lm / "checkpoint").exists()


def test_numpy_states_equal_the_torch_lms_reading_each_sentence_alone():
    torch.manual_seed(0)
    chars = ["<unk>", "\n", " ", *"abcdefgh"]
    model = lm.CharLM(len(chars), TINY).eval()
    network = CharLMNetwork(model.tensors())
    vocab = Vocab(Index(["x"]), SortedWords([]), Index([]), Index(["O"], specials=False), [], context=Index(chars, specials=False),
                  context_kind="lm")
    sentences = [["abc", "de"], ["h"], ["fade", "", "bag", "cabbage", "zz"]]
    features = network.batch_features(collate([Encoder(vocab)(s) for s in sentences]))  # (3, 5, 24)
    for row, tokens in enumerate(sentences):
        ids, before = lmtext.encode_sentence(tokens, {c: i for i, c in enumerate(chars)})
        with torch.no_grad():
            h, _ = model.lstm(model.embed(torch.tensor([ids])))  # (1, C, 24): one sentence, no padding
        after = before[1:] + [len(ids) - 1]
        expected = torch.cat([h[0, after, :12], h[0, before, 12:]], 1).numpy()
        np.testing.assert_allclose(features[row, :len(tokens)], expected, atol=1e-5)
        assert not features[row, len(tokens):].any()


def test_an_interrupted_lm_resumes_bit_for_bit(tmp_path, monkeypatch):
    raw = raw_text(tmp_path / "raw.txt", lines=60)
    lm.train_lm([raw], tmp_path / "whole", TINY)
    real, calls = lm._step, {"n": 0}

    def step(*args):
        calls["n"] += 1
        if calls["n"] == 30:  # in the second epoch
            ctrl_c()
        return real(*args)

    monkeypatch.setattr(lm, "_step", step)
    with pytest.raises(lm.Interrupted):
        lm.train_lm([raw], tmp_path / "stopped", TINY)
    assert (tmp_path / "stopped" / "checkpoint" / "trainer.json").is_file()
    monkeypatch.setattr(lm, "_step", real)
    with pytest.raises(InputError, match="--resume"):
        lm.train_lm([raw], tmp_path / "stopped", TINY)  # not without --resume or --force
    lm.train_lm([raw], tmp_path / "stopped", TINY, resume=True)
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "stopped" / "model.safetensors")
    assert all(np.array_equal(whole[k], resumed[k]) for k in whole)
    assert not (tmp_path / "stopped" / "checkpoint").exists()


def train_with_lm(lm_dir: Path, tmp_path: Path, name: str) -> tuple[Path, list]:
    """A tiny tagger trained on 45 synthetic sentences (15 for dev) reading the LM; (its directory, the sentences)."""
    sents = make_sentences(60, seed=1)
    train, dev = write_corpus(tmp_path / "train.txt", sents[:45]), write_corpus(tmp_path / "dev.txt", sents[45:])
    commands.train(str(train), str(dev), tmp_path / name, embeddings=[Path(f"lm:{lm_dir}")],
                   config_file=write_toml(tmp_path / "tiny.toml", epochs=2))
    return tmp_path / name, sents


def test_a_tagger_reads_the_lm_and_tags_a_batch_as_each_sentence_alone(trained_lm, tmp_path):
    model, _ = train_with_lm(trained_lm, tmp_path, "model")
    meta = json.loads((model / "config.json").read_text())
    assert meta["config"]["context"] == "lm" and meta["config"]["lm_hidden"] == 12
    tensors = load_file(model / "model.safetensors")
    lm_tensors = load_file(trained_lm / "model.safetensors")
    np.testing.assert_array_equal(tensors["context.0.forward.weight_hh"], lm_tensors["context.0.forward.weight_hh"])
    assert not any(k.startswith("decoder.") for k in tensors)  # training-only softmax layers stay behind
    tagger = Tagger.load(model)
    batch = [tokens for tokens, _ in make_sentences(40, seed=7)]
    together = tagger.predict_tokens(batch)
    alone = [tagger.predict_tokens([tokens])[0] for tokens in batch]
    assert together == alone


def test_lm_refusals_are_one_line(trained_lm, trained_model, tmp_path):
    sents = make_sentences(20, seed=1)
    train, dev = write_corpus(tmp_path / "train.txt", sents[:15]), write_corpus(tmp_path / "dev.txt", sents[15:])
    with pytest.raises(ModelError, match="not a character LM directory"):
        commands.train(str(train), str(dev), tmp_path / "m1", embeddings=[Path(f"lm:{trained_model}")])
    with pytest.raises(ConfigError, match="one context encoder"):
        commands.train(str(train), str(dev), tmp_path / "m2", embeddings=[Path(f"lm:{trained_lm}")], context="jieba")
    with pytest.raises(InputError, match="too little text"):
        lm.train_lm([raw_text(tmp_path / "short.txt", lines=1)], tmp_path / "lm", lm.LMOptions(chunk=5000))
    with pytest.raises(InputError, match="no LM checkpoint"):
        lm.train_lm([raw_text(tmp_path / "raw.txt")], tmp_path / "empty", TINY, resume=True)


def test_a_tampered_lm_is_refused(trained_lm, tmp_path):
    import shutil

    copy = tmp_path / "lm"
    shutil.copytree(trained_lm, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        lm_dir.read_lm(copy)


def test_the_cli_trains_an_lm_and_says_what_it_wrote(tmp_path):
    raw = raw_text(tmp_path / "raw.txt", lines=40)
    result = CliRunner().invoke(app, ["lm", str(raw), "--output", str(tmp_path / "lm"), "--hidden", "8",
                                      "--char-dim", "4", "--chunk", "40", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "bits/char" in result.output and (tmp_path / "lm" / "config.json").is_file()
    again = CliRunner().invoke(app, ["lm", str(raw), "--output", str(tmp_path / "lm")])
    assert again.exit_code != 0 and "not empty" in again.output and "Traceback" not in again.output


def test_a_teacher_that_reads_an_lm_teaches_a_student_without_one(trained_lm, tmp_path):
    from corpora.conll import Sentence
    from tagger.training import teachers
    from tagger.training.setup import build_trainable

    teacher, sents = train_with_lm(trained_lm, tmp_path, "teacher")
    train, dev = tmp_path / "train.txt", tmp_path / "dev.txt"
    student, _ = build_trainable(Tagger.load(teacher).config.__class__(), [Sentence(tuple(t), tuple(g))
                                                                        for t, g in sents[:45]], "iob2")
    found = teachers.load([teacher], student.vocab)  # the same corpus: only the LM's characters differ
    encoded = [student.encode(tokens) for tokens, _ in sents[45:]]
    assert encoded[0].context is None  # the student's batches know nothing of the LM ...
    targets = found.targets(encoded)
    expected = Tagger.load(teacher).marginals([tokens for tokens, _ in sents[45:]])  # ... the teacher's marginals
    for got, want in zip(targets, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    result = commands.train(str(train), str(dev), tmp_path / "student", teachers=[teacher],
                            config_file=write_toml(tmp_path / "student.toml", epochs=2))
    assert json.loads((tmp_path / "student" / "config.json").read_text())["config"]["context"] == "none"
    assert result["best_dev_f1"] > 0
