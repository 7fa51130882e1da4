"""Scores: entity P/R/F1 as seqeval computes them in strict mode, whatever the scheme; token accuracy for POS."""
from __future__ import annotations

import pytest
from seqeval import metrics
from seqeval.scheme import IOB2

from conftest import make_sentences, write_corpus, write_toml
from tagger import commands
from tagger.reports.metrics import measure

GOLD = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]]
PRED = [["B-PER", "I-PER", "O", "B-LOC", "O"]]  # PER exact, LOC cut short: a boundary error


def test_one_exact_match_and_one_boundary_error():
    result = measure(GOLD, PRED, "iob2")
    # 2 gold entities, 2 predicted, 1 correct: P = 1/2, R = 1/2, F1 = 2PR/(P+R) = 1/2
    assert (result["precision"], result["recall"], result["f1"]) == (0.5, 0.5, 0.5)
    assert result["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert result["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["accuracy"] == 4 / 5 and result["tokens"] == 5 and result["sentences"] == 1


def test_figures_are_seqevals_strict_ones():
    gold = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-LOC", "I-LOC", "I-LOC", "O"], ["B-MISC", "O"]]
    pred = [["B-PER", "O", "O", "B-ORG"], ["O", "B-LOC", "I-LOC", "I-LOC", "O"], ["B-LOC", "O"]]
    # gold: PER ORG LOC MISC (4); pred: PER(0,1) ORG LOC LOC(0,1) (4); correct: ORG, LOC -> P = R = F1 = 1/2
    result = measure(gold, pred, "iob2")
    assert (result["precision"], result["recall"], result["f1"]) == (0.5, 0.5, 0.5)
    strict = dict(mode="strict", scheme=IOB2)
    assert result["f1"] == metrics.f1_score(gold, pred, **strict)
    assert result["precision"] == metrics.precision_score(gold, pred, **strict)


def test_unequal_precision_and_recall():
    gold = [["B-PER", "O", "B-LOC", "O", "B-ORG"]]
    pred = [["B-PER", "O", "O", "O", "O"]]
    result = measure(gold, pred, "iob2")  # 3 gold, 1 predicted, 1 correct
    assert result["precision"] == 1.0
    assert result["recall"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))  # 0.5


def test_iob1_is_read_as_iob1():
    # IOB1: I- opens a chunk after O; B- only separates two adjacent chunks of one type
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]]  # PER(0,2) LOC(3,4) LOC(4,5)
    pred = [["I-PER", "I-PER", "O", "I-LOC", "I-LOC"]]  # PER(0,2) LOC(3,5)
    result = measure(gold, pred, "iob1")
    # 3 gold, 2 predicted, 1 correct: P = 1/2, R = 1/3, F1 = 2 * (1/6) / (5/6) = 0.4
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx(0.4)
    assert measure(gold, gold, "iob1")["f1"] == 1.0


@pytest.mark.parametrize("scheme, gold, pred", [
    ("bioes", [["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]], [["B-PER", "E-PER", "O", "S-LOC", "O"]]),
    ("bilou", [["B-PER", "L-PER", "O", "B-LOC", "L-LOC"]], [["B-PER", "L-PER", "O", "U-LOC", "O"]]),
    ("bmes", [["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]], [["B-PER", "E-PER", "O", "S-LOC", "O"]]),
])
def test_every_scheme_gives_the_same_figures_for_the_same_spans(scheme, gold, pred):
    result = measure(gold, pred, scheme)
    assert (result["precision"], result["recall"], result["f1"]) == (0.5, 0.5, 0.5)


def test_plain_tags_are_scored_by_token():
    gold = [["NN", "VBZ", "DT"], ["NN"]]
    pred = [["NN", "NN", "DT"], ["NN"]]
    result = measure(gold, pred, None)
    assert result["accuracy"] == 0.75 and result["scored_as"] == "tokens"
    assert result["f1"] == pytest.approx(0.75)  # micro-averaged over tokens = accuracy
    assert result["per_type"]["NN"]["precision"] == pytest.approx(2 / 3)
    assert result["per_type"]["NN"]["recall"] == 1.0
    assert result["per_type"]["VBZ"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_no_entities_anywhere_scores_zero_without_crashing():
    result = measure([["O", "O"]], [["O", "O"]], "iob2")
    assert (result["precision"], result["recall"], result["f1"], result["accuracy"]) == (0, 0, 0, 1.0)


def test_lengths_must_agree():
    with pytest.raises(ValueError):
        measure([["O", "O"]], [["O"]], "iob2")
    with pytest.raises(ValueError):
        measure([["O"]], [["O"], ["O"]], "iob2")


def test_a_test_file_in_another_scheme_scores_the_same(trained_model, tmp_path):
    sents = make_sentences(15, seed=9)
    iob2 = commands.evaluate(trained_model, str(write_corpus(tmp_path / "iob2.txt", sents)))
    bioes = commands.evaluate(trained_model, str(write_corpus(tmp_path / "bioes.txt", sents, scheme="bioes")))
    bilou = commands.evaluate(trained_model, str(write_corpus(tmp_path / "bilou.txt", sents, scheme="bilou")))
    assert bioes == iob2 and bilou == iob2
    assert iob2["f1"] > 0.5


def test_the_api_evaluates_a_file_as_the_command_does(trained_model, tmp_path):
    from tagger.api import Tagger

    test = write_corpus(tmp_path / "test.txt", make_sentences(20, seed=9))
    tagger = Tagger.load(trained_model)
    assert tagger.evaluate(str(test)) == tagger.evaluate(test) == commands.evaluate(trained_model, str(test))


@pytest.mark.parametrize("given,fragment", [([], "no sentences to score"),
                                            ([["EU", "rejects"]], "item 0 is list"),
                                            (42, "not int")])
def test_what_evaluate_does_not_take_is_a_tagger_error_saying_what_it_takes(trained_model, given, fragment):
    from tagger.api import Tagger
    from tagger.errors import TaggerError

    with pytest.raises(TaggerError, match="evaluate takes labelled sentences") as caught:
        Tagger.load(trained_model).evaluate(given)
    assert fragment in str(caught.value)


def test_the_tag_column_a_model_was_trained_on_is_the_one_evaluate_reads(tmp_path):
    def columns(path, sentences):  # token, tag, then a column of noise (the last: not the tags)
        path.write_text("\n".join("".join(f"{t} {g} x{len(t)}\n" for t, g in zip(tokens, tags))
                                  for tokens, tags in sentences), encoding="utf-8")
        return str(path)

    sents = make_sentences(50, seed=3)
    train, dev, test = (columns(tmp_path / f"{name}.txt", part) for name, part in
                        (("train", sents[:30]), ("dev", sents[30:40]), ("test", sents[40:])))
    commands.train(train, dev, tmp_path / "m", config_file=write_toml(tmp_path / "tiny.toml", epochs=2),
                   tag_column=1)
    assert commands.evaluate(tmp_path / "m", test) == commands.evaluate(tmp_path / "m", test, tag_column=1)


def test_a_gzipped_test_file_scores_as_the_plain_one(trained_model, tmp_path):
    import gzip

    test = write_corpus(tmp_path / "test.txt", make_sentences(20, seed=9))
    packed = tmp_path / "test.txt.gz"
    packed.write_bytes(gzip.compress(test.read_bytes()))
    seen = []
    scores = commands.evaluate(trained_model, str(packed), progress=lambda n, tokens: seen.append(n))
    assert scores == commands.evaluate(trained_model, str(test)) and sum(seen) == 20
