"""The model directory: save -> load round trip, checksums, atomic writes, and never unpickling anything."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load as st_load

from conftest import flip_byte, rewrite_config, truncate
from tagger import store
from tagger.api import Tagger
from tagger.encode import iter_batches
from tagger.errors import ModelError

SENTENCES = [["John", "Smith", "visited", "Paris", "."], ["Siemens", "AG", "hired", "Anna", "."], ["x"]]


def test_save_then_load_gives_the_same_model(trained_model, tmp_path):
    original = Tagger.load(trained_model)
    original.save(tmp_path / "copy")
    again = Tagger.load(tmp_path / "copy")
    assert again.config == original.config
    assert again.vocab.to_json() == original.vocab.to_json()
    assert again.tensors.keys() == original.tensors.keys()
    for name, array in original.tensors.items():
        assert array.dtype == again.tensors[name].dtype and np.array_equal(again.tensors[name], array), name
    assert again.predict_tokens(SENTENCES) == original.predict_tokens(SENTENCES)


def test_model_directory_is_three_readable_files(trained_model):
    meta = json.loads((trained_model / "config.json").read_text(encoding="utf-8"))
    assert meta["format"] == store.FORMAT and meta["format_version"] == 2
    assert meta["config"]["hidden_size"] == 16
    for name in ("vocab.json", "model.safetensors"):
        assert meta["sha256"][name] == store.sha256((trained_model / name).read_bytes())
    vocab = json.loads((trained_model / "vocab.json").read_text(encoding="utf-8"))
    assert "john" in vocab["words"]  # looked up lower-cased (lowercase_lookup), casing is its own feature
    assert {"O", "B-PER", "E-PER", "S-LOC"} <= set(vocab["tags"])  # trained in BIOES, the config's default
    assert vocab["source_scheme"] == "iob2"  # ...and answers in the corpus's scheme
    tensors = st_load((trained_model / "model.safetensors").read_bytes())  # plain safetensors, nothing else
    assert {"words.trained", "lstm.0.forward.weight_ih", "crf.transitions"} <= set(tensors)  # our names, not torch's
    assert tensors["crf.transitions"].min() == -10000.0  # the scheme's forbidden moves, already set


def test_files_honour_the_umask(trained_model, tmp_path):
    old = os.umask(0o022)
    try:
        Tagger.load(trained_model).save(tmp_path / "m")
        store.atomic_write(tmp_path / "f.txt", b"x")
    finally:
        os.umask(old)
    for path in [*(tmp_path / "m").iterdir(), tmp_path / "f.txt"]:
        assert path.stat().st_mode & 0o777 == 0o644, path  # readable by a colleague, as open() would make it


def test_saving_leaves_no_temporary_files(trained_model, tmp_path):
    Tagger.load(trained_model).save(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "model.safetensors", "vocab.json"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    store.atomic_write(target, b"old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        store.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.json"]


def test_load_never_unpickles(trained_model, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("Tagger.load must not unpickle anything")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    tagger = Tagger.load(trained_model)
    assert len(tagger.predict_tokens(SENTENCES)[0]) == 5


class Evil:
    """Unpickling this creates the marker file: what a malicious model file would do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("matching_checksum", [False, True])
def test_a_pickle_in_place_of_the_weights_is_refused_and_never_run(matching_checksum, model_copy, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weights": Evil(marker)})
    (model_copy / "model.safetensors").write_bytes(payload)
    if matching_checksum:  # the attacker also rewrote config.json: only the file format protects us now
        meta = json.loads((model_copy / "config.json").read_text())
        meta["sha256"]["model.safetensors"] = store.sha256(payload)
        (model_copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError) as info:
        Tagger.load(model_copy)
    assert "model.safetensors" in str(info.value)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is real: unpickling it does create the marker
    assert marker.exists()


def test_a_torch_save_file_in_place_of_the_weights_is_refused(model_copy, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weights": Evil(marker)}, model_copy / "model.safetensors")
    data = (model_copy / "model.safetensors").read_bytes()
    meta = json.loads((model_copy / "config.json").read_text())
    meta["sha256"]["model.safetensors"] = store.sha256(data)
    (model_copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="unreadable weights"):
        Tagger.load(model_copy)
    assert not marker.exists()


def test_altered_weights_are_caught_by_the_checksum_alone(model_copy):
    flip_byte(model_copy / "model.safetensors")
    st_load((model_copy / "model.safetensors").read_bytes())  # still a valid file: only the checksum can tell
    with pytest.raises(ModelError, match="checksum does not match"):
        Tagger.load(model_copy)


def test_truncated_weights_with_a_forged_checksum_are_unreadable(model_copy):
    truncate(model_copy / "model.safetensors")
    meta = json.loads((model_copy / "config.json").read_text())
    meta["sha256"]["model.safetensors"] = store.sha256((model_copy / "model.safetensors").read_bytes())
    (model_copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="unreadable weights"):
        Tagger.load(model_copy)


def test_altered_vocabulary_is_caught_by_the_checksum(model_copy):
    vocab = json.loads((model_copy / "vocab.json").read_text())
    vocab["tags"].reverse()  # same size, so shapes alone would not notice: labels would silently swap
    (model_copy / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ModelError, match="vocab.json: checksum"):
        Tagger.load(model_copy)


def test_config_from_another_version_is_refused(model_copy):
    rewrite_config(model_copy, version=99)
    with pytest.raises(ModelError, match=r"config.json: config version 99 is not supported"):
        Tagger.load(model_copy)


def test_weights_not_matching_the_config_are_refused_by_shape(model_copy):
    rewrite_config(model_copy, hidden_size=32)
    meta = json.loads((model_copy / "config.json").read_text())
    for name in ("vocab.json", "model.safetensors"):  # the checksums still match: only shapes disagree
        assert meta["sha256"][name] == store.sha256((model_copy / name).read_bytes())
    with pytest.raises(ModelError) as info:
        Tagger.load(model_copy)
    assert "weights do not match config.json" in str(info.value)
    assert "(64, " in str(info.value) and "(128, " in str(info.value)  # 4 gates x hidden 16 vs x 32


def test_config_json_of_another_program_is_refused(model_copy):
    (model_copy / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelError, match="not a model of this tagger"):
        Tagger.load(model_copy)
    (model_copy / "config.json").write_text("{oops")
    with pytest.raises(ModelError, match="config.json: invalid JSON"):
        Tagger.load(model_copy)


# -- format 1 (torch's state-dict keys, before format_version): kept as fixtures made by that code ---------

FIXTURES = Path(__file__).parent / "fixtures" / "models"


@pytest.mark.parametrize("name", ["v1-cnn", "v1-lstm-features"])
def test_a_format_1_model_loads_and_tags_as_it_did(name):
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text(encoding="utf-8"))
    assert "format_version" not in json.loads((FIXTURES / name / "config.json").read_text(encoding="utf-8"))
    tagger = Tagger.load(FIXTURES / name)
    features = expected.get("features", ())
    assert tagger.predict_tokens(expected["tokens"], features) == expected["tags"]
    for text, entities in zip(expected.get("texts", ()), expected.get("entities", ())):
        assert tagger.predict(text) == entities
    encoded = [tagger.encode(s, features=f) for s, f in zip(expected["tokens"][:4], features[:4] or [()] * 4)]
    for sentence, emissions in zip(encoded, expected["emissions_first4"]):
        (_, batch), = iter_batches([sentence], 1, mixed=True)
        np.testing.assert_allclose(tagger.engine.emissions(batch)[0], emissions, atol=2e-6)


def test_a_format_1_model_saved_again_is_format_2_and_tags_the_same(tmp_path):
    expected = json.loads((FIXTURES / "v1-cnn.expected.json").read_text(encoding="utf-8"))
    Tagger.load(FIXTURES / "v1-cnn").save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))["format_version"] == 2
    assert Tagger.load(tmp_path / "m").predict_tokens(expected["tokens"]) == expected["tags"]


def test_a_newer_format_is_refused_with_a_clear_error(model_copy):
    rewrite_meta(model_copy, format_version=3)
    with pytest.raises(ModelError, match="format_version 3 is newer than this tagger reads"):
        Tagger.load(model_copy)


def rewrite_meta(model: Path, **changes) -> None:
    meta = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps(meta | changes), encoding="utf-8")


def test_update_config_changes_one_setting_atomically_and_keeps_the_model_loadable(model_copy):
    from tagger.errors import ConfigError

    store.update_config(model_copy, {"temperature": 1.5})
    assert Tagger.load(model_copy).config.temperature == 1.5  # checksums cover the other two files only
    before = (model_copy / "config.json").read_bytes()
    with pytest.raises(ConfigError, match="temperature must be a positive number"):
        store.update_config(model_copy, {"temperature": -1.0})
    assert (model_copy / "config.json").read_bytes() == before  # nothing written
    assert not [p.name for p in model_copy.iterdir() if p.name.startswith(".")]  # no temporary file left
