"""Cross-view training on unlabelled text (tagger train --unlabeled): the loss, the views, the stream of raw
sentences, and what training with it leaves behind (no auxiliary tensor in the model, an exact resume)."""
from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_CONFIG, ctrl_c, make_sentences, write_corpus, write_toml
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli.main import app
from corpora.conll import Sentence
from tagger.api import Tagger
from tagger.config import Config
from tagger.errors import ConfigError
from tagger.training import cvt
from tagger.training import loop as training
from tagger.training.crf import ConstrainedCRF
from tagger.training.model import Trainable
from tagger.training import unlabeled
from tagger.training.unlabeled import Stream, due
from tagger.vocab import build_vocab

TRAIN = [Sentence(tuple(t), tuple(g)) for t, g in make_sentences(40, seed=5)]
DEV = [Sentence(tuple(t), tuple(g)) for t, g in make_sentences(12, seed=6)]


def raw_text(path: Path, lines: int = 30, seed: int = 9) -> Path:
    """A gzipped raw text file: made-up paragraphs of two sentences each, as a user's own domain text."""
    sents = [" ".join(tokens) for tokens, _ in make_sentences(2 * lines, seed)]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(f"{a} {b}\n" for a, b in zip(sents[::2], sents[1::2]))
    return path


def config(**changes) -> Config:
    return Config.from_dict({**TINY_CONFIG, "dropout": 0.3, "word_dropout": 0.1, **changes})


def run(output: Path, files, resume: bool = False, **changes) -> training.Progress:
    return training.train(config=config(**changes), train_sents=TRAIN, dev_sents=DEV, output=output,
                          source_scheme="iob2", dev_scheme="iob2", resume=resume, unlabeled=files)


# -- the loss and the views -----------------------------------------------------------------------------------

def test_the_cross_view_loss_is_zero_when_the_views_agree_with_the_full_model():
    target = torch.softmax(torch.randn(2, 5, 4), -1)  # (B, T, K)
    target[:, :, 3] = 0.0  # a tag the scheme forbids here has probability 0, exactly
    target = target / target.sum(-1, keepdim=True)
    mask = torch.ones(2, 5, dtype=torch.bool)
    agreeing = {name: target.clamp_min(1e-30).log() for name in cvt.VIEWS}
    assert cvt.disagreement(target, agreeing, mask).item() == pytest.approx(0.0, abs=1e-5)
    other = {name: torch.randn(2, 5, 4) for name in cvt.VIEWS}
    assert cvt.disagreement(target, other, mask).item() > 0.1


def test_marginals_are_the_crfs_probabilities_of_each_tag():
    """Against brute force over every path of a 3-tag, 4-token sentence, one transition forbidden."""
    allowed = [[True, True, True], [True, True, False], [True, True, True]]
    crf = ConstrainedCRF(3, [True] * 3, allowed, [True] * 3)
    torch.nn.init.normal_(crf.transitions)
    emissions, mask = torch.randn(1, 4, 3), torch.ones(1, 4, dtype=torch.bool)
    paths = list(itertools.product(range(3), repeat=4))
    with torch.no_grad():
        scores = torch.stack([-crf.nll(emissions, torch.tensor([p]), mask) for p in paths]).exp()
    expected = torch.zeros(4, 3)
    for p, s in zip(paths, scores / scores.sum()):
        for t, tag in enumerate(p):
            expected[t, tag] += s
    assert torch.allclose(cvt.marginals(crf, emissions, mask)[0], expected, atol=1e-5)


def test_each_view_sees_only_its_side_of_the_sentence():
    torch.manual_seed(0)
    views = cvt.Views(hidden_size=3, num_tags=2, width=64)
    states = torch.randn(1, 5, 6)  # (B, T, 2*hidden): forward half, then backward half
    changed = states.clone()
    changed[0, 2, :3] += 3.0  # the forward LSTM's state at token 2 only
    a, b = views(states), views(changed)
    same = {name: torch.equal(a[name][0, :, :], b[name][0, :, :]) for name in cvt.VIEWS}
    assert same["backward"] and same["future"]  # neither reads forward states
    assert not torch.equal(a["forward"][0, 2], b["forward"][0, 2])
    assert torch.equal(a["past"][0, 2], b["past"][0, 2]) and not torch.equal(a["past"][0, 3], b["past"][0, 3])


def test_a_deep_bilstm_or_feature_columns_are_refused():
    with pytest.raises(ConfigError, match="num_layers = 1"):
        cvt.check_config(config(num_layers=2))
    with pytest.raises(ConfigError, match="--features"):
        cvt.check_config(config(features=[1]))


# -- the stream of unlabelled sentences ------------------------------------------------------------------------

def encoder():
    vocab = build_vocab((s.tokens for s in TRAIN), (s.tags for s in TRAIN))
    return Trainable.build(config(), vocab).encode


def test_a_stream_built_at_a_position_continues_with_the_same_batches(tmp_path):
    files = [raw_text(tmp_path / "a.txt.gz", 20, seed=1), raw_text(tmp_path / "b.txt.gz", 15, seed=2)]
    encode = encoder()
    whole = Stream(files, encode, "words", batch_size=4, seed=1)
    first = [whole.next_batch() for _ in range(7)]
    resumed = Stream(files, encode, "words", batch_size=4, seed=1, position=whole.position)
    later = [(whole.next_batch(), resumed.next_batch()) for _ in range(60)]  # past the end: a second pass
    assert all([e.tokens for e in a] == [e.tokens for e in b] for a, b in later)
    assert whole.position[0] >= 1  # it wrapped round to the first file
    assert all(len({len(e) for e in batch}) == 1 for batch in first)  # one length a batch, as training needs


def test_one_pass_of_the_stream_reads_each_line_once(tmp_path, monkeypatch):
    """Each buffer reads on from where the last one stopped (it once read its file again from line 0: a
    pass over a 20,000-line file decoded 419,872 lines)."""
    from tagger import rawtext

    plain = tmp_path / "b.txt"  # one gzipped file, one plain
    plain.write_bytes(gzip.decompress(raw_text(tmp_path / "b.gz", 30, seed=2).read_bytes()))
    files = [raw_text(tmp_path / "a.txt.gz", 40, seed=1), plain]
    lines = [line for f in files for line in rawtext.read_lines(f)]
    decoded = []
    real = rawtext.decode_lines

    def counting(stream, name, first=1):
        for text in real(stream, name, first):
            decoded.append(text.rstrip("\r\n"))
            yield text

    monkeypatch.setattr(rawtext, "decode_lines", counting)
    monkeypatch.setattr(unlabeled, "BUFFER_BATCHES", 2)  # a buffer: 8 sentences, 4 lines; 18 buffers a pass
    stream = Stream(files, encoder(), "words", batch_size=4, seed=1)
    while stream.position[0] == 0:
        stream.next_batch()
    assert decoded[: len(lines)] == lines  # the first pass: every line once, in order
    assert decoded[len(lines):] == lines[: len(decoded) - len(lines)]  # then the second pass's first buffer


def test_a_position_kept_before_offsets_continues_with_the_same_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(unlabeled, "BUFFER_BATCHES", 2)
    files = [raw_text(tmp_path / "a.txt.gz", 20, seed=1)]
    whole = Stream(files, encoder(), "words", batch_size=4, seed=1)
    for _ in range(9):
        whole.next_batch()
    passes, file, line, offset, taken = whole.position
    assert offset > 0
    old = Stream(files, encoder(), "words", batch_size=4, seed=1, position=[passes, file, line, taken])
    later = [(whole.next_batch(), old.next_batch()) for _ in range(30)]
    assert all([e.tokens for e in a] == [e.tokens for e in b] for a, b in later)


@pytest.mark.parametrize("ratio, expected", [(1.0, [1, 1, 1, 1]), (0.5, [0, 1, 0, 1]), (2.0, [2, 2, 2, 2]),
                                             (1.5, [1, 2, 1, 2])])
def test_unlabelled_batches_follow_each_labelled_one_at_the_ratio(ratio, expected):
    assert [due(k, ratio) for k in range(4)] == expected


# -- training with unlabelled text ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(a model trained 3 epochs with unlabelled text, its raw text file)."""
    tmp = tmp_path_factory.mktemp("cvt")
    files = [raw_text(tmp / "raw.txt.gz")]
    run(tmp / "out", files, epochs=3)
    return tmp / "out", files[0]


def test_the_saved_model_has_no_auxiliary_tensors_and_loads_in_the_v2_format(trained, tmp_path):
    out, _ = trained
    run(tmp_path / "plain", [], epochs=1)
    assert load_file(str(out / "model.safetensors")).keys() == load_file(str(tmp_path / "plain" / "model.safetensors")).keys()
    assert json.loads((out / "config.json").read_text())["format_version"] == 2
    assert Tagger.load(out).predict_tokens([["Anna", "visited", "Rome", "."]])
    trainer = load_file(str(out / "checkpoint" / "trainer.safetensors"))
    assert any(k.startswith(cvt.PREFIX) for k in trainer)  # they live in the checkpoint, for --resume


def test_metrics_count_the_unlabelled_sentences(trained):
    out, _ = trained
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(m["unlabeled_sentences"] > 0 and m["cvt_loss"] >= 0 for m in lines)
    assert lines[-1]["unlabeled_total"] == sum(m["unlabeled_sentences"] for m in lines)


def test_unlabelled_text_changes_what_is_learnt(trained, tmp_path):
    out, _ = trained
    run(tmp_path / "plain", [], epochs=3)
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "plain" / "model.safetensors"))
    assert not torch.equal(a["lstm.0.forward.weight_ih"], b["lstm.0.forward.weight_ih"])


def test_training_with_unlabelled_text_resumes_exactly(trained, tmp_path, monkeypatch):
    reference, raw = trained
    real, calls = cvt.loss, {"n": 0}

    def interrupted(model, views, batch):
        calls["n"] += 1
        if calls["n"] == 11:  # an unlabelled batch of epoch 2
            ctrl_c()
        return real(model, views, batch)

    monkeypatch.setattr(cvt, "loss", interrupted)
    with pytest.raises(training.Interrupted):
        run(tmp_path / "out", [raw], epochs=3)
    monkeypatch.undo()
    run(tmp_path / "out", [raw], resume=True, epochs=3)
    for name in ("model.safetensors", "checkpoint/model.safetensors"):
        a, b = load_file(str(tmp_path / "out" / name)), load_file(str(reference / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def cli_args(tmp_path: Path) -> list[str]:
    train = write_corpus(tmp_path / "train.txt", [(s.tokens, s.tags) for s in TRAIN])
    dev = write_corpus(tmp_path / "dev.txt", [(s.tokens, s.tags) for s in DEV])
    toml = write_toml(tmp_path / "c.toml", epochs=1)
    return ["train", str(train), "--dev", str(dev), "-o", str(tmp_path / "out"), "--config", str(toml), "-q"]


@pytest.mark.parametrize("content, problem", [(b"", "no text"), (b"\n\n  \n", "no text"),
                                              (b"PK\x03\x04\x00\x00binary", "NUL byte"),
                                              (b"caf\xe9 ol\xe9\n", "invalid UTF-8")])
def test_an_empty_or_binary_unlabelled_file_is_a_one_line_error(tmp_path, content, problem):
    (tmp_path / "raw.txt").write_bytes(content)
    result = CliRunner().invoke(app, [*cli_args(tmp_path), "--unlabeled", str(tmp_path / "raw.txt")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'raw.txt'}") and problem in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_resume_refuses_unlabelled_text_that_changed(tmp_path):
    raw = raw_text(tmp_path / "raw.txt.gz", 10)
    args = [*cli_args(tmp_path), "--unlabeled", str(raw)]
    assert CliRunner().invoke(app, args).exit_code == 0
    raw_text(raw, 10, seed=4)  # other text under the same name
    result = CliRunner().invoke(app, [*args, "--epochs", "2", "--resume"])
    assert result.exit_code == 1 and "unlabelled text file changed" in result.stderr, result.stderr


def test_the_progress_display_counts_the_unlabelled_sentences(tmp_path):
    args = [a for a in cli_args(tmp_path) if a != "-q"]
    result = CliRunner().invoke(app, [*args, "--unlabeled", str(raw_text(tmp_path / "raw.txt.gz", 10))])
    assert result.exit_code == 0, result.stderr
    assert "unlabelled sentences, cvt loss" in result.stderr
    assert "unlabelled" in CliRunner().invoke(app, ["info", str(tmp_path / "out")]).stdout
