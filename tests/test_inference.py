"""The tagging engine: the training network's numbers on mixed-length batches, without importing torch."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tagger import commands
from tagger import tensors as spec
from tagger.api import Tagger
from tagger.tensors import sizes_of
from tagger.config import Config
from tagger.data import read_sentences
from tagger.encode import collate
from tagger.tagging.engine import Engine
from tagger.lexicon import Lexicon
from tagger.training.model import Trainable
from tagger.vocab import build_vocab

SENTENCES = [["UN", "accepts", "Danish", "offer"], ["Ilse", "Yilmaz"], ["cheese", "STONEHAVEN", "2001-03-14"],
             ["The", "Nordic", "Council", "met", "on", "Friday"], ["zebra", "okapi"]]
TAGS = [["S-ORG", "O", "S-MISC", "O"], ["B-PER", "E-PER"], ["O", "S-LOC", "O"],
        ["O", "B-ORG", "E-ORG", "O", "O", "O"], ["O", "O"]]
POS = [["NNP", "VBZ", "JJ", "NN"], ["NNP", "NNP"], ["NN", "NNP", "CD"], ["DT", "NNP", "NNP", "VBD", "IN", "NNP"],
       ["NN", "NN"]]
TEXT = "John Smith visited Paris . Siemens AG hired Mary in London ."
# words spelt by consecutive tokens (joined), overlapping, at both edges of a sentence, of one token
LEXICON = Lexicon({"UN": 3, "UNaccepts": 1, "IlseYilmaz": 2, "Yilmaz": 9, "TheNordic": 1,
                   "NordicCouncilmet": 4, "Friday": 2, "zebraokapi": 1})


def random_network(char_encoder="cnn", layers=1, features=(), kernel=3, bigrams=False, lexicon=False) -> Trainable:
    """An untrained network with weights large enough that its tags depend on them, and pretrained
    (frozen) words: "zebra" and "okapi", never seen in training, are looked up in them."""
    config = Config(hidden_size=8, char_dim=6, char_filters=5, char_kernel=kernel, word_dim=7, casing_dim=3,
                    feature_dim=4, char_encoder=char_encoder, num_layers=layers, features=list(features),
                    tag_scheme="auto", dropout=0.0, word_dropout=0.0, bigrams="on" if bigrams else "off",
                    bigram_dim=5, lexicon=lexicon)
    vocab = build_vocab(SENTENCES[:4], TAGS[:4], [POS[:4]] if features else [], pretrained=["cheese", "zebra", "okapi"],
                        source_scheme="bioes", with_bigrams=bigrams, lexicon=LEXICON if lexicon else None)
    torch.manual_seed(0)
    trainable = Trainable.build(config, vocab)
    with torch.no_grad():
        for p in trainable.model.parameters():
            p.normal_(0, 0.7)
        trainable.model.frozen.copy_(torch.randn_like(trainable.model.frozen).mul(0.7).half())  # saved as float16
    trainable.model.eval()
    return trainable


def torch_emissions_alone(trainable: Trainable, encoded) -> list[np.ndarray]:
    """The training network's emissions of each sentence in a batch of its own (no padding)."""
    with torch.no_grad():
        return [trainable.model.emissions(collate([e]))[0].numpy() for e in encoded]


@pytest.mark.parametrize("bigrams,lexicon", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("features", [(), (1,)])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("char_encoder", ["cnn", "lstm", "none"])
def test_engine_gives_the_training_networks_emissions_on_mixed_length_batches(char_encoder, layers, features,
                                                                              bigrams, lexicon):
    trainable = random_network(char_encoder, layers, features, bigrams=bigrams, lexicon=lexicon)
    assert len(trainable.vocab.frozen) == 2
    encoded = [trainable.encode(s, features=[p] if features else ()) for s, p in zip(SENTENCES * 3, POS * 3)]
    batch = collate(encoded)  # lengths 2 to 6, padded to 6
    engine = Engine(trainable.config, trainable.model.tensors())
    ours = engine.emissions(batch)
    for i, theirs in enumerate(torch_emissions_alone(trainable, encoded)):
        np.testing.assert_allclose(ours[i, : len(encoded[i])], theirs, rtol=1e-5, atol=1e-5)
    paths = engine.tag(batch)
    assert len({tuple(p) for p in paths}) > 3  # the weights matter: sentences get different paths


@pytest.mark.parametrize("kernel", [3, 4])
def test_even_and_odd_character_windows(kernel):
    trainable = random_network(kernel=kernel)
    encoded = [trainable.encode(s) for s in SENTENCES]
    ours = Engine(trainable.config, trainable.model.tensors()).emissions(collate(encoded))
    for i, theirs in enumerate(torch_emissions_alone(trainable, encoded)):
        np.testing.assert_allclose(ours[i, : len(encoded[i])], theirs, atol=1e-5)


@pytest.mark.parametrize("char_encoder,layers,features,kernel,bigrams",
                         [("cnn", 1, (), 3, False), ("lstm", 2, (1,), 3, True), ("none", 1, (1,), 5, True),
                          ("cnn", 3, (), 4, False)])
def test_network_names_every_tensor_the_training_network_has(char_encoder, layers, features, kernel, bigrams):
    trainable = random_network(char_encoder, layers, features, kernel, bigrams=bigrams, lexicon=bigrams)
    tensors = trainable.model.tensors()
    assert {k: v.shape for k, v in tensors.items()} == spec.shapes(trainable.config, sizes_of(trainable.vocab))
    parameters = {k for k in trainable.model.state_dict() if not k.endswith(".0.allowed")}
    assert {spec.torch_name(k) for k in tensors} == parameters  # nothing trained goes unsaved


def test_saved_model_tags_without_importing_torch(trained_model):
    code = ("import json, sys; from tagger.api import Tagger; "
            "print(json.dumps(Tagger.load(sys.argv[1]).predict(sys.argv[2]))); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    run = subprocess.run([sys.executable, "-c", code, str(trained_model), TEXT], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    spans = json.loads(run.stdout)
    assert spans == Tagger.load(trained_model).predict(TEXT)
    assert {s["label"] for s in spans} >= {"PER", "LOC"}


def test_dev_scores_during_training_are_what_evaluate_gives_the_saved_model(trained_model):
    metrics = [json.loads(line) for line in (trained_model / "metrics.jsonl").read_text().splitlines()]
    best = max(m["dev_f1"] for m in metrics)
    dev = trained_model.parent / "dev.txt"  # what the session's model was trained with
    assert commands.evaluate(trained_model, str(dev))["f1"] == best  # one engine: the same numbers


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
    assert json.loads(run.stdout)["f1"] == Tagger.load(trained_model).evaluate(gold)["f1"] > 0.5
