"""`tagger vectors`: word vectors trained on raw text, tokenised as `predict` tokenises, that `tagger train
--embeddings` loads. Every corpus is synthetic, written by the test; vectors are tiny (8-16 dimensions)."""
from __future__ import annotations

import gzip
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("gensim", reason="tagger vectors needs gensim (pip install 'bilstm-tagger[vectors]')")

from cli.main import app  # noqa: E402
from conftest import assert_user_error, make_sentences, write_corpus, write_toml  # noqa: E402
from tagger import commands  # noqa: E402
from tagger.api import Tagger  # noqa: E402
from tagger.embeddings import load_vectors  # noqa: E402
from tagger.errors import InputError  # noqa: E402
from tagger.vectors import VectorOptions, train_vectors  # noqa: E402

runner = CliRunner()

CITIES = ["Paris", "Berlin", "Rome", "Madrid", "Vienna"]
VERBS = ["hired", "fired", "praised", "thanked", "called"]
NAMES = ["Mary", "John", "Anna", "Peter", "Paul"]


def paragraph(rng: random.Random) -> str:
    """A line of raw text, as users have it: several sentences, contractions, possessives, dotted acronyms.
    Cities only ever follow "in"/"to" and verbs only follow a name, so their contexts tell them apart."""
    sentences = []
    for _ in range(rng.randint(1, 4)):
        city, verb, name, other = rng.choice(CITIES), rng.choice(VERBS), rng.choice(NAMES), rng.choice(NAMES)
        sentences.append(rng.choice([
            f"{name} {verb} {other} in {city} on Monday.",
            f"The U.S. company moved to {city} last year.",
            f"{name} didn't travel to {city}'s old town.",
            f"{name} {verb} the staff of the bank in {city}.",
        ]))
    return " ".join(sentences)


def write_raw(path: Path, lines: int, seed: int = 0, gz: bool = False) -> Path:
    """`lines` paragraphs, one a line, with a blank line every 5 (between "articles")."""
    rng = random.Random(seed)
    text = "".join(paragraph(rng) + ("\n\n" if i % 5 == 4 else "\n") for i in range(lines))
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def tagger(*args):
    return runner.invoke(app, [str(a) for a in args])


def vectors_cli(*args: Path | str, output: Path):
    """`tagger vectors ARGS...` (inputs, then any other option) with small, reproducible settings (one
    worker)."""
    return tagger("vectors", "--output", output, "--dim", "8", "--min-count", "1", "--epochs", "2",
                  "--workers", "1", "--quiet", *args)  # an option given again in ARGS wins


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return write_raw(tmp_path / "raw.txt.gz", 300, gz=True)


# -- what is written ----------------------------------------------------------------------------------------

def test_vectors_of_gzipped_text_are_a_gzipped_word2vec_file_that_embeddings_load(raw, tmp_path):
    out = tmp_path / "vec.txt.gz"
    result = vectors_cli(raw, output=out)
    assert result.exit_code == 0, (result.stderr, result.exception)
    data = gzip.decompress(out.read_bytes()).decode("utf-8")
    count, dim = map(int, data.split("\n", 1)[0].split())
    words, matrix = load_vectors(out, expected_dim=8)
    assert (count, dim) == (len(words), 8) and matrix.shape == (len(words), 8)
    assert np.isfinite(matrix).all() and np.abs(matrix).sum(axis=1).min() > 0


def test_words_are_the_tokens_predict_sees_lower_cased(raw, tmp_path):
    out = tmp_path / "vec.txt"
    assert vectors_cli(raw, output=out).exit_code == 0
    words = set(load_vectors(out)[0])
    # the tokeniser splits `didn't` and `Rome's` and keeps `U.S.` whole, as it does in `tagger predict`
    assert {"did", "n't", "'s", "u.s.", "paris", "."} <= words
    assert not {"didn't", "u.s", "monday.", "Paris", "The"} & words
    assert out.read_bytes()[:2] != b"\x1f\x8b"  # no .gz suffix: plain text


def test_keep_case_keeps_the_words_as_written(raw, tmp_path):
    out = tmp_path / "vec.txt"
    assert vectors_cli(raw, "--keep-case", output=out).exit_code == 0
    words = set(load_vectors(out)[0])
    assert {"Paris", "The", "U.S.", "the"} <= words and "paris" not in words


def test_several_inputs_plain_and_gzipped_are_read_together(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("Zurich zurich Zurich is far .\n" * 3, encoding="utf-8")
    gz = write_raw(tmp_path / "b.txt.gz", 50, gz=True)
    out = tmp_path / "vec.txt"
    assert vectors_cli(plain, gz, output=out).exit_code == 0
    assert {"zurich", "paris"} <= set(load_vectors(out)[0])


def test_min_count_drops_rare_words(tmp_path):
    text = tmp_path / "raw.txt"
    text.write_text("common words here .\n" * 5 + "rare once .\n", encoding="utf-8")
    out = tmp_path / "vec.txt"
    assert vectors_cli(text, "--min-count", "3", output=out).exit_code == 0
    assert set(load_vectors(out)[0]) == {"common", "words", "here", "."}


def test_words_in_the_same_contexts_get_closer_vectors(tmp_path):
    """What the vectors are for: cities (after "in"/"to") end nearer each other than a verb."""
    raw = write_raw(tmp_path / "raw.txt", 1500)
    out = tmp_path / "vec.txt"
    train_vectors([raw], out, VectorOptions(dim=16, min_count=1, epochs=5, workers=1, seed=2))
    words, matrix = load_vectors(out)
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    vec = dict(zip(words, unit))
    for city in ("paris", "berlin"):
        others = [vec[c.lower()] @ vec[city] for c in CITIES if c.lower() != city]
        verbs = [vec[v] @ vec[city] for v in VERBS]
        assert min(others) > max(verbs), (city, others, verbs)


def test_the_same_seed_with_one_worker_writes_the_same_file(raw, tmp_path):
    first, again, other = tmp_path / "1.txt.gz", tmp_path / "2.txt.gz", tmp_path / "3.txt.gz"
    assert vectors_cli(raw, "--seed", "7", output=first).exit_code == 0
    assert vectors_cli(raw, "--seed", "7", output=again).exit_code == 0
    assert vectors_cli(raw, "--seed", "8", output=other).exit_code == 0
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_subword_vectors_are_written_in_the_same_format(raw, tmp_path):
    out = tmp_path / "vec.txt.gz"
    result = vectors_cli(raw, "--subword", output=out)
    assert result.exit_code == 0, (result.stderr, result.exception)
    words, matrix = load_vectors(out)
    assert "paris" in words and matrix.shape == (len(words), 8)


def test_chars_tokenizer_gives_one_vector_per_character(tmp_path):
    text = tmp_path / "zh.txt"
    text.write_text("我们在北京工作。\n他们在上海工作。\n" * 20, encoding="utf-8")
    out = tmp_path / "vec.txt"
    assert vectors_cli(text, "--tokenizer", "chars", output=out).exit_code == 0
    assert set(load_vectors(out)[0]) == set("我们在北京工作。他上海")


def test_a_summary_line_unless_quiet(raw, tmp_path):
    result = tagger("vectors", raw, "--output", tmp_path / "vec.txt", "--dim", "8", "--min-count", "1",
                    "--epochs", "1", "--workers", "1")
    assert result.exit_code == 0
    assert "words/s" in result.stderr and "dimensions" in result.stderr and result.stdout == ""
    quiet = vectors_cli(raw, output=tmp_path / "quiet.txt")
    assert quiet.stderr == "" and quiet.stdout == ""


# -- the vectors in a model -------------------------------------------------------------------------------------

def test_train_with_the_vectors_as_embeddings(tmp_path):
    """The tagger's training words ("Paris", "Berlin", ...) find the lower-cased vectors."""
    sentences = make_sentences(60, seed=3)
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join(" ".join(tokens) for tokens, _ in sentences) + "\n", encoding="utf-8")
    vec = tmp_path / "vec.txt.gz"
    train_vectors([raw], vec, VectorOptions(dim=12, min_count=1, epochs=2, workers=1))
    train, dev = write_corpus(tmp_path / "train.txt", sentences[:45]), write_corpus(tmp_path / "dev.txt", sentences[45:])
    model = tmp_path / "model"
    commands.train(str(train), str(dev), model, embeddings=vec, config_file=write_toml(tmp_path / "c.toml", epochs=1))
    tagger_ = Tagger.load(model)
    assert tagger_.info()["embeddings"] == "vec.txt.gz"
    words, _ = load_vectors(vec)
    vocab = tagger_.vocab
    assert all(vocab.word_id(w) != 1 for w in ("Paris", "Berlin", "visited", "AG"))  # 1: <unk>
    assert all(vocab.word_id(w) != 1 for w in words)


# -- mistakes: one line each, nothing written -------------------------------------------------------------------

def test_a_missing_input_is_one_line(tmp_path):
    assert_user_error(vectors_cli(tmp_path / "nope.txt", output=tmp_path / "vec.txt"), "nope.txt", "no such file")
    assert_user_error(vectors_cli(tmp_path, output=tmp_path / "vec.txt"), "is a directory")
    assert not (tmp_path / "vec.txt").exists()


def test_a_binary_input_is_one_line(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01\x02garbage\x00" * 100)
    assert_user_error(vectors_cli(binary, output=tmp_path / "vec.txt"), "model.bin", "binary")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Zürich ist schön\n".encode("latin-1"))
    assert_user_error(vectors_cli(latin1, output=tmp_path / "vec.txt"), "latin1.txt:1", "UTF-8")
    broken = tmp_path / "broken.txt.gz"
    broken.write_bytes(gzip.compress(b"some text\n" * 1000)[:60])
    assert_user_error(vectors_cli(broken, output=tmp_path / "vec.txt"), "broken.txt.gz", "cannot read")
    assert not (tmp_path / "vec.txt").exists()


def test_an_empty_corpus_is_one_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n", encoding="utf-8")
    assert_user_error(vectors_cli(empty, output=tmp_path / "vec.txt"), "empty.txt", "no text found")
    short = tmp_path / "short.txt"
    short.write_text("only a few words .\n", encoding="utf-8")
    assert_user_error(vectors_cli(short, "--min-count", "2", output=tmp_path / "vec.txt"), "short.txt",
                      "--min-count")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "short.txt"]  # no temporary file left


def test_an_existing_output_needs_force(raw, tmp_path):
    out = tmp_path / "vec.txt"
    out.write_text("keep me", encoding="utf-8")
    assert_user_error(vectors_cli(raw, output=out), "vec.txt", "--force")
    assert out.read_text(encoding="utf-8") == "keep me"
    assert vectors_cli(raw, "--force", output=out).exit_code == 0
    assert "paris" in load_vectors(out)[0]


def test_bad_options_are_one_line(raw, tmp_path):
    assert_user_error(vectors_cli(raw, "--tokenizer", "bytes", output=tmp_path / "v.txt"), "tokenizer")
    with pytest.raises(InputError, match="no input files"):
        train_vectors([], tmp_path / "v.txt")


def test_without_gensim_the_error_names_the_extra(raw, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gensim", None)  # `import gensim` now raises ImportError
    assert_user_error(vectors_cli(raw, output=tmp_path / "v.txt"), "pip install 'bilstm-tagger[vectors]'")


def test_the_vectors_stack_with_other_vectors_on_the_train_command(tmp_path):
    """`tagger train --embeddings glove --embeddings ours`: each word's vectors concatenated."""
    sentences = make_sentences(50, seed=4)
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join(" ".join(tokens) for tokens, _ in sentences) + "\n", encoding="utf-8")
    ours = tmp_path / "ours.txt.gz"
    assert vectors_cli(raw, "--dim", "6", output=ours).exit_code == 0
    glove = tmp_path / "glove.txt"
    glove.write_text("paris 1 2 3 4\nberlin 4 3 2 1\n", encoding="utf-8")
    train, dev = write_corpus(tmp_path / "train.txt", sentences[:40]), write_corpus(tmp_path / "dev.txt", sentences[40:])
    result = tagger("train", train, "--dev", dev, "--output", tmp_path / "m", "--config", write_toml(tmp_path / "c.toml"),
                    "--embeddings", glove, "--embeddings", ours, "--quiet")
    assert result.exit_code == 0, (result.stderr, result.exception)
    model = Tagger.load(tmp_path / "m")
    assert model.config.word_dim == 4 + 6 and model.info()["embeddings"] == "glove.txt + ours.txt.gz"


def test_a_conll_file_is_refused_not_learnt_with_its_tags(tmp_path):
    conll = write_corpus(tmp_path / "pool.conll", make_sentences(20, seed=1))
    assert_user_error(vectors_cli(conll, output=tmp_path / "v.txt"), f"{conll}: looks like a CoNLL file",
                      "not raw text")
    assert not (tmp_path / "v.txt").exists()
