"""Whole user sessions through the CLI: convert, train, evaluate, predict, on the kinds of files users have."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app
from conftest import make_sentences, write_corpus

runner = CliRunner()


def tagger(*args, input=None):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    assert result.exit_code == 0, f"{args[0]}: exit {result.exit_code}: {result.stderr} {result.exception!r}"
    return result


def test_convert_train_evaluate_predict(corpus, tmp_path):
    bioes = tmp_path / "train.bioes"
    tagger("convert", corpus["train"], bioes, "--to", "bioes")
    model = tmp_path / "model"
    trained = tagger("train", bioes, "--dev", corpus["dev"], "-o", model, "--config", corpus["config"],
                     "--test", corpus["test"], "--epochs", "4")
    overall = next(line for line in trained.stdout.splitlines() if line.startswith("overall")).split()
    scores = json.loads(tagger("evaluate", model, corpus["test"], "--json").stdout)
    assert float(overall[3]) == round(100 * scores["f1"], 2)  # --test and `evaluate` agree
    assert scores["f1"] > 0.5
    # the model answers in the scheme of the corpus it was trained on: BIOES here
    out = tagger("predict", model, "--input-format", "tokens", input="Anna visited Rome .\n").stdout
    assert json.loads(out)["tags"] == ["S-PER", "O", "S-LOC", "O"]


def test_windows_files_with_bom_and_crlf(tmp_path, corpus):
    sents = make_sentences(60, seed=11)
    train = write_corpus(tmp_path / "train.txt", sents[:45], newline="\r\n", bom=True)
    dev = write_corpus(tmp_path / "dev.txt", sents[45:], newline="\r\n", bom=True)
    tagger("train", train, "--dev", dev, "-o", tmp_path / "m", "--config", corpus["config"], "--epochs", "4", "-q")
    out = tagger("predict", tmp_path / "m", dev, "--input-format", "conll").stdout
    assert "\r" not in out and "\ufeff" not in out
    assert out.split("\n\n")[0].splitlines()[0].split()[0] == sents[45][0][0]
    predicted = tagger("predict", tmp_path / "m", "--input-format", "tokens",
                       input="\ufeffJohn Smith visited Paris .\r\n").stdout
    assert json.loads(predicted) == {"tokens": ["John", "Smith", "visited", "Paris", "."],
                                     "tags": ["B-PER", "I-PER", "O", "B-LOC", "O"]}


def conll2003_text(sentences) -> str:
    """Four columns (token POS chunk NER) with -DOCSTART- lines, as the CoNLL-2003 files are."""
    pos = {"visited": "VBD", "works": "VBZ", "hired": "VBD", "met": "VBD", ".": "."}
    lines = ["-DOCSTART- -X- -X- O", ""]
    for tokens, tags in sentences:
        for token, tag in zip(tokens, tags):
            p = "NNP" if tag != "O" else pos.get(token, "NN")
            lines.append(f"{token} {p} {'I-NP' if p.startswith('NN') else 'O'} {tag}")
        lines.append("")
    return "\n".join(lines) + "\n"


def test_conll2003_files_with_a_pos_feature(tmp_path, corpus):
    sents = make_sentences(60, seed=12)
    (tmp_path / "train.txt").write_text(conll2003_text(sents[:45]))
    (tmp_path / "dev.txt").write_text(conll2003_text(sents[45:]))
    model = tmp_path / "m"
    tagger("train", tmp_path / "train.txt", "--dev", tmp_path / "dev.txt", "-o", model, "--config", corpus["config"],
           "--features", "pos", "--epochs", "4", "-q")
    assert json.loads((model / "config.json").read_text())["config"]["features"] == [1]
    out = tagger("predict", model, tmp_path / "dev.txt", "--input-format", "conll").stdout
    first = out.split("\n\n")[0].splitlines()
    tokens, tags = sents[45]
    assert [line.split()[:3] for line in first] == [
        line.split()[:3] for line in conll2003_text([sents[45]]).splitlines()[2:2 + len(tokens)]]
    assert all(len(line.split()) == 4 for line in first)  # the predicted tag replaces the NER column
    assert json.loads(tagger("evaluate", model, tmp_path / "dev.txt", "--json").stdout)["f1"] > 0.5
    # raw text has no POS column: a clear error, not a crash
    result = runner.invoke(app, ["predict", str(model)], input="John visited Paris .\n")
    assert result.exit_code == 1 and "feature columns" in result.stderr and "Traceback" not in result.output
