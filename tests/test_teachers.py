"""Distillation (tagger train --teacher): the student's differentiable CRF marginals against tagging's exact
forward-backward, the loss against a hand computation, what the student learns, and an exact resume that
refuses a changed teacher."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, assert_user_error, ctrl_c, make_sentences, write_corpus, write_toml
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli.main import app
from corpora import schemes
from corpora.conll import Sentence
from tagger.api import Tagger
from tagger.config import Config
from tagger.encode import collate
from tagger.tagging import marginals as M
from tagger.tensors import FORBIDDEN
from tagger.training import checkpoints, cvt, teachers
from tagger.training import loop as training
from tagger.training.model import Trainable
from tagger.vocab import build_vocab

TRAIN = [Sentence(tuple(t), tuple(g)) for t, g in make_sentences(40, seed=5)]
DEV = [Sentence(tuple(t), tuple(g)) for t, g in make_sentences(12, seed=6)]
runner = CliRunner()


def config(**changes) -> Config:
    return Config.from_dict({**TINY_CONFIG, "dropout": 0.3, "word_dropout": 0.1, **changes})


def run(output: Path, teacher: Path | None, raw: list[Path] = (), resume: bool = False, **changes):
    origin = {"teachers": checkpoints.files_origin([teacher / "config.json"] if teacher else [])}
    return training.train(config=config(**changes), train_sents=TRAIN, dev_sents=DEV, output=output,
                          source_scheme="iob2", dev_scheme="iob2", resume=resume, unlabeled=raw,
                          origin=None if resume else origin)


def raw_text(path: Path, lines: int = 20) -> Path:
    sents = [" ".join(tokens) for tokens, _ in make_sentences(lines, seed=9)]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in sents)
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "t"
    training.train(config=config(seed=11, epochs=4), train_sents=TRAIN, dev_sents=DEV, output=out,
                   source_scheme="iob2", dev_scheme="iob2")
    return out


# -- the student's marginals and the loss ---------------------------------------------------------------

@pytest.mark.parametrize("seq_len", [1, 2, 6])
def test_the_students_marginals_are_taggings_exact_forward_backward(seq_len):
    tags = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    rng = np.random.default_rng(seq_len)
    allowed = [np.array(x) for x in schemes.allowed_transitions(tags, "bioes")]
    start, trans, end = (np.where(ok, rng.normal(0, 1, ok.shape), FORBIDDEN).astype(np.float32) for ok in allowed)
    emissions = rng.normal(0, 3, (3, seq_len, len(tags))).astype(np.float32)  # (B, T, K)
    want = M.forward_backward(emissions, np.ones((3, seq_len), bool), start, trans, end).marginals
    got = teachers.student_marginals(*(torch.from_numpy(x) for x in (emissions, start, trans, end)))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-9)


def test_the_loss_is_the_gold_nll_plus_the_weighted_kl_from_the_teachers():
    vocab = build_vocab([s.tokens for s in TRAIN], [schemes.convert(list(s.tags), "iob2", "bioes") for s in TRAIN])
    model = Trainable.build(config(dropout=0.0, word_dropout=0.0, teacher_weight=2.5), vocab).model.eval()
    sentences = [s for s in TRAIN if len(s.tokens) == 4][:3]
    encode = Trainable.build(config(), vocab).encode
    batch = collate([encode(s.tokens, schemes.convert(list(s.tags), "iob2", "bioes")) for s in sentences])
    targets = torch.softmax(torch.randn(len(sentences), 4, len(vocab.tags)), -1)  # (B, T, K)
    with torch.no_grad():
        em = model.emissions(batch)
        crf = [x.detach().numpy() for x in (model.crf.start_transitions, model.crf.transitions,
                                            model.crf.end_transitions)]
        nll = model.crf.nll(em, torch.from_numpy(batch.tags), torch.from_numpy(batch.mask)).item()
        got = teachers.loss(model, batch, targets, labelled=True).item()
        alone = teachers.loss(model, batch, targets, labelled=False).item()
    p = M.forward_backward(em.numpy(), batch.mask, *crf).marginals
    q = targets.double().numpy()
    kl = float((q * (np.log(q) - np.log(np.maximum(p, 1e-30)))).sum())
    assert alone == pytest.approx(2.5 * kl, rel=1e-4)
    assert got == pytest.approx(nll + 2.5 * kl, rel=1e-4)


# -- training with teachers -----------------------------------------------------------------------------

def test_the_student_learns_from_the_teacher_and_is_an_ordinary_model(teacher, tmp_path):
    run(tmp_path / "student", teacher, epochs=2)
    run(tmp_path / "plain", None, epochs=2)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("student", "plain"))
    assert a.keys() == b.keys()
    assert not torch.equal(a["lstm.0.forward.weight_ih"], b["lstm.0.forward.weight_ih"])
    assert Tagger.load(tmp_path / "student").predict_tokens([["Anna", "visited", "Rome", "."]])


def test_with_unlabelled_text_the_student_learns_the_teachers_marginals_there_not_cvt(teacher, tmp_path):
    raw = raw_text(tmp_path / "raw.txt.gz")
    run(tmp_path / "s", teacher, [raw], epochs=1)
    metrics = json.loads((tmp_path / "s" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["unlabeled_sentences"] > 0
    trainer = load_file(str(tmp_path / "s" / "checkpoint" / "trainer.safetensors"))
    assert not any(k.startswith(cvt.PREFIX) for k in trainer)  # no cross-view modules: the teachers teach
    run(tmp_path / "labelled", teacher, epochs=1)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("s", "labelled"))
    assert not torch.equal(a["lstm.0.forward.weight_ih"], b["lstm.0.forward.weight_ih"])


def test_training_with_a_teacher_and_raw_text_resumes_exactly(teacher, tmp_path, monkeypatch):
    raw = raw_text(tmp_path / "raw.txt.gz")
    run(tmp_path / "reference", teacher, [raw], epochs=3)
    real, calls = teachers.loss, {"n": 0}

    def interrupted(model, batch, targets, labelled):
        calls["n"] += 1
        if calls["n"] == 13:  # a batch of epoch 2
            ctrl_c()
        return real(model, batch, targets, labelled)

    monkeypatch.setattr(teachers, "loss", interrupted)
    with pytest.raises(training.Interrupted):
        run(tmp_path / "out", teacher, [raw], epochs=3)
    monkeypatch.undo()
    run(tmp_path / "out", None, [raw], resume=True, epochs=3)  # the checkpoint names its teacher
    for name in ("model.safetensors", "checkpoint/model.safetensors"):
        a, b = load_file(str(tmp_path / "out" / name)), load_file(str(tmp_path / "reference" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


# -- the command ----------------------------------------------------------------------------------------

def cli_args(tmp_path: Path, teacher: Path) -> list[str]:
    train = write_corpus(tmp_path / "train.txt", [(s.tokens, s.tags) for s in TRAIN])
    dev = write_corpus(tmp_path / "dev.txt", [(s.tokens, s.tags) for s in DEV])
    toml = write_toml(tmp_path / "c.toml", epochs=1, dropout=0.3, word_dropout=0.1)
    return ["train", str(train), "--dev", str(dev), "-o", str(tmp_path / "out"), "--config", str(toml), "-q",
            "--teacher", str(teacher)]


def test_resume_refuses_a_teacher_that_changed(teacher, tmp_path):
    own = tmp_path / "teacher"
    own.mkdir()
    for f in teacher.iterdir():
        if f.is_file():
            (own / f.name).write_bytes(f.read_bytes())
    args = cli_args(tmp_path, own)
    assert runner.invoke(app, args).exit_code == 0
    assert "teacher" in json.loads(runner.invoke(app, ["info", str(tmp_path / "out"), "--json"]).stdout)["teachers"]
    assert runner.invoke(app, ["calibrate", str(own), str(tmp_path / "dev.txt")]).exit_code == 0  # config.json changes
    result = runner.invoke(app, [*args, "--epochs", "2", "--resume"])
    assert_user_error(result, str(own / "config.json"), "teacher file changed")


def test_a_teacher_of_another_vocabulary_is_a_one_line_error(tmp_path):
    other = tmp_path / "other"
    train = write_corpus(tmp_path / "t.txt", make_sentences(20, seed=42))
    assert runner.invoke(app, ["train", str(train), "--dev", str(train), "-o", str(other), "-q", "--config",
                               str(write_toml(tmp_path / "o.toml", epochs=1))]).exit_code == 0
    result = runner.invoke(app, cli_args(tmp_path, other))
    assert_user_error(result, str(other), "vocabulary differs")


def test_a_missing_teacher_is_refused_before_the_corpus_is_read(tmp_path):
    result = runner.invoke(app, cli_args(tmp_path, tmp_path / "nowhere"))
    assert_user_error(result, str(tmp_path / "nowhere"), "no such model directory (--teacher)")
    assert not (tmp_path / "out").exists()
