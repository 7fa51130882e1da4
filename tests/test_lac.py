"""LAC (jieba's lexical-analysis network) read without Paddle, as pretrained vectors and a frozen context encoder."""
import dataclasses
import json
import struct

import numpy as np
import pytest
import torch

from tagger import lac
from tagger.tagging import pipeline

from tagger import commands
from tagger.api import Tagger
from tagger.config import Config
from tagger.encode import collate
from tagger.errors import InputError
from tagger.tagging.engine import Engine
from tagger.training.model import Trainable
from tagger.training.setup import add_context_features
from tagger.tagging import charlm
from tagger.tagging.viterbi import viterbi
from tagger.vocab import Index, build_vocab

SENTENCES = [list("我爱北京"), list("李小明在百度工作。"), list("Ａ股"), list("天")]
TAGS = [["O", "O", "B-LOC", "E-LOC"], ["B-PER", "M-PER", "E-PER", "O", "B-ORG", "E-ORG", "O", "O", "O"],
        ["O", "O"], ["O"]]


def paddle_tensor(array: np.ndarray) -> bytes:
    """A float32 tensor laid out as Paddle's save_persistables writes it (with one LoD level, as a test)."""
    desc = bytes([0x08, 0x05]) + b"".join(bytes([0x10]) + _varint(d) for d in array.shape)
    lod = struct.pack("<Q", 16) + struct.pack("<QQ", 0, 3)
    return (struct.pack("<I", 0) + struct.pack("<Q", 1) + lod + struct.pack("<I", 0) + struct.pack("<i", len(desc))
            + desc + array.astype("<f4").tobytes())


def _varint(n: int) -> bytes:
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def synthetic_lac(tmp_path, chars=("我", "爱", "北", "京", "李", "A", "OOV")):
    """A lac_small directory with random weights of LAC's shapes, written in Paddle's format."""
    directory = tmp_path / "lac_small"
    (directory / "model_baseline").mkdir(parents=True)
    (directory / "word.dic").write_text("".join(f"{i}\t{c}\n" for i, c in enumerate(chars)), encoding="utf-8")
    rng = np.random.default_rng(0)
    for name, shape in lac.shapes(len(chars)).items():
        key = name.removeprefix("context.")
        saved = (1, *shape) if key.endswith("bias") and not key.startswith("emissions") else shape
        data = paddle_tensor(rng.normal(0, 0.5, saved).astype(np.float32))
        (directory / "model_baseline" / lac.PADDLE_FILES[key]).write_bytes(data)
    return directory


def test_paddle_tensors_read_with_their_shape_and_values(tmp_path):
    array = np.arange(300 * 3, dtype=np.float32).reshape(300, 3) / 7
    (tmp_path / "w").write_bytes(paddle_tensor(array))
    np.testing.assert_array_equal(lac.read_paddle_tensor(tmp_path / "w"), array)


def test_a_truncated_tensor_file_is_a_one_line_error(tmp_path):
    (tmp_path / "w").write_bytes(paddle_tensor(np.ones((4, 4), np.float32))[:20])
    with pytest.raises(InputError, match="not a Paddle float32 tensor file") as e:
        lac.read_paddle_tensor(tmp_path / "w")
    assert str(tmp_path / "w") in str(e.value)


def test_full_width_ascii_reads_as_half_width():
    assert lac.normalise("Ａ，ｂ！１\u3000中") == "A,b!1 中"
    assert lac.token_ids({"A": 0, ",": 1, "OOV": 2}, ["Ａ", "，", "中"]) == [0, 1, 2]


def test_char_vectors_leave_out_oov_rows_and_give_full_width_forms_their_rows():
    chars = ["我", "A", "OOV", "OOV_NUM", " "]
    embedding = np.arange(10, dtype=np.float32).reshape(5, 2)
    words, vectors = lac.char_vectors(chars, embedding)
    assert words == ["我", "A", "Ａ"]
    np.testing.assert_array_equal(vectors, embedding[[0, 1, 1]])


def test_a_directory_without_lac_files_is_named_in_the_error(tmp_path):
    with pytest.raises(InputError, match="not a LAC model directory .* word.dic"):
        lac.lac_dir(tmp_path)


def test_the_gru_state_stays_zero_on_padding_so_batches_equal_sentences_alone(tmp_path):
    chars, tensors = lac.from_jieba(synthetic_lac(tmp_path))
    net = lac.ContextNetwork(tensors)
    index = {c: i for i, c in enumerate(chars)}
    ids = [lac.token_ids(index, s) for s in SENTENCES]
    mask = np.arange(9) < np.array([len(s) for s in SENTENCES])[:, None]
    padded = np.zeros(mask.shape, dtype=np.int64)
    padded[mask] = np.concatenate(ids)
    together = net.features(padded, mask)  # (4, 9, FEATURES)
    assert together.shape == (4, 9, lac.FEATURES) and not together[~mask].any()
    for row, sentence in enumerate(ids):
        alone = net.features(np.array([sentence]), np.ones((1, len(sentence)), dtype=bool))[0]
        np.testing.assert_allclose(together[row, : len(sentence)], alone, rtol=1e-4, atol=1e-4)  # float32 sums


def test_both_gru_directions_follow_paddles_equations():
    rng = np.random.default_rng(1)
    hidden, steps = 3, 4
    x = rng.normal(size=(steps, 2)).astype(np.float32)
    tensors = {}
    for d in ("forward", "backward"):
        tensors |= {f"0.{d}.input.weight": rng.normal(size=(2, 9)), f"0.{d}.input.bias": rng.normal(size=9),
                    f"0.{d}.weight": rng.normal(size=(hidden, 3 * hidden)), f"0.{d}.bias": rng.normal(size=9)}
    tensors = {k: v.astype(np.float32) for k, v in tensors.items()}
    w_in, bias, w_gates, w_candidate = lac.layer_weights(tensors, 0)
    out = lac.bigru(x @ w_in + bias, np.arange(steps)[:, None], np.ones((1, steps), bool), w_gates, w_candidate)

    def reference(d: str, inputs: np.ndarray) -> list[np.ndarray]:  # Paddle's GRU, one step at a time
        flat = tensors[f"0.{d}.weight"].reshape(-1)  # two blocks end to end, as Paddle keeps it
        w_g = flat[: 2 * hidden * hidden].reshape(hidden, 2 * hidden)
        w_c = flat[2 * hidden * hidden :].reshape(hidden, hidden)
        sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        h, states = np.zeros(hidden), []
        for row in inputs:
            p = row @ tensors[f"0.{d}.input.weight"] + tensors[f"0.{d}.input.bias"] + tensors[f"0.{d}.bias"]
            u = sigmoid(p[:hidden] + h @ w_g[:, :hidden])  # update, then reset
            r = sigmoid(p[hidden : 2 * hidden] + h @ w_g[:, hidden:])
            h = (1 - u) * h + u * np.tanh(p[2 * hidden :] + (r * h) @ w_c)
            states.append(h)
        return states

    np.testing.assert_allclose(out[:, 0, :hidden], reference("forward", x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[::-1, 0, hidden:], reference("backward", x[::-1]), rtol=1e-5, atol=1e-5)


def context_network(tmp_path) -> Trainable:
    """An untrained character network with the synthetic context encoder, weights large enough to matter."""
    chars, tensors = lac.from_jieba(synthetic_lac(tmp_path))
    config = Config(hidden_size=8, word_dim=7, casing_dim=3, bigram_dim=5, char_encoder="none", bigrams="on",
                    tokenizer="chars", tag_scheme="auto", dropout=0.0, word_dropout=0.0, context="lac")
    vocab = build_vocab(SENTENCES[:2], TAGS[:2], source_scheme="bmes", with_bigrams=True)
    vocab.context = Index(chars, specials=False)
    torch.manual_seed(0)
    trainable = Trainable.build(config, vocab)
    trainable.model.context = tensors
    with torch.no_grad():
        for p in trainable.model.parameters():
            p.normal_(0, 0.7)
    trainable.model.eval()
    return trainable


def test_engine_computes_per_batch_what_training_computes_once_per_sentence(tmp_path):
    trainable = context_network(tmp_path)
    encoded = [trainable.encode(s) for s in SENTENCES * 2]
    alone = [dataclasses.replace(e) for e in encoded]
    add_context_features(alone, charlm.context_network("lac", trainable.model.context))
    with torch.no_grad():
        theirs = [trainable.model.emissions(collate([e]))[0].numpy() for e in alone]
    batch = collate(encoded)
    assert batch.context_features is None  # tagging: the engine runs the encoder on the mixed-length batch
    ours = Engine(trainable.config, trainable.model.tensors()).emissions(batch)
    for i, expected in enumerate(theirs):
        np.testing.assert_allclose(ours[i, : len(encoded[i])], expected, rtol=1e-4, atol=1e-4)


def test_training_batches_without_context_features_are_refused(tmp_path):
    trainable = context_network(tmp_path)
    with pytest.raises(ValueError, match="context features"):
        trainable.model.emissions(collate([trainable.encode(SENTENCES[0])]))


def write_corpus(path, sentences, tags):
    path.write_text("".join("".join(f"{c} {t}\n" for c, t in zip(s, ts)) + "\n" for s, ts in zip(sentences, tags)),
                    encoding="utf-8")


def test_a_model_with_a_context_encoder_saves_loads_and_tags_raw_text_with_offsets(tmp_path):
    write_corpus(tmp_path / "train.txt", SENTENCES[:2] * 4, TAGS[:2] * 4)
    directory = synthetic_lac(tmp_path)
    commands.train(str(tmp_path / "train.txt"), str(tmp_path / "train.txt"), tmp_path / "model", context=str(directory),
               overrides={"epochs": 2})
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["config"]["context"] == "lac" and meta["training"]["context"] == "lac_small"
    tagger = Tagger.load(tmp_path / "model")
    assert tagger.info()["context"] == "lac"
    trainable = Trainable.load(tmp_path / "model")
    np.testing.assert_array_equal(trainable.model.context["context.0.forward.weight"],
                                  lac.from_jieba(directory)[1]["context.0.forward.weight"])
    text = "我爱北京。李小明在百度工作"
    (tagged,) = pipeline.tag_texts(tagger, [text])
    assert all(text[e["start"] : e["end"]] == e["text"] for e in tagged.entities)
    assert tagger.model_tags([list(text)]) == Tagger.load(tmp_path / "model").model_tags([list(text)])


def test_a_training_with_a_context_encoder_resumes_from_its_checkpoint(tmp_path):
    write_corpus(tmp_path / "train.txt", SENTENCES[:2] * 4, TAGS[:2] * 4)
    corpus, model = str(tmp_path / "train.txt"), tmp_path / "model"
    commands.train(corpus, corpus, model, context=str(synthetic_lac(tmp_path)), overrides={"epochs": 1, "patience": 5})
    commands.train(corpus, corpus, model, resume=True, overrides={"epochs": 2})  # the checkpoint brings the encoder
    assert len((model / "metrics.jsonl").read_text().splitlines()) == 2
    assert Tagger.load(model).config.context == "lac"


def test_tagger_train_with_context_on_a_directory_that_is_not_lac_is_one_line_before_reading_data(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    write_corpus(tmp_path / "train.txt", SENTENCES[:2], TAGS[:2])
    result = CliRunner().invoke(app, ["train", str(tmp_path / "train.txt"), "--dev", str(tmp_path / "train.txt"),
                                      "-o", str(tmp_path / "model"), "--context", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        f"error: {tmp_path}: not a LAC model directory (lac_small): it lacks word.dic"]
    assert not (tmp_path / "model").exists()


def test_embeddings_jieba_without_jieba_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(lac.importlib.util, "find_spec", lambda name: None)
    write_corpus(tmp_path / "train.txt", SENTENCES[:2], TAGS[:2])
    with pytest.raises(InputError, match="pip install jieba"):
        commands.train(str(tmp_path / "train.txt"), str(tmp_path / "train.txt"), tmp_path / "model", embeddings="jieba")
    assert not (tmp_path / "model").exists()


def test_embeddings_jieba_are_lacs_character_vectors(tmp_path):
    pytest.importorskip("jieba", reason="jieba is not installed (pip install jieba): its LAC model is the subject")
    write_corpus(tmp_path / "train.txt", SENTENCES[:2], TAGS[:2])
    commands.train(str(tmp_path / "train.txt"), str(tmp_path / "train.txt"), tmp_path / "model", embeddings="jieba",
               overrides={"epochs": 1})
    tagger = Tagger.load(tmp_path / "model")
    chars, tensors = lac.from_jieba()
    row = tagger.vocab.frozen.find("天")  # never seen in training: its vector is looked up, as LAC has it
    np.testing.assert_array_equal(tagger.tensors["words.frozen"][row], tensors["context.embedding"][chars.index("天")])
    assert tagger.info()["embeddings"] == "jieba" and tagger.config.word_dim == 128


def test_jiebas_lac_finds_names_places_and_organisations():
    """The real weights through our forward pass: a wrong gate or block layout tags nonsense."""
    pytest.importorskip("jieba", reason="jieba is not installed (pip install jieba): its LAC model is the subject")
    directory = lac.lac_dir()
    chars, tensors = lac.from_jieba(directory)
    tags = [line.split("\t")[1] for line in (directory / "tag.dic").read_text(encoding="utf-8").split("\n") if line]
    crf = lac.read_paddle_tensor(directory / "model_baseline" / "crfw")  # start, end, then transitions
    text = "今天下午张伟在北京见了百度公司的人"
    ids = np.array([lac.token_ids({c: i for i, c in enumerate(chars)}, text)])
    emissions = lac.ContextNetwork(tensors).features(ids, np.ones(ids.shape, bool))[:, :, 256:]
    (path,) = viterbi(emissions, np.ones(ids.shape, bool), crf[0], crf[2:], crf[1])
    got = " ".join(f"{c}/{tags[t]}" for c, t in zip(text, path))
    for expected in ("今/TIME-B 天/TIME-I", "张/PER-B 伟/PER-I", "北/LOC-B 京/LOC-I", "百/ORG-B 度/ORG-I"):
        assert expected in got
