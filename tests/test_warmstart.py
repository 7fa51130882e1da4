"""`tagger train ... --init MODEL` (tagger/training/warmstart.py): a training that starts from a trained
model's weights and vocabulary, the next round of an active-learning loop."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import make_sentences, write_corpus, write_toml
from tagger.api import Tagger

runner = CliRunner()


def train(*args):
    return runner.invoke(app, ["train", *map(str, args)])


def one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def next_round(tmp_path):
    """More labelled sentences (the next round), with a word the first model never saw, and a dev file."""
    sentences = make_sentences(30, seed=11)
    sentences[0] = (["Zyxqwv", *sentences[0][0]], ["O", *sentences[0][1]])
    return {"train": write_corpus(tmp_path / "round2.txt", sentences),
            "dev": write_corpus(tmp_path / "dev2.txt", make_sentences(10, seed=12))}


def weights(model: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32) for k, v in Tagger.load(model).tensors.items()}


def test_init_starts_from_the_models_weights_and_keeps_its_vocabulary(trained_model, next_round, tmp_path):
    # with a learning rate of 1e-20 nothing moves: the saved model is the one it started from
    frozen = write_toml(tmp_path / "still.toml", optimizer="sgd", momentum=0.0, lr=1e-20, epochs=1)
    out = tmp_path / "round2"
    result = train(next_round["train"], "--dev", next_round["dev"], "-o", out, "--init", trained_model,
                   "--config", frozen)
    assert result.exit_code == 0, result.output
    before, after = weights(trained_model), weights(out)
    assert before.keys() == after.keys()
    for name in before:  # a fresh network would differ by tenths
        np.testing.assert_allclose(after[name], before[name], rtol=0, atol=1e-9, err_msg=name)
    assert json.loads((out / "vocab.json").read_text()) == json.loads((trained_model / "vocab.json").read_text())
    assert "1 of" in result.stderr and "new to its vocabulary" in result.stderr and "1 as <unk>" in result.stderr


def test_init_then_trains_on_the_new_round(trained_model, next_round, tmp_path):
    out = tmp_path / "round2"
    result = train(next_round["train"], "--dev", next_round["dev"], "-o", out, "--init", trained_model,
                   "--epochs", 2, "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["epochs"] == 2  # the option given...
    assert config["hidden_size"] == json.loads((trained_model / "config.json").read_text())["config"]["hidden_size"]
    before, after = weights(trained_model), weights(out)
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # ...and it learned
    tagger = Tagger.load(out)
    assert tagger.predict_tokens([["Zyxqwv", "visited", "Paris"]])[0][0] in tagger.labels


def test_a_new_tag_is_one_line_naming_it(trained_model, tmp_path):
    sentences = make_sentences(10, seed=2)
    sentences[3] = (["Rex", *sentences[3][0]], ["B-ANIMAL", *sentences[3][1]])
    data = write_corpus(tmp_path / "new-tag.txt", sentences)
    result = train(data, "--dev", data, "-o", tmp_path / "m", "--init", trained_model, "--quiet")
    one_line_error(result, "tag S-ANIMAL", "--extend-tags")
    assert not (tmp_path / "m").exists()


def test_extend_tags_adds_the_new_tag_and_keeps_the_old_ones_scores(trained_model, tmp_path):
    sentences = make_sentences(20, seed=2)
    sentences[3] = (["Rex", *sentences[3][0]], ["B-ANIMAL", *sentences[3][1]])
    data = write_corpus(tmp_path / "new-tag.txt", sentences)
    out = tmp_path / "extended"
    result = train(data, "--dev", data, "-o", out, "--init", trained_model, "--extend-tags",
                   "--config", write_toml(tmp_path / "still.toml", optimizer="sgd", momentum=0.0, lr=1e-20, epochs=1))
    assert result.exit_code == 0, result.output
    old, new = Tagger.load(trained_model), Tagger.load(out)
    assert new.tags[: len(old.tags)] == old.tags and "S-ANIMAL" in new.tags
    k = len(old.tags)
    before, after = weights(trained_model), weights(out)
    np.testing.assert_allclose(after["emissions.weight"][:k], before["emissions.weight"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(after["crf.transitions"][:k, :k], before["crf.transitions"], rtol=0, atol=1e-9)
    assert "ANIMAL" in new.entity_types


@pytest.mark.parametrize("args,fragments", [
    (["--resume"], ["--init", "--resume"]),
    (["--embeddings", "vectors.txt"], ["--init", "--embeddings"]),
])
def test_init_refuses_options_it_cannot_use(trained_model, next_round, tmp_path, args, fragments):
    result = train(next_round["train"], "--dev", next_round["dev"], "-o", tmp_path / "m", "--init", trained_model,
                   *args)
    one_line_error(result, *fragments)


def test_init_refuses_another_network_shape(trained_model, next_round, tmp_path):
    wider = write_toml(tmp_path / "wide.toml", hidden_size=64)
    result = train(next_round["train"], "--dev", next_round["dev"], "-o", tmp_path / "m", "--init", trained_model,
                   "--config", wider, "--quiet")
    one_line_error(result, "hidden_size", "model's (16)", "not 64")


def test_init_needs_a_model(next_round, tmp_path):
    result = train(next_round["train"], "--dev", next_round["dev"], "-o", tmp_path / "m", "--init", tmp_path / "none")
    one_line_error(result, str(tmp_path / "none"))


def test_a_model_of_another_tokeniser_is_one_line_naming_both_before_the_tags(trained_model, tmp_path):
    def characters(tokens, tags):  # each word cut into its characters, its tag's entity kept (IOB2)
        out = [(c, t if i == 0 else t.replace("B-", "I-")) for w, t in zip(tokens, tags) for i, c in enumerate(w)]
        return [c for c, _ in out], [t for _, t in out]

    chars = write_corpus(tmp_path / "chars.txt", [characters(*s) for s in make_sentences(20, seed=4)])
    result = train(chars, "--dev", chars, "-o", tmp_path / "mchars", "--config", write_toml(tmp_path / "c.toml",
                                                                                           epochs=1), "--quiet")
    assert result.exit_code == 0, result.output
    words = make_sentences(10, seed=2)
    words[3] = (["Rex", *words[3][0]], ["B-ANIMAL", *words[3][1]])  # a new tag: its error would come first
    data = write_corpus(tmp_path / "words.txt", words)
    result = train(data, "--dev", data, "-o", tmp_path / "m", "--init", tmp_path / "mchars", "--extend-tags", "-q")
    one_line_error(result, "tokenises characters, one a token (chars)", "the training tokens are words (words")
    result = train(chars, "--dev", chars, "-o", tmp_path / "m", "--init", trained_model, "-q")
    one_line_error(result, "tokenises words (words)", "the training tokens are characters")
    assert not (tmp_path / "m").exists()
