"""ONNX export: `tagger export MODEL --to onnx DIR` gives graphs whose tags are exactly the numpy engine's.

onnxruntime on the exported graph is compared with the numpy engine (tagger/tagging/engine.py) on the bundled
samples, a CoNLL-2003-sized file, mixed lengths in one padded batch, one-token sentences, a Chinese character
model with bigrams and a lexicon, and models with every other encoder (character BiLSTM, feature columns, two
layers, frozen pretrained rows, LAC's context encoder) with random weights. Tags must be equal; emissions and
best path scores agree to 1e-4.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from cli.main import app  # noqa: E402
from conftest import make_sentences, train_tiny  # noqa: E402
from corpora import schemes  # noqa: E402
from corpora.conll import read_conll  # noqa: E402
from tagger import lac  # noqa: E402
from tagger import tensors as spec  # noqa: E402
from tagger.api import Tagger  # noqa: E402
from tagger.config import Config  # noqa: E402
from tagger.encode import collate  # noqa: E402
from tagger.errors import ModelError  # noqa: E402
from tagger.export import LOOKUP_FILE, MODEL_FILE, PREPROCESS_FILE, export_onnx  # noqa: E402
from tagger.export import preprocess  # noqa: E402
from tagger.export.runtime import OnnxTagger, feeds, is_export  # noqa: E402
from tagger.lexicon import Lexicon  # noqa: E402
from tagger.vocab import Index, build_vocab  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
DATA = Path(os.environ.get("TAGGER_DATA", ROOT.parent / "shared" / "data"))
TOLERANCE = 1e-4
NODE_EXAMPLE = ROOT / "examples" / "onnx-node"
runner = CliRunner()


def exported(model: Path, out: Path) -> tuple[Tagger, OnnxTagger]:
    """The model and its export, through `tagger export` as a user runs it."""
    result = runner.invoke(app, ["export", str(model), "--to", "onnx", str(out)])
    assert result.exit_code == 0, f"{result.stderr}\n{result.exception!r}"
    assert json.loads(result.stdout)["checked"] > 0  # the test vectors were compared before it said yes
    return Tagger.load(model), OnnxTagger.load(out)


def assert_same(reference: Tagger, onnx_tagger: OnnxTagger, sentences, features=(), batch_size: int = 64) -> None:
    """Equal tags, emissions within TOLERANCE, batch by batch in input order (mixed lengths in each batch)."""
    for k in range(0, len(sentences), batch_size):
        chunk = sentences[k : k + batch_size]
        feats = features[k : k + batch_size] if features else [()] * len(chunk)
        batch = collate([reference.encode(s, features=f) for s, f in zip(chunk, feats)])
        got = onnx_tagger.engine.run(batch)
        assert onnx_tagger.engine.tag(batch) == reference.engine.tag(batch)
        expected = reference.engine.emissions(batch)
        difference = np.abs(got["emissions"] - expected)[batch.mask]
        assert difference.max() < TOLERANCE
    assert onnx_tagger.predict_tokens(sentences, features) == reference.predict_tokens(sentences, features)


@pytest.fixture(scope="module")
def english(trained_model, tmp_path_factory) -> tuple[Tagger, OnnxTagger, Path]:
    out = tmp_path_factory.mktemp("onnx-en") / "export"
    return (*exported(trained_model, out), out)


@pytest.fixture(scope="module")
def samples_model(tmp_path_factory) -> Path:
    """A tiny model trained on the bundled English sample (one epoch: its weights only need to be trained)."""
    root = tmp_path_factory.mktemp("onnx-samples")
    return train_tiny(root / "model", SAMPLES / "en" / "train.txt", SAMPLES / "en" / "dev.txt", epochs=1)


@pytest.fixture(scope="module")
def chinese(tmp_path_factory) -> tuple[Tagger, OnnxTagger, Path]:
    """A character model with bigrams and a lexicon, trained on the bundled Chinese sample, and its export."""
    from test_chinese import synthetic_lexicon
    from tagger import commands

    root = tmp_path_factory.mktemp("onnx-zh")
    config = root / "tiny.toml"
    config.write_text("hidden_size = 16\nbigram_dim = 10\nword_dim = 16\nepochs = 1\nbatch_size = 16\n")
    commands.train(str(SAMPLES / "zh" / "train.txt"), str(SAMPLES / "zh" / "dev.txt"), root / "model",
                   config_file=config, lexicon=str(synthetic_lexicon(root / "words.txt")))
    return (*exported(root / "model", root / "export"), root / "export")


# -- the network and Viterbi ------------------------------------------------------------------------------

def test_export_writes_the_graphs_and_a_preprocessing_spec(english):
    _, _, out = english
    assert sorted(p.name for p in out.iterdir()) == sorted([MODEL_FILE, LOOKUP_FILE, PREPROCESS_FILE])
    model = ort.InferenceSession(str(out / MODEL_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in model.get_inputs()] == ["word_ids", "casing", "chars", "lengths"]
    assert [o.name for o in model.get_outputs()] == ["tags", "emissions", "score"]
    written = json.loads((out / PREPROCESS_FILE).read_text(encoding="utf-8"))
    assert list(written["model_inputs"]) == [i.name for i in model.get_inputs()]  # the spec names every input


def test_onnx_tags_the_bundled_samples_as_the_numpy_engine(samples_model, tmp_path):
    reference, onnx_tagger = exported(samples_model, tmp_path / "export")
    sentences = [list(s.tokens) for s in read_conll(SAMPLES / "en" / "test.txt")]
    assert len(sentences) > 300
    assert_same(reference, onnx_tagger, sentences)
    test = str(SAMPLES / "en" / "test.txt")
    got = runner.invoke(app, ["evaluate", str(tmp_path / "export"), test, "--json"])  # the CLI compares them too
    assert got.exit_code == 0, got.stderr
    assert got.stdout == runner.invoke(app, ["evaluate", str(samples_model), test, "--json"]).stdout
    assert json.loads(got.stdout)["f1"] > 0.5


def test_padding_never_changes_a_tag_in_a_batch_of_mixed_lengths(english):
    reference, onnx_tagger, _ = english
    rng = np.random.default_rng(0)
    words = [w for s, _ in make_sentences(40, seed=5) for w in s]
    sentences = [list(rng.choice(words, n)) for n in (1, 17, 3, 40, 2, 9, 1, 25)]
    together = collate([reference.encode(s) for s in sentences])
    alone = [onnx_tagger.engine.run(collate([reference.encode(s)])) for s in sentences]
    got = onnx_tagger.engine.run(together)
    assert onnx_tagger.engine.tag(together) == [a["tags"][0].tolist() for a in alone] == reference.engine.tag(together)
    for b, (s, a) in enumerate(zip(sentences, alone)):
        assert np.abs(got["emissions"][b, : len(s)] - a["emissions"][0]).max() < TOLERANCE
        assert got["score"][b] == pytest.approx(a["score"][0], abs=TOLERANCE)
        assert (got["tags"][b, len(s):] == -1).all()  # padding is marked, not tagged


def test_one_token_sentences(english):
    reference, onnx_tagger, _ = english
    sentences = [["Paris"], ["."], ["Zzyzx"], ["John"], ["AG"]]
    assert_same(reference, onnx_tagger, sentences)
    assert_same(reference, onnx_tagger, sentences[:1])  # one sentence of one token: one step of each loop


def test_best_path_score_is_the_crf_score_of_the_tags(english):
    reference, onnx_tagger, _ = english
    sentences = [s for s, _ in make_sentences(12, seed=9)]
    batch = collate([reference.encode(s) for s in sentences])
    got = onnx_tagger.engine.run(batch)
    emissions = reference.engine.emissions(batch)
    for b, path in enumerate(reference.engine.tag(batch)):
        expected = preprocess.path_score(emissions[b], path, reference.engine.crf)
        assert got["score"][b] == pytest.approx(expected, abs=TOLERANCE)


def test_a_chinese_character_model_with_bigrams_and_a_lexicon(chinese):
    reference, onnx_tagger, out = chinese
    assert reference.config.bigrams == "on" and reference.config.lexicon
    inputs = [i.name for i in ort.InferenceSession(str(out / MODEL_FILE)).get_inputs()]
    assert inputs == ["word_ids", "casing", "bigram_ids", "lexicon", "lengths"]
    sentences = [list(s.tokens) for s in read_conll(SAMPLES / "zh" / "test.txt")]
    assert_same(reference, onnx_tagger, sentences)
    texts = ["王小明在北京大学工作。", "  张伟：去上海银行，😀 then Apple 2024年！\t李娜"]
    assert list(onnx_tagger.predict(texts)) == list(reference.predict(texts))


def test_a_conll2003_sized_file(english):
    path = DATA / "conll2003" / "test.txt"
    if not path.is_file():
        pytest.skip(f"no CoNLL-2003 test set at {path} (set TAGGER_DATA)")
    reference, onnx_tagger, _ = english
    sentences = [list(s.tokens) for s in read_conll(path) if s.tokens]
    assert len(sentences) > 3000
    assert_same(reference, onnx_tagger, sentences, batch_size=256)


# -- every other encoder, with random weights ----------------------------------------------------------------

def random_model(path: Path, seed: int = 0, frozen: int = 0, sentences=None, lac_model=None, **settings) -> Path:
    """A model directory with random weights (the CRF's forbidden moves set) for a config of `settings`,
    its vocabulary built from `sentences` (default: make_sentences); `frozen` pretrained-only words; feature
    columns 1 and 2 get made-up values; context "lac" gets LAC's characters and tensors `lac_model` (from
    lac.from_jieba), else a random encoder over the corpus's characters."""
    sentences = sentences or make_sentences(30, seed=seed)
    config = Config(hidden_size=8, char_filters=6, char_dim=5, word_dim=7, casing_dim=3, feature_dim=4,
                    bigram_dim=6, **settings).resolved()
    columns = [[[w[:1].lower() for w in s] for s, _ in sentences], [[str(len(w) % 3) for w in s] for s, _ in sentences]]
    pretrained = [f"pre{i}" for i in range(frozen)] + ["john", "paris"]
    vocab = build_vocab([s for s, _ in sentences], [t for _, t in sentences], columns[: len(config.features)],
                        pretrained=pretrained, with_bigrams=config.bigrams == "on",
                        lexicon=Lexicon({"NewYork": 3.0, "SiemensAG": 2.0, "Paris": 1.0}) if config.lexicon else None)
    if config.context == "lac":
        chars = lac_model[0] if lac_model else sorted({c for s, _ in sentences for w in s for c in w}) + [lac.OOV]
        vocab.context = Index(chars, specials=False)
    sizes = spec.Sizes(len(vocab.words), len(vocab.frozen), len(vocab.chars), len(vocab.tags),
                       tuple(len(f) for f in vocab.features), len(vocab.bigrams) if vocab.bigrams else 0,
                       len(vocab.context) if vocab.context else 0)
    rng = np.random.default_rng(seed)
    tensors = {name: (rng.normal(size=shape) * 0.5).astype(np.float16 if name in spec.HALF else np.float32)
               for name, shape in spec.shapes(config, sizes).items()}
    for name in tensors:  # LAC's GRUs at 0.5 would be chaotic: float32 rounding would grow along a sentence
        if name.startswith("context.") and name != "context.embedding":
            tensors[name] *= 0.1
    if lac_model:
        tensors |= {k: v.astype(np.float16 if k in spec.HALF else np.float32) for k, v in lac_model[1].items()}
    forbidden = rng.random(tensors["crf.transitions"].shape) < 0.3
    tensors["crf.transitions"][forbidden] = spec.FORBIDDEN
    Tagger(config, vocab, tensors).save(path)
    return path


def random_sentences(reference: Tagger, n: int, seed: int) -> list[list[str]]:
    """Sentences of known, upper-cased, unknown and pretrained-only words, 1 to 30 tokens long."""
    rng = np.random.default_rng(seed)
    words = [*reference.vocab.words.items[2:], *reference.vocab.frozen.items[:5], "UNSEEN", "Ωmega", "x9", "--"]
    return [[str(w).upper() if rng.random() < 0.1 else str(w) for w in rng.choice(words, rng.integers(1, 31))]
            for _ in range(n)]


ENCODERS = {
    "char BiLSTM, 2 layers, frozen rows": dict(char_encoder="lstm", num_layers=2, frozen=50),
    "feature columns, no characters": dict(features=[1, 2], char_encoder="none"),
    "char CNN of kernel 4, bigrams, lexicon": dict(char_kernel=4, bigrams="on", lexicon=True),
    "LAC context": dict(context="lac", tokenizer="words"),
    "lowercase off": dict(lowercase_lookup=False),
}


@pytest.mark.parametrize("name", ENCODERS)
def test_every_encoder_exports_exactly(name, tmp_path):
    settings = dict(ENCODERS[name])
    frozen = settings.pop("frozen", 0)
    model = random_model(tmp_path / "model", seed=len(name), frozen=frozen, **settings)
    reference, onnx_tagger = exported(model, tmp_path / "export")
    sentences = random_sentences(reference, 50, seed=1)
    features = ([[[w[:1].lower() for w in s], [str(len(w) % 3) for w in s]] for s in sentences]
                if reference.config.features else ())
    assert_same(reference, onnx_tagger, sentences, features, batch_size=16)
    for vector in json.loads((tmp_path / "export" / PREPROCESS_FILE).read_text(encoding="utf-8"))["test_vectors"]:
        ids = lookup(tmp_path / "export", vector)
        assert ids == {k: vector[k] for k in ("word_ids", "bigram_ids", "context_ids", "feature_ids") if k in vector}
    if node_example_installed():
        assert_node_reproduces_the_test_vectors(tmp_path / "export")


def test_lac_context_with_jiebas_trained_weights(tmp_path):
    pytest.importorskip("jieba", reason="jieba ships LAC's weights (pip install jieba)")
    chinese = [(list(s.tokens), list(s.tags)) for s in read_conll(SAMPLES / "zh" / "train.txt")][:200]
    model = random_model(tmp_path / "model", sentences=chinese, lac_model=lac.from_jieba(), context="lac",
                         tokenizer="chars")
    reference, onnx_tagger = exported(model, tmp_path / "export")
    sentences = [list(s.tokens) for s in read_conll(SAMPLES / "zh" / "test.txt")][:120]
    assert_same(reference, onnx_tagger, sentences)
    if node_example_installed():
        assert_node_reproduces_the_test_vectors(tmp_path / "export")


# -- the preprocessing spec: lookup.onnx and the test vectors -----------------------------------------------

def lookup(out: Path, vector: dict) -> dict[str, list]:
    """lookup.onnx's ids for one test vector's strings."""
    session = ort.InferenceSession(str(out / LOOKUP_FILE), providers=["CPUExecutionProvider"])
    given = {"tokens": [vector["tokens"]], "lowered": [vector["lowered"]], "lengths": [len(vector["tokens"])],
             "context_tokens": [vector.get("context_tokens")], "features": [vector.get("features")]}
    names = {i.name for i in session.get_inputs()}
    arrays = {k: np.array(v, dtype=np.int64 if k == "lengths" else object) for k, v in given.items() if k in names}
    return {o.name: value[0].tolist() for o, value in zip(session.get_outputs(), session.run(None, arrays))}


@pytest.mark.parametrize("which", ["english", "chinese"])
def test_lookup_onnx_turns_the_test_vectors_tokens_into_their_ids(which, request):
    _, _, out = request.getfixturevalue(which)
    vectors = json.loads((out / PREPROCESS_FILE).read_text(encoding="utf-8"))["test_vectors"]
    for vector in vectors:
        ids = lookup(out, vector)
        assert ids["word_ids"] == vector["word_ids"]
        if "bigram_ids" in vector:
            assert ids["bigram_ids"] == vector["bigram_ids"]


def test_the_test_vectors_exercise_every_rule(english, chinese):
    en = json.loads((english[2] / PREPROCESS_FILE).read_text(encoding="utf-8"))
    words = [w for v in en["test_vectors"] for w in v["word_ids"]]
    assert 1 in words and len(set(words)) > 10  # unknown words and many known ones
    lowered_only = [t for v in en["test_vectors"] for t, low in zip(v["tokens"], v["lowered"])
                    if t != low and t not in en["vocab"]["words"] and low in en["vocab"]["words"]]
    assert lowered_only  # words found only lower-cased
    assert {c for v in en["test_vectors"] for c in v["casing"]} == set(range(1, 9))  # every shape class
    assert any(1 in chars for v in en["test_vectors"] for chars in v["chars"])  # an unknown character
    assert min(len(v["tokens"]) for v in en["test_vectors"]) == 1
    zh = json.loads((chinese[2] / PREPROCESS_FILE).read_text(encoding="utf-8"))
    assert zh["tokenizer"] == "chars" and zh["lexicon"]["words"]
    assert any(any(row[:12]) for v in zh["test_vectors"] for row in v["lexicon"])  # lexicon matches
    assert any(1 in v["bigram_ids"] for v in zh["test_vectors"])  # an unseen bigram


def test_the_test_vectors_ids_are_what_the_graph_reads(english):
    """Feeding the vectors' ids to model.onnx directly (as a port would) gives their tags and scores."""
    _, onnx_tagger, out = english
    session = ort.InferenceSession(str(out / MODEL_FILE), providers=["CPUExecutionProvider"])
    for vector in json.loads((out / PREPROCESS_FILE).read_text(encoding="utf-8"))["test_vectors"]:
        longest = max(map(len, vector["chars"]))
        chars = np.array([[c + [0] * (longest - len(c)) for c in vector["chars"]]], dtype=np.int64)
        tags, _, score = session.run(None, {"word_ids": np.array([vector["word_ids"]]),
                                            "casing": np.array([vector["casing"]]), "chars": chars,
                                            "lengths": np.array([len(vector["tokens"])])})
        assert tags[0].tolist() == vector["tag_ids"]
        assert score[0] == pytest.approx(vector["score"], abs=TOLERANCE)


# -- another language: the Node.js example -----------------------------------------------------------------

def node_example_installed() -> bool:
    return shutil.which("node") is not None and (NODE_EXAMPLE / "node_modules" / "onnxruntime-node").is_dir()


def assert_node_reproduces_the_test_vectors(out: Path) -> None:
    done = subprocess.run(["node", "tag.mjs", str(out), "--check"], cwd=NODE_EXAMPLE, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["reproduced"] >= 4


def test_the_node_example_reproduces_the_test_vectors(english, chinese):
    """examples/onnx-node/tag.mjs does the caller's steps in JavaScript (casing, characters, lexicon cells),
    runs lookup.onnx and model.onnx with onnxruntime-node, and must give every test vector's ids and tags."""
    if not node_example_installed():
        pytest.skip(f"Node.js or onnxruntime-node missing: run `npm install` in {NODE_EXAMPLE} (.ci/run does)")
    for out in (english[2], chinese[2]):
        assert_node_reproduces_the_test_vectors(out)
    reference = english[0]
    sentences = [list(s.tokens) for s in read_conll(SAMPLES / "en" / "test.txt")][:300]
    done = subprocess.run(["node", "tag.mjs", str(english[2])], input="".join(" ".join(s) + "\n" for s in sentences),
                          cwd=NODE_EXAMPLE, capture_output=True, text=True, timeout=300)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["tokens"] for r in records] == sentences
    assert [r["tags"] for r in records] == reference.model_tags(sentences)
    assert [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in records] == \
        [schemes.tag_spans(r["tags"], reference.scheme) for r in records]
    assert sum(len(r["entities"]) for r in records) > 50


# -- the CLI ------------------------------------------------------------------------------------------------

def test_predict_on_an_export_directory_writes_what_the_model_directory_does(trained_model, english, tmp_path):
    _, _, out = english
    text = tmp_path / "in.txt"
    text.write_text("John Smith visited Paris .\nMary works for Siemens AG in Berlin .\n\nit rained all day .\n",
                    encoding="utf-8")
    for options in ([], ["--input-format", "tokens"], ["--scores"], ["--n-best", "2"], ["--workers", "2"]):
        got = runner.invoke(app, ["predict", str(out), str(text), *options])
        expected = runner.invoke(app, ["predict", str(trained_model), str(text), *options])
        assert got.exit_code == 0, got.stderr
        records = [json.loads(line) for line in got.stdout.splitlines()]
        wanted = [json.loads(line) for line in expected.stdout.splitlines()]
        assert len(records) == len(wanted) == 4
        for a, b in zip(records, wanted):  # probabilities from float32 emissions of two engines
            assert json.dumps(a, sort_keys=True)[:40] == json.dumps(b, sort_keys=True)[:40]
            assert _entities(a) == _entities(b)


def test_predict_conll_with_feature_columns_on_an_export(tmp_path):
    model = random_model(tmp_path / "model", features=[1, 2])
    assert runner.invoke(app, ["export", str(model), "--to", "onnx", str(tmp_path / "export"), "-q"]).exit_code == 0
    conll = tmp_path / "in.conll"
    conll.write_text("".join(f"{w} {w[:1].lower()} {len(w) % 3} O\n" for w in ["John", "visited", "Paris", "."])
                     + "\n" + "".join(f"{w} {w[:1].lower()} 9 O\n" for w in ["Siemens", "AG"]), encoding="utf-8")
    got = runner.invoke(app, ["predict", str(tmp_path / "export"), str(conll), "--input-format", "conll"])
    expected = runner.invoke(app, ["predict", str(model), str(conll), "--input-format", "conll"])
    assert got.exit_code == 0, got.stderr
    assert got.stdout == expected.stdout and got.stdout.count(" O ") == 6  # every token tagged


def _entities(record: dict) -> list:
    return [(e["start"], e["end"], e["label"], round(e.get("score", 0), 4)) for e in record.get("entities", [])] \
        or record.get("tags", [])


def test_export_refuses_a_non_empty_directory_without_force(english, trained_model, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine", encoding="utf-8")
    result = runner.invoke(app, ["export", str(trained_model), "--to", "onnx", str(target)])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["export", str(trained_model), "--to", "onnx", str(target), "--force", "--quiet"])
    assert result.exit_code == 0 and result.stdout == ""
    assert (target / MODEL_FILE).is_file() and (target / "notes.txt").is_file()


def test_export_of_a_missing_model_and_an_unknown_format_are_one_line_errors(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path / "nothing"), "--to", "onnx", str(tmp_path / "out")])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "nothing" in result.stderr
    result = runner.invoke(app, ["export", str(tmp_path), "--to", "tflite", str(tmp_path / "out")])
    assert result.exit_code == 2


def test_a_graph_that_disagrees_with_the_numpy_engine_is_removed_and_refused(trained_model, tmp_path, monkeypatch):
    real = preprocess.test_vectors

    def wrong(tagger, sentences):  # as if the graph's tags differed from the engine's on the first vector
        vectors = real(tagger, sentences)
        vectors[0]["tag_ids"] = [(i + 1) % len(tagger.vocab.tags) for i in vectors[0]["tag_ids"]]
        return vectors

    monkeypatch.setattr(preprocess, "test_vectors", wrong)
    with pytest.raises(ModelError, match="disagrees with the numpy engine on test vector 1"):
        export_onnx(trained_model, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_damaged_spec_is_a_one_line_error(english, tmp_path):
    target = tmp_path / "export"
    shutil.copytree(english[2], target)
    (target / PREPROCESS_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="preprocess.json"):
        OnnxTagger.load(target)
    (target / PREPROCESS_FILE).write_text(json.dumps({"format": "bilstm-tagger-onnx", "version": 99}),
                                          encoding="utf-8")
    result = runner.invoke(app, ["predict", str(target), "-"], input="John visited Paris .\n")
    assert result.exit_code == 1 and "version 99" in result.stderr


@pytest.mark.parametrize("into", ["itself", "another model"])
def test_an_export_into_a_model_directory_is_refused_even_with_force(trained_model, model_copy, into):
    source = model_copy if into == "itself" else trained_model  # m2 into m1's copy: predict would tag with m1
    before = sorted(p.name for p in model_copy.iterdir())
    result = runner.invoke(app, ["export", str(source), "--to", "onnx", str(model_copy), "--force"])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {model_copy}: holds a model directory")
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in model_copy.iterdir()) == before and not is_export(model_copy)


def altered(export: Path, target: Path) -> Path:
    """A copy of the export whose model.onnx is still a valid graph, with noise on its largest weights."""
    import onnx

    shutil.copytree(export, target)
    graph = onnx.load(str(target / MODEL_FILE))
    largest = max(graph.graph.initializer, key=lambda t: np.prod(t.dims) if t.data_type == 1 else 0)
    weights = onnx.numpy_helper.to_array(largest)
    noise = np.random.default_rng(0).normal(0, 0.5, weights.shape).astype(weights.dtype)
    largest.CopyFrom(onnx.numpy_helper.from_array(weights + noise, largest.name))
    onnx.checker.check_model(graph)
    onnx.save(graph, str(target / MODEL_FILE))
    return target


def test_an_altered_but_valid_graph_is_refused_naming_the_file(english, tmp_path):
    target = altered(english[2], tmp_path / "altered")
    with pytest.raises(ModelError, match=f"{MODEL_FILE}: checksum does not match preprocess.json"):
        OnnxTagger.load(target)
    result = runner.invoke(app, ["predict", str(target), "-"], input="John visited Paris .\n")
    assert result.exit_code == 1 and str(target / MODEL_FILE) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", [MODEL_FILE, LOOKUP_FILE])
def test_a_flipped_byte_in_either_graph_is_refused(english, tmp_path, name):
    target = tmp_path / "flipped"
    shutil.copytree(english[2], target)
    data = bytearray((target / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (target / name).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"{name}: checksum does not match"):
        OnnxTagger.load(target)


def test_an_export_without_checksums_is_refused(english, tmp_path):
    target = tmp_path / "old"
    shutil.copytree(english[2], target)
    spec = json.loads((target / PREPROCESS_FILE).read_text(encoding="utf-8"))
    assert set(spec.pop("sha256")) == {MODEL_FILE, LOOKUP_FILE}
    (target / PREPROCESS_FILE).write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ModelError, match="no checksums.*export the model again"):
        OnnxTagger.load(target)


def test_without_the_onnx_extra_export_and_predict_name_it(trained_model, english, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModelError, match=r"pip install 'bilstm-tagger\[onnx\]'"):
        export_onnx(trained_model, tmp_path / "out")
    with pytest.raises(ModelError, match=r"onnxruntime: pip install 'bilstm-tagger\[onnx\]'"):
        OnnxTagger.load(english[2]).predict_tokens([["Paris"]])


def test_an_export_cannot_be_saved_as_a_model_directory(english, tmp_path):
    with pytest.raises(ModelError, match="cannot be saved"):
        english[1].save(tmp_path / "model")


def test_feeds_lay_out_each_tokens_characters(english):
    reference, _, _ = english
    batch = collate([reference.encode(["Paris", "."]), reference.encode(["AG"])])
    chars = feeds(batch, {"chars"})["chars"]  # (B, T, L)
    ids = reference.vocab.chars.ids
    assert chars.shape == (2, 2, 5)
    assert chars[0, 0].tolist() == [ids[c] for c in "Paris"]
    assert chars[0, 1].tolist() == [ids["."], 0, 0, 0, 0]
    assert chars[1].tolist() == [[ids["A"], ids["G"], 0, 0, 0], [0] * 5]
