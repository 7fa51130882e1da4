"""The Python API (`Tagger`, `tagger.commands`, `tagger.data`): what a user calls instead of the CLI.

Bad input raises one of `tagger.errors.USER_ERRORS` whose message names the file (and line); valid but
unusual input (empty, one token, 10,000 tokens, any Unicode) just works.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import (BAD_CORPORA, DAMAGES, bad_corpus, make_sentences, tag_column_option, train_tiny,
                      write_corpus)
from corpora.errors import CorpusError
from tagger import commands
from tagger.api import Tagger
from tagger.data import check_tags, read_sentences
from tagger.errors import USER_ERRORS, InputError, ModelError, TaggerError


@pytest.fixture(scope="module")
def model(trained_model) -> Tagger:
    """The trained tiny model."""
    return Tagger.load(trained_model)


def test_user_errors_are_the_two_documented_families():
    assert set(USER_ERRORS) == {TaggerError, CorpusError}
    assert issubclass(InputError, TaggerError) and issubclass(ModelError, TaggerError)


# -- what the model is --------------------------------------------------------------------------------------

def test_labels_are_in_the_training_corpus_scheme(model):
    assert model.vocab.source_scheme == "iob2" and model.scheme == "bioes"
    assert model.labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_info_reports_the_best_epoch_and_the_training_data(model, trained_model):
    about = model.info()
    assert about["labels"] == model.labels and about["entity_types"] == ["LOC", "ORG", "PER"]
    assert about["training_corpus"].endswith("train.txt") and about["embeddings"] is None
    assert 1 <= about["best_epoch"] <= 4 and 0 <= about["best_dev_f1"] <= 1
    assert about["vocabulary"]["tags"] == len(model.vocab.tags.items)


# -- tagging ----------------------------------------------------------------------------------------------

def test_predict_tokens_tags_each_token_in_the_corpus_scheme(model):
    tags = model.predict_tokens([["John", "Smith", "visited", "Paris", "."], ["it", "rained", "."]])
    assert tags == [["B-PER", "I-PER", "O", "B-LOC", "O"], ["O", "O", "O"]]


def test_predict_tokens_answers_in_input_order_across_lengths(model):
    sentences = [["it", "rained", "."], ["John", "Smith", "visited", "Paris", "."], ["Paris"], ["it", "rained", "."]]
    together = model.predict_tokens(sentences)
    assert together == [model.predict_tokens([s])[0] for s in sentences]


def test_predict_tokens_of_nothing_and_of_empty_sentences(model):
    assert model.predict_tokens([]) == []
    assert model.predict_tokens([[], ["Paris"], []]) == [[], model.predict_tokens([["Paris"]])[0], []]


def test_one_token_sentences(model):
    tags = model.predict_tokens([["John"], ["."], ["Berlin"]])
    assert [len(t) for t in tags] == [1, 1, 1]
    assert all(t[0] == "O" or t[0].startswith("B-") for t in tags)  # IOB2 output: a span starts with B-


def test_a_sentence_of_ten_thousand_tokens(model):
    words = ["John", "Smith", "visited", "Paris", "."] * 2000
    tags = model.predict_tokens([words])[0]
    assert len(tags) == 10_000
    assert tags[:5] == ["B-PER", "I-PER", "O", "B-LOC", "O"]


def test_control_characters_and_any_unicode_in_tokens(model):
    tokens = ["Zoë", "\u200b", "東京", "\x07bell", "🙂", "e\u0301", "\u202eRTL", "ﬁ", "\ud7ff"]
    tags = model.predict_tokens([tokens])[0]
    assert len(tags) == len(tokens)


def test_predict_takes_a_string_and_says_so(model):
    with pytest.raises(TaggerError, match="predict takes a string of raw text, not NoneType"):
        model.predict(None)


def test_predict_tokens_refuses_a_flat_list_of_tokens(model):
    """A common mistake: tagged as sentences of characters it would give garbage, silently."""
    with pytest.raises(TaggerError, match=r"a list of sentences, each a list of tokens.*not a flat list of tokens"):
        model.predict_tokens(["UN", "accepts"])
    with pytest.raises(TaggerError, match="not str"):
        model.predict_tokens("UN accepts")


def test_predict_raw_text_spans_point_into_the_text(model):
    text = "John Smith visited Paris . Then Angela Merkel works for Siemens AG in Berlin ."
    entities = model.predict(text)
    assert ("John Smith", "PER") in [(e["text"], e["label"]) for e in entities]
    for e in entities:
        assert text[e["start"]:e["end"]] == e["text"]


def test_predict_raw_text_with_control_characters_and_unicode(model):
    texts = ["", "   ", "Zoë \x00 visited \t東京 🙂 .\r", "\u2028Anna\u00a0met John Smith\x1b[0m in Paris ."]
    found = model.predict(texts)
    assert ("John Smith", "PER") in [(e["text"], e["label"]) for e in found[3]]  # offsets below are checked
    for text, entities in zip(texts, found):
        for e in entities:
            assert text[e["start"]:e["end"]] == e["text"]
    assert model.predict("") == []


def test_tagger_evaluate_scores_gold_sentences(model, tmp_path):
    sentences = read_sentences(write_corpus(tmp_path / "gold.txt", make_sentences(15, seed=7)))
    scores = model.evaluate(sentences)
    assert scores["sentences"] == 15
    assert scores["scored_as"] == "IOBES"  # the model trains in BIOES (config default); spans are the same
    assert scores["f1"] > 0.5  # the corpus is made from the templates the model learnt


# -- valid but unusual training data ------------------------------------------------------------------

def test_all_o_corpus_trains_and_predicts(tmp_path):
    sentences = [(tokens, ["O"] * len(tokens)) for tokens, _ in make_sentences(20, seed=2)]
    train = write_corpus(tmp_path / "train.txt", sentences[:15])
    dev = write_corpus(tmp_path / "dev.txt", sentences[15:])
    model = Tagger.load(train_tiny(tmp_path / "m", train, dev, epochs=1))
    assert model.predict_tokens([["John", "Smith", "visited", "Paris"]]) == [["O"] * 4]


def test_crlf_and_bom_files_train_and_score_like_plain_ones(tmp_path):
    sentences = make_sentences(30, seed=4)
    plain = write_corpus(tmp_path / "plain.txt", sentences)
    windows = write_corpus(tmp_path / "windows.txt", sentences, newline="\r\n", bom=True)
    assert read_sentences(windows) == read_sentences(plain)
    model = Tagger.load(train_tiny(tmp_path / "m", windows, windows, epochs=1))
    assert all(tag.isascii() and "\r" not in tag and "\ufeff" not in tag for tag in model.vocab.tags.items)
    assert commands.evaluate(tmp_path / "m", str(windows)) == commands.evaluate(tmp_path / "m", str(plain))


# -- bad input through the API ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BAD_CORPORA))
def test_bad_corpus_file_raises_a_user_error_naming_file_and_line(name, trained_model, tmp_path):
    path, options, fragments = bad_corpus(tmp_path, name)
    with pytest.raises(USER_ERRORS) as info:
        commands.evaluate(trained_model, str(path), tag_column=tag_column_option(options))
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_corpus_path_that_is_a_directory(tmp_path):
    with pytest.raises(CorpusError, match="is a directory"):
        read_sentences(tmp_path)


def test_check_tags_names_the_line_of_a_tag_that_fits_no_scheme(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("John B-PER\nSmith I-PER\n\nParis B-LOC\nis O\nnice B-\n")
    with pytest.raises(InputError) as info:
        check_tags(read_sentences(path), str(path))
    assert str(info.value).startswith(f"{path}:6: tag 'B-' fits no tagging scheme")


def test_a_prefix_without_a_type_is_refused_even_when_no_tag_has_a_type(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("John O\nruns O\n\nParis B-\n")
    with pytest.raises(InputError, match=f"^{path}:4: tag 'B-' fits no tagging scheme: a prefix without"):
        check_tags(read_sentences(path), str(path))


def test_entity_like_tags_with_an_unknown_prefix_are_plain_labels_with_one_warning(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("John X-PER\nruns O\n\nParis X-LOC\nis O\n")
    warnings = []
    assert check_tags(read_sentences(path), str(path), warn=warnings.append) is None
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {path}:1: tag 'X-PER' looks like an entity tag")


def test_a_bio_file_with_a_few_slips_is_iob2_with_one_warning_naming_the_first(tmp_path):
    sentences = [(["Anna", "Novak", "left", "Oslo"], ["B-PER", "I-PER", "O", "B-LOC"])] * 30
    slips = [(["she", "saw", "Rome"], ["O", "O", "I-LOC"]), (["Kim", "Lee", "came"], ["I-PER", "I-PER", "O"])]
    path = write_corpus(tmp_path / "slips.txt", sentences[:10] + slips + sentences[10:])
    warnings = []
    assert check_tags(read_sentences(path), str(path), warn=warnings.append) == "iob2"
    line = 10 * 5 + 3  # ten sentences of four lines and a blank, then the third token of the first slip
    assert warnings == [f"warning: {path}:{line}: 2 of 62 entities start with I- where IOB2 has B- (the first "
                        "here); the rest are IOB2, so the file is read as IOB2, each such I- starting an entity "
                        "(use --scheme to say otherwise)"]
    clean = write_corpus(tmp_path / "clean.txt", sentences)
    assert check_tags(read_sentences(clean), str(clean), warn=warnings.append) == "iob2" and len(warnings) == 1


def test_a_given_scheme_must_fit_the_tags(tmp_path):
    path = write_corpus(tmp_path / "c.txt", [(["John", "Smith", "left"], ["B-PER", "I-PER", "O"])])
    assert check_tags(read_sentences(path), str(path), "iob2") == "iob2"
    with pytest.raises(InputError, match=f"^{path}:1: tag 'B-PER' contradicts the IOB1 scheme"):  # issue 35, S7
        check_tags(read_sentences(path), str(path), "iob1")  # IOB1 opens an entity with I-: B- only after I-PER
    with pytest.raises(InputError, match=f"^{path}:2: tag 'I-PER' is not a tag of the BMES scheme"):
        check_tags(read_sentences(path), str(path), "bmes")


def test_plain_tags_are_not_mistaken_for_a_broken_scheme(tmp_path):
    path = tmp_path / "pos.txt"
    path.write_text("John NNP\nruns VBZ\n. .\n\nB-52 NNP\nflies VBZ\n")
    assert check_tags(read_sentences(path), str(path)) is None


def test_unseen_dev_label_is_a_warning_and_training_proceeds(corpus, tmp_path):
    dev = write_corpus(tmp_path / "dev_misc.txt", [(["John", "saw", "Europe", "."], ["B-PER", "O", "B-MISC", "O"])])
    messages = []

    class Collect:
        def start_epoch(self, epoch, sentences): ...
        def advance(self, sentences, loss): ...
        def end_epoch(self, metrics): ...
        def message(self, text): messages.append(text)

    result = commands.train(str(corpus["train"]), str(dev), tmp_path / "m", config_file=corpus["config"],
                        reporter=Collect())
    assert any(m.startswith(f"warning: {dev}: label(s) MISC never seen in training") for m in messages)
    assert result["epochs"] == 3
    assert (tmp_path / "m" / "model.safetensors").exists()


def test_unseen_test_label_is_reported_by_evaluate(trained_model, tmp_path, capsys):
    test = write_corpus(tmp_path / "t.txt", [(["John", "saw", "Europe", "."], ["B-PER", "O", "B-MISC", "O"])])
    scores = commands.evaluate(trained_model, str(test))
    assert scores["unseen_labels"] == ["MISC"]
    assert scores["per_type"]["MISC"]["recall"] == 0.0
    assert f"warning: {test}: label(s) MISC never seen in training" in capsys.readouterr().err


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_model_directory_raises_model_error(damage, model_copy):
    spoil, fragments = DAMAGES[damage]
    spoil(model_copy)
    with pytest.raises(ModelError) as info:
        Tagger.load(model_copy)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_model_path_that_does_not_exist_is_a_file_or_is_empty(tmp_path, corpus):
    with pytest.raises(ModelError, match="no such model directory"):
        Tagger.load(tmp_path / "nope")
    with pytest.raises(ModelError, match="not a model directory"):
        Tagger.load(corpus["train"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="lacks config.json, vocab.json, model.safetensors"):
        Tagger.load(tmp_path / "empty")


def test_output_that_exists_is_never_overwritten(trained_model, corpus, tmp_path):
    out = tmp_path / "taken.conll"
    out.write_text("precious\n")
    with pytest.raises(InputError, match="already exists"):
        commands.predict(trained_model, [str(corpus["test"])], "conll", "conll", out)
    with pytest.raises(InputError, match="already exists"):
        commands.convert(corpus["train"], out, "bioes")
    assert out.read_text() == "precious\n"
    taken = tmp_path / "taken_model"
    shutil.copytree(trained_model, taken)
    before = (taken / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match="not empty"):
        commands.train(str(corpus["train"]), str(corpus["dev"]), taken, config_file=corpus["config"])
    assert (taken / "model.safetensors").read_bytes() == before


# -- how sure the model is (scores, marginals, n-best) -----------------------------------------------------

SCORED_TEXT = "John Smith visited Paris . Angela Merkel works for Siemens AG in Berlin ."


def test_predict_with_scores_gives_each_entity_its_probability(model):
    plain, scored = model.predict(SCORED_TEXT), model.predict(SCORED_TEXT, scores=True)
    assert [{k: v for k, v in e.items() if k != "score"} for e in scored] == plain  # the same entities
    assert all(0.0 < e["score"] <= 1.0 for e in scored)


def test_an_entity_s_score_is_its_span_probability(model):
    tokens = ["John", "Smith", "visited", "Paris", "."]
    scored = model.predict(" ".join(tokens), scores=True)
    assert [(e["text"], e["label"]) for e in scored] == [("John Smith", "PER"), ("Paris", "LOC")]
    assert scored[0]["score"] == pytest.approx(model.span_probability(tokens, 0, 2, "PER"), abs=1e-12)
    assert scored[1]["score"] == pytest.approx(model.span_probability(tokens, 3, 4, "LOC"), abs=1e-12)
    # spans off the best path have probabilities too, smaller than the best path's entity they overlap
    assert model.span_probability(tokens, 0, 1, "PER") < scored[0]["score"]
    assert model.span_probability(tokens, 0, 5, "ORG") < 0.5


def test_min_score_keeps_only_the_entities_scored_at_least_that(model):
    scored = model.predict(SCORED_TEXT, scores=True)
    threshold = sorted(e["score"] for e in scored)[len(scored) // 2]
    assert model.predict(SCORED_TEXT, min_score=threshold) == [e for e in scored if e["score"] >= threshold]
    assert model.predict(SCORED_TEXT, min_score=0.0) == scored


def test_marginals_are_a_distribution_over_the_model_s_tags_per_token(model):
    sentences = [["John", "Smith", "visited", "Paris", "."], [], ["Berlin"]]
    found = model.marginals(sentences)
    assert [m.shape for m in found] == [(5, len(model.tags)), (0, len(model.tags)), (1, len(model.tags))]
    for m in found:
        np.testing.assert_allclose(m.sum(1), 1.0)
    best = [model.tags[k] for k in found[0].argmax(1)]
    assert model.to_source(best) == model.predict_tokens(sentences[:1])[0]  # a confident model: same tags
    assert model.tags[0] == "O" and "S-LOC" in model.tags  # the model's own scheme (BIOES)


def test_alternatives_start_with_the_best_path_and_are_exact_probabilities(model):
    alternatives = model.alternatives(SCORED_TEXT, 5)
    assert 1 < len(alternatives) <= 5
    assert alternatives[0]["entities"] == model.predict(SCORED_TEXT)
    probabilities = [a["probability"] for a in alternatives]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-9
    assert len({json.dumps(a["entities"]) for a in alternatives}) >= 2


def test_alternatives_of_several_sentences_multiply_their_probabilities(model):
    first, second = "John Smith visited Paris .", "Angela Merkel works for Siemens AG in Berlin ."
    joint = model.alternatives(f"{first} {second}", 3)
    p1, p2 = model.alternatives(first, 1)[0]["probability"], model.alternatives(second, 1)[0]["probability"]
    assert joint[0]["probability"] == pytest.approx(p1 * p2, rel=1e-6)  # float32 emissions vary with the batch
    assert model.alternatives("", 3) == [{"entities": [], "probability": 1.0}]


def test_joint_alternatives_are_the_k_best_products():
    from tagger.tagging.pipeline import joint_alternatives

    a = [([{"id": "a0"}], 0.6), ([{"id": "a1"}], 0.3)]
    b = [([{"id": "b0"}], 0.5), ([{"id": "b1"}], 0.45)]
    found = joint_alternatives([a, b], 3)
    assert [[e["id"] for e in x["entities"]] for x in found] == [["a0", "b0"], ["a0", "b1"], ["a1", "b0"]]
    assert [x["probability"] for x in found] == pytest.approx([0.3, 0.27, 0.15])


def test_a_temperature_in_the_config_changes_every_score(model_copy):
    from conftest import rewrite_config

    before = Tagger.load(model_copy)
    rewrite_config(model_copy, temperature=3.0)
    after = Tagger.load(model_copy)
    assert after.predict_tokens([["John", "Smith"]]) == before.predict_tokens([["John", "Smith"]])
    hot, cold = after.predict(SCORED_TEXT, scores=True), before.predict(SCORED_TEXT, scores=True)
    assert all(h["score"] < c["score"] for h, c in zip(hot, cold) if c["score"] > 0.5)  # less sure when hotter
    assert after.marginals([["Paris"]])[0].max() < before.marginals([["Paris"]])[0].max()


@pytest.mark.parametrize("args, fragment", [
    ((["John", "Smith"], 0, 3, "PER"), "not a span of a sentence of 2 tokens"),
    ((["John", "Smith"], 1, 1, "PER"), "not a span"),
    ((["John", "Smith"], 0, 1, "CITY"), "unknown label 'CITY' (one of LOC, ORG, PER)"),
    (("John Smith", 0, 1, "PER"), "one sentence as a list of tokens"),
])
def test_span_probability_refuses_what_is_no_span(model, args, fragment):
    with pytest.raises(TaggerError) as info:
        model.span_probability(*args)
    assert fragment in str(info.value)


def test_marginals_and_alternatives_refuse_the_wrong_input(model):
    with pytest.raises(TaggerError, match="marginals takes a list of sentences"):
        model.marginals(["John", "Smith"])
    with pytest.raises(TaggerError, match="k must be a whole number of at least 1, not 0"):
        model.alternatives("John", 0)
