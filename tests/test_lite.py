"""The numpy engine: the torch network's numbers and tags, without importing torch."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import make_sentences
from tagger import jobs
from tagger.api import Tagger, network_sizes
from tagger.config import Config
from tagger.data import read_sentences
from tagger.encode import collate
from tagger.lite import LiteNetwork, state_shapes
from tagger.vocab import build_vocab

SENTENCES = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"], ["lamb", "BRUSSELS", "1996-08-22"],
             ["The", "European", "Commission", "said", "on", "Thursday"], ["zebra", "okapi"]]
TAGS = [["S-ORG", "O", "S-MISC", "O"], ["B-PER", "E-PER"], ["O", "S-LOC", "O"],
        ["O", "B-ORG", "E-ORG", "O", "O", "O"], ["O", "O"]]
POS = [["NNP", "VBZ", "JJ", "NN"], ["NNP", "NNP"], ["NN", "NNP", "CD"], ["DT", "NNP", "NNP", "VBD", "IN", "NNP"],
       ["NN", "NN"]]
TEXT = "John Smith visited Paris . Siemens AG hired Mary in London ."


def random_tagger(char_encoder="cnn", layers=1, features=(), kernel=3) -> Tagger:
    """An untrained network with weights large enough that its tags depend on them, and pretrained
    (frozen) words: "zebra" and "okapi", never seen in training, are looked up in them."""
    config = Config(hidden_size=8, char_dim=6, char_filters=5, char_kernel=kernel, word_dim=7, casing_dim=3,
                    feature_dim=4, char_encoder=char_encoder, num_layers=layers, features=list(features),
                    tag_scheme="auto")
    vocab = build_vocab(SENTENCES[:4], TAGS[:4], [POS[:4]] if features else [], pretrained=["lamb", "zebra", "okapi"],
                        source_scheme="bioes")
    torch.manual_seed(0)
    tagger = Tagger.build(config, vocab)
    with torch.no_grad():
        for p in tagger.model.parameters():
            p.normal_(0, 0.7)
        tagger.model.frozen.normal_(0, 0.7)
    return tagger


def numpy_twin(tagger: Tagger) -> LiteNetwork:
    return LiteNetwork(tagger.config, {k: v.numpy() for k, v in tagger.model.state_dict().items()})


@pytest.mark.parametrize("features", [(), (1,)])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("char_encoder", ["cnn", "lstm", "none"])
def test_numpy_engine_gives_the_torch_networks_emissions_and_tags(char_encoder, layers, features):
    tagger = random_tagger(char_encoder, layers, features)
    assert len(tagger.vocab.frozen) == 2
    encoded = [tagger.encode(s, features=[p] if features else ()) for s, p in zip(SENTENCES * 3, POS * 3)]
    batch = collate(encoded)  # lengths 2 to 6, padded to 6
    ours = numpy_twin(tagger).emissions(batch)
    theirs = tagger.model.eval().emissions(batch).detach().numpy()
    np.testing.assert_allclose(ours[batch.mask], theirs[batch.mask], rtol=1e-5, atol=1e-5)
    paths = numpy_twin(tagger).tag(batch)
    assert paths == tagger.model.tag(batch)
    assert len({tuple(p) for p in paths}) > 3  # the weights matter: sentences get different paths


@pytest.mark.parametrize("kernel", [3, 4])
def test_even_and_odd_character_windows(kernel):
    tagger = random_tagger(kernel=kernel)
    batch = collate([tagger.encode(s) for s in SENTENCES])
    np.testing.assert_allclose(numpy_twin(tagger).emissions(batch)[batch.mask],
                               tagger.model.eval().emissions(batch).detach().numpy()[batch.mask], atol=1e-5)


@pytest.mark.parametrize("char_encoder,layers,features,kernel",
                         [("cnn", 1, (), 3), ("lstm", 2, (1,), 3), ("none", 1, (1,), 5), ("cnn", 3, (), 4)])
def test_weight_shapes_are_known_without_building_the_torch_network(char_encoder, layers, features, kernel):
    tagger = random_tagger(char_encoder, layers, features, kernel)
    expected = {k: tuple(v.shape) for k, v in tagger.model.state_dict().items()}
    assert state_shapes(tagger.config, *network_sizes(tagger.vocab)) == expected


def test_saved_model_tags_the_same_with_either_engine_and_numpy_never_imports_torch(trained_model):
    code = ("import json, sys; from tagger.api import Tagger; "
            "print(json.dumps(Tagger.load(sys.argv[1], engine='numpy').predict(sys.argv[2]))); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    run = subprocess.run([sys.executable, "-c", code, str(trained_model), TEXT], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    spans = json.loads(run.stdout)
    assert spans == Tagger.load(trained_model).predict(TEXT)
    assert {s["label"] for s in spans} >= {"PER", "LOC"}


def imported_modules(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `tagger ARGS`; the names of the modules it imported."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli.main", *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run, {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


def test_predict_and_evaluate_commands_do_not_import_torch(trained_model, corpus, tmp_path):
    text = tmp_path / "in.txt"
    text.write_text(TEXT + "\n")
    run, imported = imported_modules("predict", str(trained_model), str(text))
    assert "numpy" in imported and "torch" not in imported
    assert json.loads(run.stdout)["entities"] == Tagger.load(trained_model).predict(TEXT)
    run, imported = imported_modules("evaluate", str(trained_model), str(corpus["test"]), "--json")
    assert "torch" not in imported
    gold = read_sentences(str(corpus["test"]), "auto", None, split="test")
    assert json.loads(run.stdout)["f1"] == Tagger.load(trained_model, "torch").evaluate(gold)["f1"] > 0.5


def test_unknown_engine_is_refused(trained_model):
    with pytest.raises(ValueError, match="engine must be one of torch, numpy"):
        Tagger.load(trained_model, engine="onnx")


@pytest.mark.parametrize("workers", [1, 2])
def test_predict_writes_the_same_output_with_either_engine(trained_model, corpus, tmp_path, workers):
    text = tmp_path / "in.txt"
    text.write_text("".join(" ".join(tokens) + "\n" for tokens, _ in make_sentences(300, seed=5)) + TEXT + "\n")
    outputs = {}
    for engine in ("torch", "numpy"):
        outputs[engine] = tmp_path / f"{engine}.jsonl"
        jobs.predict(trained_model, [str(text)], output=outputs[engine], workers=workers, engine=engine)
    assert outputs["numpy"].read_text() == outputs["torch"].read_text()
    assert '"label": "PER"' in outputs["numpy"].read_text()
