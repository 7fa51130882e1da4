"""The `tagger` command as a user types it: exit 0 on success, 1 + one `error: ...` line for their mistakes,
2 for wrong usage, and never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import BAD_CORPORA, DAMAGES, bad_corpus, make_sentences, write_corpus, write_toml

runner = CliRunner()


def tagger(*args, input: str | bytes | None = None):
    """Run `tagger ARGS...` in-process; stdout and stderr are kept apart (result.stdout / result.stderr)."""
    return runner.invoke(app, [str(a) for a in args], input=input)


def assert_ok(result) -> None:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}\n{result.exception!r}"


def assert_user_error(result, *fragments: str) -> str:
    """Exit 1 with exactly one line on stderr, `error: ...`, holding every fragment; no traceback."""
    assert isinstance(result.exception, SystemExit), f"crashed instead: {result.exception!r}"
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def assert_usage_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.output


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


# -- train ------------------------------------------------------------------------------------------------

def test_train_writes_a_model_directory_and_reports_dev_f1(corpus, tmp_path):
    out = tmp_path / "model"
    result = tagger("train", corpus["train"], "--dev", corpus["dev"], "--output", out, "--config", corpus["config"],
                    "--test", corpus["test"])
    assert_ok(result)
    assert {"config.json", "vocab.json", "model.safetensors", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    assert f"model saved in {out}" in result.stdout
    assert "overall" in result.stdout  # the --test table
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3  # epochs = 3 in tiny.toml


def test_train_refuses_a_non_empty_output_directory_unless_forced(corpus, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["train", corpus["train"], "--dev", corpus["dev"], "--output", out, "--config", corpus["config"], "-q"]
    assert_user_error(tagger(*args), str(out), "--force")
    assert not (out / "model.safetensors").exists()
    assert_ok(tagger(*args, "--force"))
    assert (out / "model.safetensors").exists()


def test_train_epochs_option_overrides_the_config_file(corpus, tmp_path):
    out = tmp_path / "model"
    assert_ok(tagger("train", corpus["train"], "--dev", corpus["dev"], "-o", out, "--config", corpus["config"],
                     "--epochs", "1", "-q"))
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_train_resume_without_a_checkpoint_is_a_user_error(corpus, tmp_path):
    out = tmp_path / "model"
    result = tagger("train", corpus["train"], "--dev", corpus["dev"], "-o", out, "--config", corpus["config"],
                    "--resume", "-q")
    assert_user_error(result, "nothing to resume")
    assert not out.exists()  # no empty directory left behind


def test_train_with_a_missing_embeddings_file_fails_first_and_leaves_no_directory(corpus, tmp_path):
    out = tmp_path / "model"
    missing = tmp_path / "glove.txt.gz"
    result = tagger("train", tmp_path / "not-read-yet.txt", "--dev", corpus["dev"], "-o", out,
                    "--config", corpus["config"], "--embeddings", missing, "-q")
    assert_user_error(result, str(missing), "no such embeddings file")  # before the corpus is read
    assert not out.exists()


@pytest.mark.parametrize("option", ["--lexicon", "--bigram-embeddings"])
def test_train_with_a_missing_lexicon_or_bigram_file_fails_first(corpus, tmp_path, option):
    out, missing = tmp_path / "model", tmp_path / "words.txt"
    result = tagger("train", tmp_path / "not-read-yet.txt", "--dev", corpus["dev"], "-o", out,
                    "--config", corpus["config"], option, missing, "-q")
    assert_user_error(result, str(missing), "no such")  # before the corpus is read
    assert not out.exists()


def test_train_warns_once_about_tags_with_a_prefix_no_scheme_has(corpus, tmp_path):
    sents = [(["John", "visited", "Paris"], ["X-PER", "O", "X-LOC"]), (["it", "rained"], ["O", "O"])] * 10
    train = write_corpus(tmp_path / "xtrain.txt", sents)
    dev = write_corpus(tmp_path / "xdev.txt", sents[:4])
    result = tagger("train", train, "--dev", dev, "-o", tmp_path / "m", "--config", corpus["config"])
    assert_ok(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith(f"warning: {train}")]
    assert warnings == [f"warning: {train}:1: tag 'X-PER' looks like an entity tag, but X- is no prefix of "
                        "IOB1/IOB2/BIOES/BILOU/BMES: the tags are read as plain labels (like POS tags)"]


def test_train_config_with_unknown_setting_names_the_file(corpus, tmp_path):
    config = write_toml(tmp_path / "typo.toml", hiden_size=8)
    result = tagger("train", corpus["train"], "--dev", corpus["dev"], "-o", tmp_path / "m", "--config", config, "-q")
    assert_user_error(result, str(config), "hiden_size")


# -- predict -------------------------------------------------------------------------------------------------

def test_predict_raw_text_from_stdin_gives_entities_with_offsets(trained_model):
    lines = ["John Smith visited Paris .", "Angela Merkel works for Siemens AG in Berlin .", "it rained all day ."]
    result = tagger("predict", trained_model, input="\n".join(lines) + "\n")
    assert_ok(result)
    records = jsonl(result.stdout)
    assert [r["text"] for r in records] == lines
    found = [(e["text"], e["label"]) for r in records for e in r["entities"]]
    assert ("John Smith", "PER") in found and ("Paris", "LOC") in found
    for record in records:
        for e in record["entities"]:
            assert set(e) == {"start", "end", "label", "text"}
            assert record["text"][e["start"]:e["end"]] == e["text"]


def test_predict_empty_input_gives_empty_output(trained_model):
    result = tagger("predict", trained_model, input="")
    assert_ok(result)
    assert result.stdout == ""


def test_predict_tokens_one_sentence_per_line(trained_model):
    result = tagger("predict", trained_model, "--input-format", "tokens", input="John Smith visited Paris .\nAnna\n")
    assert_ok(result)
    records = jsonl(result.stdout)
    assert records[0]["tokens"] == ["John", "Smith", "visited", "Paris", "."]
    assert records[0]["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert records[1]["tokens"] == ["Anna"] and len(records[1]["tags"]) == 1


def test_predict_conll_in_conll_out(trained_model, tmp_path):
    path = write_corpus(tmp_path / "in.txt", [(["John", "Smith", "visited", "Paris", "."], ["O"] * 5),
                                              (["it", "rained", "."], ["O"] * 3)])
    result = tagger("predict", trained_model, path, "--input-format", "conll")
    assert_ok(result)
    blocks = [b.splitlines() for b in result.stdout.strip().split("\n\n")]
    # the input's columns stay (here its gold tags, all O) and the prediction is a new last column
    assert blocks[0] == ["John O B-PER", "Smith O I-PER", "visited O O", "Paris O B-LOC", ". O O"]
    assert [line.split()[0] for line in blocks[1]] == ["it", "rained", "."]
    assert result.stdout.endswith("\n\n")


DOCUMENTS = ("-DOCSTART- -X- -X- O\n\nJohn NNP B-NP O\nSmith NNP I-NP O\n\nit PRP B-NP O\nrained VBD B-VP O\n\n"
             "-DOCSTART- -X- -X- O\n\nParis NNP B-NP O\n\n")


@pytest.mark.parametrize("scores", [[], ["--scores"]])
def test_predict_conll_keeps_the_document_boundaries(scores, trained_model, tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text(DOCUMENTS, encoding="utf-8")
    result = tagger("predict", trained_model, path, "--input-format", "conll", *scores)
    assert_ok(result)
    blocks = [b.splitlines() for b in result.stdout.strip().split("\n\n")]
    assert [b[0].split()[0] for b in blocks] == ["-DOCSTART-", "John", "it", "-DOCSTART-", "Paris"]
    assert blocks[0] == blocks[3] == ["-DOCSTART- -X- -X- O O"]  # predicted O beside the gold, as wide as rows
    assert len(blocks[1][0].split()) == (6 if scores else 5)


def test_predict_conll_from_stdin_without_tags(trained_model):
    result = tagger("predict", trained_model, "--input-format", "conll", input="John\nSmith\nvisited\nParis\n.\n")
    assert_ok(result)
    assert result.stdout.split() == ["John", "B-PER", "Smith", "I-PER", "visited", "O", "Paris", "B-LOC", ".", "O"]


def test_predict_output_file_is_never_overwritten_without_force(trained_model, tmp_path):
    out = tmp_path / "tags.jsonl"
    args = ["predict", trained_model, "--input-format", "tokens", "--output", out]
    assert_ok(tagger(*args, input="John Smith visited Paris .\n"))
    first = out.read_text()
    assert jsonl(first)[0]["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert_user_error(tagger(*args, input="it rained .\n"), str(out), "already exists", "--force")
    assert out.read_text() == first
    assert_ok(tagger(*args, "--force", input="it rained .\n"))
    assert jsonl(out.read_text())[0]["tokens"] == ["it", "rained", "."]


def test_predict_raw_text_as_conll_writes_the_tokeniser_s_tokens_a_sentence_a_block(trained_model):
    result = tagger("predict", trained_model, "--output-format", "conll",
                    input="John Smith visited Paris. It rained.\nMary works for Siemens AG.\n")
    assert_ok(result)
    blocks = [b.splitlines() for b in result.stdout.strip().split("\n\n")]
    assert blocks[0] == ["John B-PER", "Smith I-PER", "visited O", "Paris B-LOC", ". O"]
    assert [len(b) for b in blocks] == [5, 3, 6]  # two sentences in the first line, one in the second


# -- evaluate ------------------------------------------------------------------------------------------------

def test_evaluate_prints_a_table(trained_model, corpus):
    result = tagger("evaluate", trained_model, corpus["test"])
    assert_ok(result)
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["precision", "recall", "f1", "support"]
    labels = [row.split()[0] for row in rows]
    assert {"PER", "LOC", "overall", "token"} <= set(labels)


def test_evaluate_json_has_overall_and_per_type_scores(trained_model, corpus):
    result = tagger("evaluate", trained_model, corpus["test"], "--json")
    assert_ok(result)
    scores = json.loads(result.stdout)
    assert {"precision", "recall", "f1", "per_type", "accuracy"} <= set(scores)
    assert 0.0 <= scores["f1"] <= 1.0
    assert set(scores["per_type"]["PER"]) == {"precision", "recall", "f1", "support"}
    gold_per = sum(t == "B-PER" for line in corpus["test"].read_text().splitlines() for t in line.split()[1:])
    assert scores["per_type"]["PER"]["support"] == gold_per


def test_evaluate_with_a_scheme_the_file_is_not_in_names_file_and_line(trained_model, corpus):
    text = corpus["test"].read_text()
    line = text.splitlines().index(next(l for l in text.splitlines() if l.endswith(("I-PER", "I-ORG", "I-LOC")))) + 1
    result = tagger("evaluate", trained_model, corpus["test"], "--scheme", "bmes")
    assert_user_error(result, f"{corpus['test']}:{line}:", "BMES", "look like IOB2")


def test_evaluate_an_entity_model_on_plain_tags_is_one_error_line(trained_model, tmp_path):
    pos = write_corpus(tmp_path / "pos.txt", [(["John", "runs", "."], ["NNP", "VBZ", "."])])
    assert_user_error(tagger("evaluate", trained_model, pos), str(pos), "no scheme")


def test_evaluate_report_never_overwrites_a_file_without_force(trained_model, corpus, tmp_path):
    report = tmp_path / "report.html"
    report.write_text("my notes\n")
    assert_user_error(tagger("evaluate", trained_model, corpus["test"], "--report", report), str(report),
                      "already exists", "--force")
    assert report.read_text() == "my notes\n"
    assert_ok(tagger("evaluate", trained_model, corpus["test"], "--report", report, "--force"))
    assert report.read_text().startswith("<!DOCTYPE html>")


# -- info, --version ---------------------------------------------------------------------------------------

def test_version():
    from tagger import __version__

    result = tagger("--version")
    assert_ok(result)
    assert result.stdout == f"tagger {__version__}\n"


def test_info_says_what_the_model_is(corpus, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w} {' '.join(['0.1'] * 16)}\n" for w in ("john", "paris", "visited", "zebra")))
    out = tmp_path / "model"
    assert_ok(tagger("train", corpus["train"], "--dev", corpus["dev"], "-o", out, "--config", corpus["config"],
                     "--embeddings", vectors, "-q"))
    result = tagger("info", out, "--json")
    assert_ok(result)
    about = json.loads(result.stdout)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda m: m["dev_f1"])
    assert about["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]  # the corpus's IOB2
    assert (about["scheme"], about["model_scheme"], about["tokenizer"]) == ("iob2", "bioes", "words")
    assert about["vocabulary"]["pretrained_only_words"] == 1  # zebra
    assert about["embeddings"] == "vectors.txt"
    assert (about["best_dev_f1"], about["best_epoch"]) == (best["dev_f1"], best["epoch"])
    assert (about["training_corpus"], about["dev_corpus"]) == (str(corpus["train"]), str(corpus["dev"]))
    assert about["date"][:4].isdigit() and "T" in about["date"]
    text = tagger("info", out).stdout
    assert "labels:      O B-LOC I-LOC B-ORG I-ORG B-PER I-PER\n" in text
    assert f"best dev F1: {100 * best['dev_f1']:.2f} at epoch {best['epoch']}" in text


def test_info_on_a_missing_model_is_one_error_line(tmp_path):
    assert_user_error(tagger("info", tmp_path / "nope"), "no such model directory")


# -- convert -------------------------------------------------------------------------------------------------

def test_convert_rewrites_tags_and_refuses_to_overwrite(tmp_path):
    src = write_corpus(tmp_path / "in.txt", [(["John", "Smith", "visited", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"])])
    out = tmp_path / "out.txt"
    result = tagger("convert", src, out, "--to", "bioes")
    assert_ok(result)
    assert out.read_text() == "John B-PER\nSmith E-PER\nvisited O\nParis S-LOC\n\n"
    assert_user_error(tagger("convert", src, out, "--to", "bilou"), str(out), "already exists")
    assert "E-PER" in out.read_text()
    assert_ok(tagger("convert", src, out, "--to", "bilou", "--force"))
    assert out.read_text() == "John B-PER\nSmith L-PER\nvisited O\nParis U-LOC\n\n"


def test_convert_to_standard_output_with_a_dash(tmp_path, monkeypatch):
    src = write_corpus(tmp_path / "in.txt", [(["John", "Smith", "visited", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"])])
    monkeypatch.chdir(tmp_path)
    result = tagger("convert", src, "-", "--to", "bioes")
    assert_ok(result)
    assert result.stdout == "John B-PER\nSmith E-PER\nvisited O\nParis S-LOC\n\n"
    assert "wrote 1 sentences to standard output" in result.stderr
    assert not (tmp_path / "-").exists()


def test_convert_does_not_offer_auto_as_a_target(tmp_path):
    src = write_corpus(tmp_path / "in.txt", [(["Paris"], ["B-LOC"])])
    assert_usage_error(tagger("convert", src, tmp_path / "out.txt", "--to", "auto"), "auto")
    assert "auto" not in tagger("convert", "--help").stdout.split("--to", 1)[1].split("\n")[0]


def test_convert_plain_tags_is_a_user_error(tmp_path):
    src = write_corpus(tmp_path / "pos.txt", [(["John", "runs"], ["NNP", "VBZ"])])
    assert_user_error(tagger("convert", src, tmp_path / "out.txt", "--to", "bioes"), "no scheme to convert")


# -- wrong usage: exit 2 ----------------------------------------------------------------------------------

def test_unknown_option_is_a_usage_error(corpus, tmp_path):
    result = tagger("train", corpus["train"], "--dev", corpus["dev"], "-o", tmp_path / "m", "--bogus")
    assert_usage_error(result, "--bogus")


def test_missing_argument_is_a_usage_error(trained_model):
    assert_usage_error(tagger("evaluate", trained_model), "TEST")


def test_missing_required_option_is_a_usage_error(corpus, tmp_path):
    assert_usage_error(tagger("train", corpus["train"], "-o", tmp_path / "m"), "--dev")


def test_invalid_choice_is_a_usage_error(tmp_path):
    assert_usage_error(tagger("convert", tmp_path / "a", tmp_path / "b", "--to", "bio9"), "bio9")


# -- bad input: exit 1, one line naming the file (and line) ----------------------------------------------

@pytest.mark.parametrize("name", sorted(BAD_CORPORA))
def test_bad_training_file_is_reported_with_file_and_line(name, corpus, tmp_path):
    path, options, fragments = bad_corpus(tmp_path, name)
    result = tagger("train", path, "--dev", corpus["dev"], "-o", tmp_path / "m", "--config", corpus["config"],
                    "-q", *options)
    assert_user_error(result, str(path), *fragments)
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_training_file_that_is_a_directory(corpus, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    result = tagger("train", folder, "--dev", corpus["dev"], "-o", tmp_path / "m", "--config", corpus["config"])
    assert_user_error(result, str(folder), "is a directory")


@pytest.mark.parametrize("name", ["missing", "bad_utf8", "unknown_prefix"])
def test_bad_test_file_for_evaluate(name, trained_model, tmp_path):
    path, options, fragments = bad_corpus(tmp_path, name)
    assert_user_error(tagger("evaluate", trained_model, path, *options), str(path), *fragments)


@pytest.mark.parametrize("data, fragments", [
    (b"", None), (b"John Smith\x00\n", [":1:", "NUL"]), (b"ok line\n\xff\xfe bad\n", [":2:", "invalid UTF-8"])])
def test_bad_predict_input_file(data, fragments, trained_model, tmp_path):
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    result = tagger("predict", trained_model, path, "--input-format", "tokens")
    if fragments is None:  # an empty file is valid input: nothing to tag
        assert_ok(result)
        assert result.stdout == ""
    else:
        assert_user_error(result, str(path), *fragments)


def test_predict_input_that_does_not_exist_or_is_a_directory(trained_model, tmp_path):
    assert_user_error(tagger("predict", trained_model, tmp_path / "nope.txt"), "nope.txt", "no such file")
    assert_user_error(tagger("predict", trained_model, tmp_path), str(tmp_path), "is a directory")


def test_dev_label_never_seen_in_training_is_a_warning(corpus, tmp_path):
    dev = write_corpus(tmp_path / "dev_misc.txt", [(["John", "saw", "Europe", "."], ["B-PER", "O", "B-MISC", "O"])])
    out = tmp_path / "m"
    result = tagger("train", corpus["train"], "--dev", dev, "-o", out, "--config", corpus["config"])
    assert_ok(result)
    assert f"warning: {dev}: label(s) MISC never seen in training" in result.stderr
    assert (out / "model.safetensors").exists()


def test_embeddings_with_ragged_rows_name_the_line(corpus, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("john 0.1 0.2 0.3\nparis 0.1 0.2\n")
    result = tagger("train", corpus["train"], "--dev", corpus["dev"], "-o", tmp_path / "m",
                    "--config", corpus["config"], "--embeddings", vectors, "-q")
    assert_user_error(result, f"{vectors}:2:", "expected 3")


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_model_directory_is_refused(damage, model_copy, corpus):
    spoil, fragments = DAMAGES[damage]
    spoil(model_copy)
    assert_user_error(tagger("predict", model_copy, "--input-format", "tokens", input="John\n"), *fragments)
    assert_user_error(tagger("evaluate", model_copy, corpus["test"]), *fragments)


def test_model_directory_that_does_not_exist_or_is_a_file(tmp_path, corpus):
    assert_user_error(tagger("predict", tmp_path / "nope", input=""), "no such model directory")
    assert_user_error(tagger("evaluate", corpus["train"], corpus["test"]), str(corpus["train"]), "not a model")


def test_predict_raw_text_keeps_one_output_line_per_input_line_whatever_the_characters(trained_model):
    lines = ["Zoë visited 東京 🙂 .", "\x0cJohn\x0bSmith\u2028met Anna\x85in Paris\u00a0.", "\x1b[1mBerlin\x1b[0m",
             "", "e\u0301 \u202eRTL\u202c \t ."]
    result = tagger("predict", trained_model, input="\r\n".join(lines) + "\r\n")
    assert_ok(result)
    records = jsonl(result.stdout)
    assert [r["text"] for r in records] == lines
    for record in records:
        for e in record["entities"]:
            assert record["text"][e["start"]:e["end"]] == e["text"]


def test_the_tagger_command_gives_complete_output_and_keeps_exit_codes(trained_model, tmp_path):
    """`tagger` ends with os._exit (fast exit after torch): output must still be complete, statuses kept."""
    import subprocess
    import sys

    lines = [f"Anna Novak visited Veldmark on day {i} ." for i in range(3000)]
    run = lambda *args, **kw: subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)],
                                             capture_output=True, text=True, cwd=Path(__file__).parent.parent, **kw)
    ok = run("predict", trained_model, input="\n".join(lines) + "\n")
    assert ok.returncode == 0
    assert [json.loads(line)["text"] for line in ok.stdout.splitlines()] == lines
    missing = run("predict", tmp_path / "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and missing.stdout == ""
    assert run("predict", "--no-such-option").returncode == 2


def test_convert_keeps_the_document_boundaries(tmp_path):
    src = tmp_path / "docs.txt"
    src.write_text(DOCUMENTS.replace("John NNP B-NP O", "John NNP B-NP B-PER").replace("Smith NNP I-NP O",
                   "Smith NNP I-NP I-PER"), encoding="utf-8")
    assert_ok(tagger("convert", src, tmp_path / "out.txt", "--to", "bioes"))
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == (
        "-DOCSTART- -X- -X- O\n\nJohn NNP B-NP B-PER\nSmith NNP I-NP E-PER\n\nit PRP B-NP O\nrained VBD B-VP O\n\n"
        "-DOCSTART- -X- -X- O\n\nParis NNP B-NP O\n\n")
    two = tmp_path / "two.txt"
    two.write_text("-DOCSTART- O\n\nJohn B-PER\n\n-DOCSTART- O\n\nParis B-LOC\n", encoding="utf-8")
    assert_ok(tagger("convert", two, tmp_path / "two.out", "--to", "bioes"))
    assert (tmp_path / "two.out").read_text(encoding="utf-8") == (
        "-DOCSTART- O\n\nJohn S-PER\n\n-DOCSTART- O\n\nParis S-LOC\n\n")


def test_convert_replaces_the_tag_column_it_is_given_and_keeps_the_others(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("John B-PER NNP\nSmith I-PER NNP\nvisited O VBD\n\n", encoding="utf-8")
    result = tagger("convert", src, tmp_path / "out.txt", "--to", "bioes", "--tag-column", "1")
    assert_ok(result)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "John B-PER NNP\nSmith E-PER NNP\nvisited O VBD\n\n"


# -- predict --scores / --min-score / --n-best, calibrate -------------------------------------------------

FIXED_MODEL = Path(__file__).parent / "fixtures" / "models" / "v1-cnn"  # a kept model: its output is fixed
FIXED_INPUT = ("John Smith visited Vienna and Lisbon with Acme Corp .\n"
               "Mary works for Bosch AG in Tokyo . Anna visited New York .\n\n"
               "Peter Brown works for Initech Corp in New York .\n")
GOLDEN_JSONL = (  # recorded before scores existed: the default output must never change
    '{"text": "John Smith visited Vienna and Lisbon with Acme Corp .", "entities": [{"start": 0, "end": 10, '
    '"label": "PER", "text": "John Smith"}, {"start": 42, "end": 51, "label": "ORG", "text": "Acme Corp"}]}\n'
    '{"text": "Mary works for Bosch AG in Tokyo . Anna visited New York .", "entities": [{"start": 15, "end": 23, '
    '"label": "ORG", "text": "Bosch AG"}, {"start": 27, "end": 32, "label": "LOC", "text": "Tokyo"}, {"start": 35, '
    '"end": 39, "label": "PER", "text": "Anna"}, {"start": 48, "end": 56, "label": "PER", "text": "New York"}]}\n'
    '{"text": "", "entities": []}\n'
    '{"text": "Peter Brown works for Initech Corp in New York .", "entities": [{"start": 0, "end": 11, "label": '
    '"PER", "text": "Peter Brown"}, {"start": 22, "end": 34, "label": "ORG", "text": "Initech Corp"}, {"start": '
    '38, "end": 46, "label": "PER", "text": "New York"}]}\n')
GOLDEN_CONLL = ("John B-PER\nSmith I-PER\nvisited O\nVienna O\nand O\nLisbon O\nwith O\nAcme B-ORG\nCorp I-ORG\n. O\n\n"
                "Mary O\nworks O\nfor O\nBosch B-ORG\nAG I-ORG\nin O\nTokyo B-LOC\n. O\n\n"
                "Anna B-PER\nvisited O\nNew B-PER\nYork I-PER\n. O\n\n"
                "Peter B-PER\nBrown I-PER\nworks O\nfor O\nInitech B-ORG\nCorp I-ORG\nin O\nNew B-PER\nYork I-PER\n. O\n\n")


def test_default_output_is_byte_identical_to_before_scores():
    jsonl_out = tagger("predict", FIXED_MODEL, input=FIXED_INPUT)
    conll_out = tagger("predict", FIXED_MODEL, "--output-format", "conll", input=FIXED_INPUT)
    assert_ok(jsonl_out)
    assert_ok(conll_out)
    assert jsonl_out.stdout == GOLDEN_JSONL
    assert conll_out.stdout == GOLDEN_CONLL


def test_scores_agree_across_the_api_jsonl_and_conll(trained_model):
    from tagger.api import Tagger

    text = "John Smith visited Paris . Angela Merkel works for Siemens AG in Berlin ."
    model = Tagger.load(trained_model)
    records = jsonl(tagger("predict", trained_model, "--scores", input=text + "\n").stdout)
    assert records[0]["entities"] == model.predict(text, scores=True)  # floats survive JSON exactly
    conll = tagger("predict", trained_model, "--scores", "--output-format", "conll", input=text + "\n")
    assert_ok(conll)
    rows = [line.split() for block in conll.stdout.strip().split("\n\n") for line in block.splitlines()]
    plain = tagger("predict", trained_model, "--output-format", "conll", input=text + "\n").stdout
    assert [row[:2] for row in rows] == [line.split() for line in plain.split("\n") if line]  # one more column
    tokens = [s.split() for s in ("John Smith visited Paris .", "Angela Merkel works for Siemens AG in Berlin .")]
    model_tags = model.model_tags(tokens)  # the CoNLL column is the marginal of the model's own tag
    expected = [m[t, model.tags.index(tag)] for tags, m in zip(model_tags, model.marginals(tokens))
                for t, tag in enumerate(tags)]
    assert [row[2] for row in rows] == [f"{p:.4f}" for p in expected]
    # a one-token entity's probability is its tag's marginal: the same number in all three places
    paris = next(e for e in records[0]["entities"] if e["text"] == "Paris")
    assert f"{paris['score']:.4f}" == rows[3][2]


def test_scores_with_tokens_input_add_each_tag_s_marginal(trained_model):
    result = tagger("predict", trained_model, "--input-format", "tokens", "--scores", input="John Smith visited Paris .\n")
    assert_ok(result)
    record = jsonl(result.stdout)[0]
    assert record["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "O"] and len(record["scores"]) == 5
    assert all(0 < p <= 1 for p in record["scores"])


def test_min_score_drops_the_entities_below_it(trained_model):
    text = "John Smith visited Paris .\nAngela Merkel works for Siemens AG in Berlin .\nAnna met Paul Jones in Rome .\n"
    scored = jsonl(tagger("predict", trained_model, "--scores", input=text).stdout)
    scores = sorted(e["score"] for r in scored for e in r["entities"])
    threshold = scores[len(scores) // 2]
    kept = jsonl(tagger("predict", trained_model, "--min-score", threshold, input=text).stdout)
    assert [r["entities"] for r in kept] == [[e for e in r["entities"] if e["score"] >= threshold] for r in scored]
    assert 0 < sum(len(r["entities"]) for r in kept) < len(scores)
    conll = tagger("predict", trained_model, "--min-score", 1.0, "--output-format", "conll", input=text).stdout
    assert {line.split()[1] for line in conll.splitlines() if line} == {"O"}  # no entity is certain


def test_n_best_adds_alternatives_with_exact_probabilities(trained_model):
    text = "John Smith visited Paris .\nAnna met Paul Jones in Rome .\n"
    result = tagger("predict", trained_model, "--n-best", 4, input=text)
    assert_ok(result)
    for record in jsonl(result.stdout):
        alternatives = record["alternatives"]
        assert 1 <= len(alternatives) <= 4
        assert alternatives[0]["entities"] == record["entities"]  # the first is the best path
        assert sum(a["probability"] for a in alternatives) <= 1.0 + 1e-9
        assert "score" not in record["entities"][0]  # --n-best alone adds no scores


def test_scores_reach_the_html_page(trained_model):
    result = tagger("predict", trained_model, "--scores", "--output-format", "html", input="John Smith visited Paris .\n")
    assert_ok(result)
    assert 'title="PER 0.' in result.stdout or 'title="PER 1.00"' in result.stdout


@pytest.mark.parametrize("options, fragments", [
    (["--n-best", "3", "--output-format", "conll"], ["--n-best", "JSONL only", "conll"]),
    (["--n-best", "3", "--output-format", "html"], ["--n-best", "JSONL only", "html"]),
])
def test_nonsense_score_options_are_one_error_line(options, fragments, trained_model):
    assert_user_error(tagger("predict", trained_model, *options, input="John Smith .\n"), *fragments)


@pytest.mark.parametrize("command, options", [
    ("predict", ["--min-score", "1.5"]),
    ("predict", ["--min-score", "-0.1"]),
    ("predict", ["--n-best", "0"]),
    ("predict", ["--n-best", "-2"]),
    ("predict", ["--workers", "-1"]),
    ("predict", ["--batch-size", "0"]),
    ("select", ["--budget", "0", "-o", "-", "-"]),
])
def test_an_option_value_out_of_its_range_is_a_usage_error(command, options, trained_model):
    """Every bad option value exits 2 (wrong usage) with click's message naming the option, as --epochs 0 does."""
    assert_usage_error(tagger(command, trained_model, *options, input="John Smith .\n"), options[0])


def test_calibrate_saves_a_temperature_that_changes_the_scores(model_copy, tmp_path):
    dev = write_corpus(tmp_path / "dev.txt", make_sentences(30, seed=9))
    text = "John Smith visited Paris .\n"
    before = jsonl(tagger("predict", model_copy, "--scores", input=text).stdout)
    result = tagger("calibrate", model_copy, dev)
    assert_ok(result)
    assert "temperature" in result.stdout and "config.json" in result.stdout
    temperature = json.loads((model_copy / "config.json").read_text(encoding="utf-8"))["config"]["temperature"]
    assert temperature != 1.0 and 0.05 <= temperature <= 20.0
    after = jsonl(tagger("predict", model_copy, "--scores", input=text).stdout)  # the model still loads
    assert [{k: v for k, v in e.items() if k != "score"} for e in after[0]["entities"]] == \
        [{k: v for k, v in e.items() if k != "score"} for e in before[0]["entities"]]
    assert [e["score"] for e in after[0]["entities"]] != [e["score"] for e in before[0]["entities"]]


def test_info_shows_the_calibration_temperature(model_copy, tmp_path):
    assert json.loads(tagger("info", model_copy, "--json").stdout)["temperature"] == 1.0
    assert "temperature: 1 (not calibrated" in tagger("info", model_copy).stdout
    assert_ok(tagger("calibrate", model_copy, write_corpus(tmp_path / "dev.txt", make_sentences(30, seed=9))))
    saved = json.loads((model_copy / "config.json").read_text(encoding="utf-8"))["config"]["temperature"]
    assert json.loads(tagger("info", model_copy, "--json").stdout)["temperature"] == saved
    assert f"temperature: {saved:.4f} (fitted by tagger calibrate)" in tagger("info", model_copy).stdout


def test_calibrate_on_a_missing_dev_file_is_one_error_line(trained_model, tmp_path):
    assert_user_error(tagger("calibrate", trained_model, tmp_path / "nope.txt"), "nope.txt", "no such file")


# -- what a new user meets: help, progress, ONNX exports ---------------------------------------------------------

def commands_of_the_cli():
    import typer.main

    group = typer.main.get_command(app)
    return {name: group.get_command(None, name) for name in group.list_commands(None)}


def test_every_option_says_what_it_does_in_help_without_type_noise():
    for name, command in commands_of_the_cli().items():
        for param in command.params:
            # serve's options belong to cli/serve.py, checked with the server
            if param.param_type_name == "option" and param.name != "help" and name != "serve":
                assert param.help, f"tagger {name} {param.opts[0]} has no help"
        shown = tagger(name, "--help")
        assert_ok(shown)
        options = shown.stdout.split("Options:")[1]
        assert "<bool>" not in options, name  # a flag takes no value


def test_piped_help_uses_more_than_80_columns():
    help_lines = tagger("predict", "--help").stdout.splitlines()
    assert max(map(len, help_lines)) > 80
    assert any(line.strip().startswith("--scores") and "probability" in line for line in help_lines)  # one line


def test_the_progress_display_shows_only_on_a_terminal_and_never_when_quiet(monkeypatch):
    from cli.progress import WorkProgress

    assert not WorkProgress("tagged", "lines").shown  # pytest's standard error is no terminal
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then takes standard error for a terminal
    assert WorkProgress("tagged", "lines").shown and not WorkProgress("tagged", "lines", quiet=True).shown
    with WorkProgress("tagged", "lines") as shown:
        shown.advance(3, 30)
        shown.advance(2, 20)
        assert shown.units == 5 and shown.tokens == 50 and shown.progress.tasks[0].completed == 50


def test_predict_says_nothing_on_standard_error_when_piped(trained_model):
    result = tagger("predict", trained_model, input="Anna visited Paris .\n")
    assert_ok(result)
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1


def test_info_describes_an_onnx_export_and_the_others_say_what_it_is(trained_model, tmp_path, corpus):
    pytest.importorskip("onnx")
    export = tmp_path / "export"
    assert_ok(tagger("export", trained_model, export, "--to", "onnx", "-q"))
    result = tagger("info", export, "--json")
    assert_ok(result)
    about = json.loads(result.stdout)
    assert about["export"] == "onnx" and about["labels"] == json.loads(tagger("info", trained_model, "--json").stdout)["labels"]
    assert tagger("info", export).stdout.startswith("export:      ONNX (tagger export)")
    for args in (["calibrate", export, corpus["dev"]],
                 ["train", corpus["train"], "--dev", corpus["dev"], "-o", tmp_path / "m", "--init", export]):
        assert_user_error(tagger(*args), f"{export}: is an ONNX export", "`tagger predict`")


def test_a_port_in_use_exits_3_as_the_help_documents(trained_model):
    import socket
    import subprocess
    import sys

    pytest.importorskip("uvicorn")
    assert "3 `tagger serve` could not start its server (its port in use)" in " ".join(tagger("--help").stdout.split())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "cli.main", "serve", str(trained_model), "--port", str(port),
                               "--workers", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "address already in use" in done.stderr
