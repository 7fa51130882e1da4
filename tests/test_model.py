"""The network: shapes, character encoders, feature columns, batching that does not change predictions."""
import pytest
import torch

from tagger.config import Config
from tagger.encode import Encoder, collate
from tagger.errors import ModelError
from tagger.training.model import Trainable
from tagger.vocab import build_vocab

SENTENCES = [["UN", "accepts", "Danish", "offer"], ["Ilse", "Yilmaz"], ["STONEHAVEN", "2001-03-14"],
             ["The", "Nordic", "Council", "met", "on", "Friday"]]
TAGS = [["S-ORG", "O", "S-MISC", "O"], ["B-PER", "E-PER"], ["S-LOC", "O"], ["O", "B-ORG", "E-ORG", "O", "O", "O"]]
POS = [["NNP", "VBZ", "JJ", "NN"], ["NNP", "NNP"], ["NNP", "CD"], ["DT", "NNP", "NNP", "VBD", "IN", "NNP"]]


def tiny(char_encoder="cnn", features=()):
    config = Config(hidden_size=8, char_dim=6, char_filters=5, word_dim=7, casing_dim=3, feature_dim=4,
                    char_encoder=char_encoder, features=list(features), tag_scheme="auto")
    vocab = build_vocab(SENTENCES, TAGS, [POS] if features else [], source_scheme="bioes")
    torch.manual_seed(0)
    return Trainable.build(config, vocab)


@pytest.mark.parametrize("char_encoder", ["cnn", "lstm", "none"])
def test_emissions_have_one_score_per_token_and_tag(char_encoder):
    tagger = tiny(char_encoder)
    batch = collate([tagger.encode(SENTENCES[0])] * 4)  # a training batch: one length
    assert tagger.model.emissions(batch).shape == (4, 4, len(tagger.vocab.tags))


def test_feature_columns_are_embedded_and_required():
    tagger = tiny(features=[1])
    tagger.model.eval()
    enc = Encoder(tagger.vocab)
    batch = collate([enc(s, features=[p]) for s, p in zip(SENTENCES[1:3], POS[1:3])])
    other = collate([enc(s, features=[["CD", "CD"]]) for s in SENTENCES[1:3]])
    assert tagger.model.emissions(batch).shape[:2] == (2, 2)
    assert not torch.allclose(tagger.model.emissions(batch), tagger.model.emissions(other))  # the column is read
    assert len(tagger.as_tagger().predict_tokens(SENTENCES, [[p] for p in POS])[3]) == 6
    with pytest.raises(ModelError, match=r"needs feature columns \(1\)"):
        tagger.as_tagger().predict_tokens(SENTENCES)


def test_batched_tagging_equals_one_sentence_at_a_time():
    tagger = tiny().as_tagger()
    together = tagger.predict_tokens(SENTENCES * 5)
    alone = [tagger.predict_tokens([s])[0] for s in SENTENCES * 5]
    assert together == alone


def test_untrained_model_still_outputs_valid_bioes():
    from corpora import schemes

    tagger = tiny().as_tagger()
    for tags in tagger.predict_tokens(SENTENCES):
        assert schemes.is_valid(tags, "bioes")


@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_char_cnn_equals_a_padded_conv1d_max_pooled_over_each_words_characters(kernel):
    from tagger.training.model import CharCNN

    torch.manual_seed(0)
    cnn = CharCNN(num_chars=20, dim=6, filters=5, kernel=kernel)
    words = [[3, 4, 5], [7], [2, 9, 9, 9, 11, 19], [1, 2]]
    got = cnn(torch.tensor([c for w in words for c in w]), torch.tensor([len(w) for w in words]))
    conv = torch.nn.Conv1d(6, 5, kernel, padding=0)
    with torch.no_grad():  # window weights are (filters, kernel*dim) in position-major order
        conv.weight.copy_(cnn.window.weight.view(5, kernel, 6).transpose(1, 2))
        conv.bias.copy_(cnn.window.bias)
    for w, row in zip(words, got):
        x = cnn.embed(torch.tensor(w)).T.unsqueeze(0)  # (1, dim, L)
        x = torch.nn.functional.pad(x, (kernel // 2, (kernel - 1) // 2))
        assert torch.allclose(conv(x)[0].max(1).values, row, atol=1e-6)


@pytest.mark.parametrize("encoder", ["cnn", "lstm"])
def test_char_dropout_acts_only_while_training(encoder):
    from tagger.training.model import CharCNN, CharLSTM

    torch.manual_seed(0)
    chars = CharCNN(20, 6, 5, 3, dropout=0.5) if encoder == "cnn" else CharLSTM(20, 6, 5, dropout=0.5)
    spellings, lengths = torch.tensor([3, 4, 5, 7, 2, 9, 9]), torch.tensor([3, 1, 3])
    chars.train()
    assert not torch.equal(chars(spellings, lengths), chars(spellings, lengths))
    chars.eval()
    assert torch.equal(chars(spellings, lengths), chars(spellings, lengths))
    chars.dropout.p = 0.0
    chars.train()  # no dropout: training and tagging see the same characters
    train_out = chars(spellings, lengths)
    chars.eval()
    assert torch.allclose(train_out, chars(spellings, lengths))


def test_the_training_network_refuses_padded_batches():
    tagger = tiny()
    with pytest.raises(ValueError, match="one length"):
        tagger.model.emissions(collate([tagger.encode(s) for s in SENTENCES]))  # lengths 4, 2, 2, 6


def test_a_model_directory_reads_the_same_for_training_as_for_tagging(trained_model):
    """One reading path (tagging/tagger.py read_saved): the same vocabulary, lexicon and weights."""
    import numpy as np

    from tagger.api import Tagger

    trainable, tagger = Trainable.load(trained_model), Tagger.load(trained_model)
    assert trainable.vocab.to_json() == tagger.vocab.to_json()
    mine = trainable.model.tensors()
    assert mine.keys() == tagger.tensors.keys()
    assert all(np.array_equal(mine[k], tagger.tensors[k]) for k in mine)


def test_a_trainable_is_never_changed_after_it_is_built():
    """Cross-view training's views or a resumed config make a new Trainable (they were once set on it)."""
    import dataclasses

    trainable = tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        trainable.views = torch.nn.Linear(2, 2)
    viewed = dataclasses.replace(trainable, views=torch.nn.Linear(2, 2))
    assert trainable.views is None and viewed.model is trainable.model and viewed.encode.vocab is trainable.vocab


def test_a_malformed_vocabulary_is_one_line_for_training_too(trained_model, tmp_path):
    import hashlib
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    (model / "vocab.json").write_bytes(b'{"words": 3}')
    meta = json.loads((model / "config.json").read_text(encoding="utf-8"))
    meta["sha256"]["vocab.json"] = hashlib.sha256(b'{"words": 3}').hexdigest()  # intact file, malformed content
    (model / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match="malformed vocabulary") as caught:
        Trainable.load(model)
    assert caught.value.path.endswith("vocab.json")
