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
    document, first = out.split("\n\n")[0], out.split("\n\n")[1].splitlines()
    assert document == "-DOCSTART- -X- -X- O O"  # the document boundary kept, predicted O beside the gold
    tokens, tags = sents[45]
    assert [line.split()[:3] for line in first] == [
        line.split()[:3] for line in conll2003_text([sents[45]]).splitlines()[2:2 + len(tokens)]]
    assert all(len(line.split()) == 5 for line in first)  # the prediction beside the gold NER column
    assert [line.split()[3] for line in first] == list(tags)
    assert json.loads(tagger("evaluate", model, tmp_path / "dev.txt", "--json").stdout)["f1"] > 0.5
    # raw text has no POS column: a clear error, not a crash
    result = runner.invoke(app, ["predict", str(model)], input="John visited Paris .\n")
    assert result.exit_code == 1 and "feature columns" in result.stderr and "Traceback" not in result.output


def test_pos_tags_from_conllu_train_and_are_scored_by_token_accuracy(tmp_path, corpus):
    rows = {"visited": "VERB", "works": "VERB", "met": "VERB", "hired": "VERB", ".": "PUNCT"}

    def conllu(sentences):
        return "".join("# text = " + " ".join(toks) + "\n" + "".join(
            f"{i}\t{t}\t{t.lower()}\t{rows.get(t, 'PROPN' if t[0].isupper() else 'NOUN')}\t_\t_\t0\t_\t_\t_\n"
            for i, t in enumerate(toks, 1)) + "\n" for toks, _ in sentences)

    sents = make_sentences(60, seed=5)
    (tmp_path / "train.conllu").write_text(conllu(sents[:45]), encoding="utf-8")
    (tmp_path / "dev.conllu").write_text(conllu(sents[45:]), encoding="utf-8")
    model = tmp_path / "pos"
    tagger("train", tmp_path / "train.conllu", "--dev", tmp_path / "dev.conllu", "-o", model,
           "--config", corpus["config"], "--epochs", "6")
    scores = json.loads(tagger("evaluate", model, tmp_path / "dev.conllu", "--json").stdout)
    assert scores["scored_as"] == "tokens" and scores["accuracy"] > 0.6
    out = json.loads(tagger("predict", model, input="Anna visited Rome.\n").stdout)
    assert [e["text"] for e in out["entities"]] == ["Anna", "visited", "Rome", "."]  # one label per token


def test_tab_separated_spanish_two_column_files(tmp_path, corpus):
    words = {"visited": "visitó", "works": "trabaja", "for": "para", "in": "en", "met": "conoció",
             "yesterday": "ayer", "shares": "acciones", "of": "de", "fell": "cayeron", "the": "la"}
    sents = [([words.get(t, t) for t in toks], tags) for toks, tags in make_sentences(60, seed=6)]
    for name, part in (("train", sents[:45]), ("dev", sents[45:])):
        (tmp_path / f"{name}.tsv").write_text(
            "\n".join("".join(f"{t}\t{g}\n" for t, g in zip(toks, tags)) for toks, tags in part), encoding="utf-8")
    model = tmp_path / "es"
    tagger("train", tmp_path / "train.tsv", "--dev", tmp_path / "dev.tsv", "-o", model, "--config",
           corpus["config"], "--epochs", "6")
    out = json.loads(tagger("predict", model, input="Ayer Anna conoció a Bosch AG en Berlín.\n").stdout)
    assert out["entities"], "the model found no entity: the offsets below would check nothing"
    assert all(out["text"][e["start"] : e["end"]] == e["text"] for e in out["entities"])


def test_a_local_datasets_directory_trains_like_a_file(tmp_path, corpus):
    """The same sentences as a saved DatasetDict or as CoNLL files train the same model: the same scores on
    the same sentences, the same tags on new text."""
    import datasets
    from test_hf import to_dataset

    from corpora.conll import Sentence

    pairs = make_sentences(60, seed=7)
    sents = [Sentence(tuple(t), tuple(g)) for t, g in pairs]
    names = sorted({tag for s in sents for tag in s.tags})
    datasets.DatasetDict({"train": to_dataset(sents[:45], names),
                          "validation": to_dataset(sents[45:], names)}).save_to_disk(str(tmp_path / "ds"))
    train, dev = write_corpus(tmp_path / "train.conll", pairs[:45]), write_corpus(tmp_path / "dev.conll", pairs[45:])
    tagger("train", tmp_path / "ds", "--dev", tmp_path / "ds", "-o", tmp_path / "from-datasets", "--config",
           corpus["config"])
    tagger("train", train, "--dev", dev, "-o", tmp_path / "from-files", "--config", corpus["config"])
    scores = [json.loads(tagger("evaluate", tmp_path / model, dev, "--json").stdout)
              for model in ("from-datasets", "from-files")]
    assert scores[0] == scores[1] and scores[0]["sentences"] == 15 and scores[0]["f1"] > 0.5
    text = "Anna Novak visited Veldmark with Bosch AG .\n"
    assert tagger("predict", tmp_path / "from-datasets", input=text).stdout == \
        tagger("predict", tmp_path / "from-files", input=text).stdout
