"""The spaCy component, in a real `spacy.blank("en")` pipeline (no downloaded model): found by name through
the `spacy_factories` entry point, doc.ents and doc.spans["sc"] with exact scores, nlp.pipe in the tagger's
batches, the policy where spaCy's tokens and the tagger's disagree, nlp.to_disk / spacy.load."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

spacy = pytest.importorskip("spacy")

from tagger import Tagger  # noqa: E402
from tagger.errors import ConfigError, ModelError  # noqa: E402
from tagger.serving.spacy_pipe import to_spans  # noqa: E402

TEXTS = ["yesterday John Smith met Mary in Paris.", "Siemens AG hired Anna.", "", "it rained all day.",
         "shares of Acme Corp fell. Peter Brown visited London."]


def pipeline(model, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_tagger", config={"model": str(model), **config})
    return nlp


def entities(doc) -> list[tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def test_the_factory_is_found_by_name_without_importing_tagger(trained_model):
    """A fresh interpreter that imports only spaCy: the entry point brings the factory in."""
    code = ("import spacy, sys; nlp = spacy.blank('en'); "
            f"nlp.add_pipe('bilstm_tagger', config={{'model': {str(trained_model)!r}}}); "
            "print([(e.text, e.label_) for e in nlp('yesterday John Smith met Mary in Paris.').ents])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parents[1])
    assert run.returncode == 0, run.stderr
    assert "('John Smith', 'PER')" in run.stdout


def test_doc_ents_are_the_entities_tagger_predict_finds(trained_model):
    nlp, tagger = pipeline(trained_model), Tagger.load(trained_model)
    for text in TEXTS:
        found = [(e["start"], e["end"], e["label"]) for e in tagger.predict(text)]
        assert entities(nlp(text)) == found
    assert nlp.get_pipe("bilstm_tagger").labels == ("LOC", "ORG", "PER")


def test_spans_carry_exact_probabilities_as_spancat_stores_scores(trained_model):
    doc = pipeline(trained_model)(TEXTS[0])
    group = doc.spans["sc"]
    expected = Tagger.load(trained_model).predict(TEXTS[0], scores=True)
    assert [(s.start_char, s.end_char, s.label_) for s in group] == entities(doc)
    assert isinstance(group.attrs["scores"], np.ndarray)  # spancat: spans.attrs["scores"] = numpy.array(...)
    np.testing.assert_allclose(group.attrs["scores"], [e["score"] for e in expected], rtol=1e-6)
    assert doc.to_bytes()  # a doc with its span group serialises


def test_spans_key_and_no_scores(trained_model):
    assert "ner_scores" in pipeline(trained_model, spans_key="ner_scores")(TEXTS[0]).spans
    doc = pipeline(trained_model, scores=False)(TEXTS[0])
    assert "sc" not in doc.spans and len(doc.ents) > 0


def test_nlp_pipe_tags_each_batch_in_one_predict_call(trained_model, monkeypatch):
    calls, real = [], Tagger.predict

    def predict(self, texts, **options):
        calls.append(len(texts))
        return real(self, texts, **options)

    monkeypatch.setattr(Tagger, "predict", predict)
    nlp = pipeline(trained_model)
    docs = list(nlp.pipe(TEXTS, batch_size=2))
    assert calls == [2, 2, 1]
    tagger = Tagger.load(trained_model)
    assert [entities(d) for d in docs] == [[(e["start"], e["end"], e["label"]) for e in tagger.predict(t)]
                                           for t in TEXTS]



def test_the_engine_batches_as_many_sentences_as_engine_batch_size_says(trained_model, monkeypatch):
    sizes, real = [], Tagger.predict

    def predict(self, texts, **options):
        sizes.append(options["batch_size"])
        return real(self, texts, **options)

    monkeypatch.setattr(Tagger, "predict", predict)
    list(pipeline(trained_model).pipe(TEXTS))
    list(pipeline(trained_model, engine_batch_size=2).pipe(TEXTS))
    assert sizes == [128, 2]  # the default (half tagger predict's: see spacy_pipe's docstring), then the configured one


@pytest.mark.parametrize("mode", ["strict", "contract", "expand"])
def test_each_token_is_annotated_as_doc_ents_would_set_it(trained_model, mode):
    """The component sets entities with doc.set_ents (doc.ents's setter makes every span twice): tokens,
    entities and span groups are what `doc.ents = spans` gives, for every alignment mode."""
    tagger, nlp = Tagger.load(trained_model), pipeline(trained_model, alignment_mode=mode)
    for text in [*TEXTS, MISALIGNED]:
        expected = spacy.blank("en").make_doc(text)
        spans, scores = to_spans(expected, tagger.predict(text, scores=True), mode)
        expected.ents = spans
        doc = nlp(text)
        assert [(t.ent_iob_, t.ent_type_) for t in doc] == [(t.ent_iob_, t.ent_type_) for t in expected]
        assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == [(s.start, s.end, s.label_) for s in spans]
        np.testing.assert_allclose(doc.spans["sc"].attrs["scores"], np.array(scores, dtype="float32"))


def test_an_entity_without_a_score_gets_nan_in_the_span_group():
    doc = spacy.blank("en").make_doc(MISALIGNED)
    spans, scores = to_spans(doc, [{k: v for k, v in e.items() if k != "score"} for e in FOUND], "contract")
    assert scores == [None, None] and np.isnan(np.array(scores, dtype="float32")).all()

# -- when spaCy's tokens and the tagger's disagree ---------------------------------------------------------
# The tagger's tokeniser keeps "@" apart from a handle and splits "Paris;Berlin" and "P.S.Paris"; spaCy keeps
# each as one token, so an entity the tagger finds there ends inside a spaCy token.

MISALIGNED = "Visit @Paris_FR Tourism or Paris;Berlin, P.S.Paris and London."
FOUND = [  # what a model could find, by the tagger's tokens (character offsets)
    {"start": 7, "end": 23, "label": "ORG", "score": 0.9},   # "Paris_FR Tourism": from inside "@Paris_FR"
    {"start": 27, "end": 32, "label": "LOC", "score": 0.8},  # "Paris" of "Paris;Berlin"
    {"start": 33, "end": 39, "label": "LOC", "score": 0.7},  # "Berlin" of "Paris;Berlin"
    {"start": 45, "end": 50, "label": "LOC", "score": 0.6},  # "Paris" of "P.S.Paris"
    {"start": 55, "end": 61, "label": "LOC", "score": 0.95},  # "London": aligned
]


def test_the_misaligned_text_is_what_the_cases_say():
    assert [MISALIGNED[e["start"]:e["end"]] for e in FOUND] == ["Paris_FR Tourism", "Paris", "Berlin", "Paris",
                                                                 "London"]
    tokens = [t.text for t in spacy.blank("en").make_doc(MISALIGNED)]
    assert {"@Paris_FR", "Paris;Berlin", "P.S.Paris"} <= set(tokens)


@pytest.mark.parametrize("mode, kept, scores, counts", [
    ("contract", ["Tourism", "London"], [0.9, 0.95], {"exact": 1, "contracted": 1, "dropped": 3}),
    ("expand", ["@Paris_FR Tourism", "Paris;Berlin", "P.S.Paris", "London"], [0.9, 0.8, 0.6, 0.95],
     {"exact": 1, "expanded": 3, "dropped": 1}),  # "Berlin" expanded is "Paris;Berlin" again: dropped
    ("strict", ["London"], [0.95], {"exact": 1, "dropped": 4}),
])
def test_alignment_policy_and_its_counts(mode, kept, scores, counts):
    doc = spacy.blank("en").make_doc(MISALIGNED)
    counted = Counter()
    spans, probabilities = to_spans(doc, FOUND, mode, counted)
    assert [s.text for s in spans] == kept and probabilities == scores
    assert +counted == counts
    doc.ents = spans  # never overlapping: spaCy accepts them


def test_the_component_counts_alignment_cases(trained_model):
    nlp = pipeline(trained_model)
    docs = list(nlp.pipe(TEXTS))
    component = nlp.get_pipe("bilstm_tagger")
    found = sum(len(Tagger.load(trained_model).predict(t)) for t in TEXTS)
    assert component.alignment["exact"] == found == sum(len(d.ents) for d in docs)
    assert component.alignment["dropped"] == component.alignment["contracted"] == 0


# -- saving and loading the pipeline -----------------------------------------------------------------------

def test_to_disk_copies_the_model_and_spacy_load_needs_only_the_copy(model_copy, tmp_path):
    nlp = pipeline(model_copy)
    before = [entities(d) for d in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "pipeline")
    saved = tmp_path / "pipeline" / "bilstm_tagger"
    assert {"config.json", "vocab.json", "model.safetensors"} <= {p.name for p in saved.iterdir()}
    shutil.rmtree(model_copy)  # the directory the config names is gone
    loaded = spacy.load(tmp_path / "pipeline")
    assert [entities(d) for d in loaded.pipe(TEXTS)] == before
    loaded.to_disk(tmp_path / "again")  # and saves again from its copy
    assert (tmp_path / "again" / "bilstm_tagger" / "model.safetensors").read_bytes() == \
        (saved / "model.safetensors").read_bytes()


def test_a_damaged_copy_is_refused_on_load(trained_model, tmp_path):
    pipeline(trained_model).to_disk(tmp_path / "pipeline")
    weights = tmp_path / "pipeline" / "bilstm_tagger" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelError, match="checksum"):
        spacy.load(tmp_path / "pipeline")


# -- mistakes ---------------------------------------------------------------------------------------------

def test_a_missing_model_is_one_error_naming_it(tmp_path):
    nlp = pipeline(tmp_path / "nope")
    with pytest.raises(ModelError, match="no such model directory") as error:
        nlp("John Smith visited Paris.")
    assert str(tmp_path / "nope") in str(error.value)


def test_an_unknown_alignment_mode_is_refused(trained_model):
    with pytest.raises(ConfigError, match="alignment_mode 'loose'"):
        pipeline(trained_model, alignment_mode="loose")


@pytest.mark.parametrize("size", [0, -3])
def test_an_engine_batch_size_that_is_not_a_count_is_refused(trained_model, size):
    with pytest.raises(ConfigError, match="engine_batch_size"):
        pipeline(trained_model, engine_batch_size=size)


def test_a_model_of_plain_tags_is_refused(tmp_path):
    from conftest import train_tiny, write_corpus

    pos = [(["John", "runs"], ["NNP", "VBZ"]), (["Mary", "sleeps"], ["NNP", "VBZ"])] * 5
    model = train_tiny(tmp_path / "pos", write_corpus(tmp_path / "pos.txt", pos),
                       write_corpus(tmp_path / "pos-dev.txt", pos[:2]), epochs=1)
    with pytest.raises(ModelError, match="not entities"):
        pipeline(model)("John runs")
