"""The Label Studio ML backend (tagger/serving/labelstudio.py) as Label Studio calls it: health, setup,
predictions with exact scores sorted by uncertainty, annotations into a training file, warm-start training
swapped in after a dev check."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the [serve] extra (starlette) is not installed")
from starlette.testclient import TestClient  # noqa: E402

from conftest import make_sentences, write_corpus  # noqa: E402
from corpora import schemes  # noqa: E402
from corpora.conll import read_conll  # noqa: E402
from tagger.api import Tagger  # noqa: E402
from tagger.errors import TaggerError  # noqa: E402
from tagger.serving import labelstudio as LS  # noqa: E402
from tagger.tagging import selection  # noqa: E402

CONFIG = """<View>
  <Labels name="ner" toName="doc">
    <Label value="PER" background="red"/><Label value="LOC"/><Label value="ANIMAL"/>
  </Labels>
  <Text name="doc" value="$sentence"/>
</View>"""
TEXTS = ["Angela Merkel visited Paris.", "Jacques Chirac met Angela Merkel in Berlin. It rained.", "hello"]


@pytest.fixture
def client(trained_model, tmp_path):
    dev = write_corpus(tmp_path / "dev.txt", make_sentences(15, seed=21))
    app = LS.create_app(trained_model, tmp_path / "work", dev)
    with TestClient(app) as c:
        yield c


def tasks(texts=TEXTS):
    return [{"id": i + 1, "data": {"sentence": t}} for i, t in enumerate(texts)]


def test_the_label_config_names_come_from_the_xml():
    config = LS.parse_label_config(CONFIG)
    assert config == LS.LabelConfig("ner", "doc", "sentence", ("PER", "LOC", "ANIMAL"))
    with pytest.raises(TaggerError, match="not XML"):
        LS.parse_label_config("<View><Labels")
    with pytest.raises(TaggerError, match="no <Labels"):
        LS.parse_label_config('<View><Choices name="c" toName="t"/><Text name="t" value="$x"/></View>')


def test_health_and_setup_report_the_version_and_the_labels_the_model_lacks(client):
    health = client.get("/labelstudio/health")
    assert health.status_code == 200 and health.json()["status"] == "UP"
    version = health.json()["model_version"]
    setup = client.post("/labelstudio/setup", json={"project": "1.1700000000", "schema": CONFIG})
    assert setup.status_code == 200
    assert setup.json()["model_version"] == version
    assert setup.json()["unknown_labels"] == ["ANIMAL"]  # reported, never predicted
    assert setup.json()["unused_model_labels"] == ["ORG"]  # the model finds them, the config has no place


def test_predict_answers_regions_with_offsets_and_exact_scores_and_the_task_uncertainty(client, trained_model):
    answer = client.post("/labelstudio/predict", json={"tasks": tasks(), "label_config": CONFIG})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    tagger = Tagger.load(trained_model)
    expected = selection.text_uncertainties(tagger, TEXTS, "least-confidence")
    assert len(body["results"]) == len(TEXTS)
    for text, prediction, u in zip(TEXTS, body["results"], expected):
        assert prediction["model_version"] == body["model_version"]
        assert prediction["score"] == pytest.approx(u.score("least-confidence"))
        assert prediction["unknown_labels"] == ["ANIMAL"]
        found = {(e["start"], e["end"], e["label"]): e["score"] for e in tagger.predict(text, scores=True)
                 if e["label"] in ("PER", "LOC")}
        regions = {(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]): r for r in prediction["result"]}
        assert regions.keys() == found.keys()  # ORG entities are left out: the config has no ORG
        for (start, end, _), region in regions.items():
            assert region["from_name"] == "ner" and region["to_name"] == "doc" and region["type"] == "labels"
            assert region["value"]["text"] == text[start:end]
            assert region["score"] == pytest.approx(found[(start, end, region["value"]["labels"][0])])


@pytest.mark.parametrize("body,fragment", [
    ({"tasks": "nope", "label_config": CONFIG}, "'tasks' must be a list"),
    ({"tasks": [{"id": 1, "data": {"text": "x"}}], "label_config": CONFIG}, "data.sentence"),
    ({"tasks": [], "label_config": "<View"}, "not XML"),
    ([1, 2], "JSON object"),
])
def test_bad_predict_requests_are_a_400_with_one_line(client, body, fragment):
    answer = client.post("/labelstudio/predict", json=body)
    assert answer.status_code == 400
    assert fragment in answer.json()["error"] and "\n" not in answer.json()["error"]


def annotation(task_id, text, spans, annotation_id=1):
    return {"action": "ANNOTATION_CREATED", "project": {"id": 1, "label_config": CONFIG},
            "task": {"id": task_id, "data": {"sentence": text}},
            "annotation": {"id": annotation_id, "result": [
                {"from_name": "ner", "to_name": "doc", "type": "labels",
                 "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}} for label, s, e in spans]}}


def test_annotations_become_the_training_file_the_latest_per_task(client, tmp_path):
    text = "Angela Merkel visited Paris."
    first = client.post("/labelstudio/webhook", json=annotation(7, text, [("PER", 0, 13)]))
    assert first.status_code == 201, first.text
    again = annotation(7, text, [("PER", 0, 13), ("LOC", 22, 27)], annotation_id=2)
    again["action"] = "ANNOTATION_UPDATED"
    assert client.post("/labelstudio/webhook", json=again).status_code == 201
    work = tmp_path / "work"
    assert len((work / "annotations.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    sentences = list(read_conll(work / "train.txt"))
    assert [(s.tokens, s.tags) for s in sentences] == [
        (("Angela", "Merkel", "visited", "Paris", "."), ("B-PER", "I-PER", "O", "B-LOC", "O"))]
    outside = annotation(8, text, [("PER", 20, 99)])
    answer = client.post("/labelstudio/webhook", json=outside)
    assert answer.status_code == 400 and "outside the task's text" in answer.json()["error"]
    assert client.post("/labelstudio/webhook", json={"action": "PROJECT_UPDATED"}).json()["status"] == "ignored"


def test_training_without_annotations_is_refused(client):
    answer = client.post("/labelstudio/webhook", json={"action": "START_TRAINING"})
    assert answer.status_code == 400 and "no annotations" in answer.json()["error"]


def test_start_training_warm_starts_in_the_background_and_swaps_the_model_in(client):
    for i, (tokens, tags) in enumerate(make_sentences(30, seed=5)):
        text = " ".join(tokens)
        starts = np.cumsum([0] + [len(t) + 1 for t in tokens[:-1]]).tolist()
        spans = []
        for label, s, e in schemes.spans(tags, "iob2"):
            if label in ("PER", "LOC"):
                spans.append((label, starts[s], starts[e - 1] + len(tokens[e - 1])))
        assert client.post("/labelstudio/webhook", json=annotation(i, text, spans)).status_code == 201
    before = client.get("/labelstudio/health").json()["model_version"]
    started = client.post("/labelstudio/webhook", json={"action": "START_TRAINING"})
    assert started.status_code == 201 and started.json()["status"] == "training"
    deadline = time.time() + 180
    while (state := client.get("/labelstudio/health").json())["training"]["state"] == "running":
        assert time.time() < deadline, "the training did not end"
        time.sleep(0.5)
    assert state["training"]["state"] in ("swapped", "kept"), state
    after = state["model_version"]
    assert (after != before) == (state["training"]["state"] == "swapped")
    predicted = client.post("/labelstudio/predict", json={"tasks": tasks(), "label_config": CONFIG}).json()
    assert predicted["model_version"] == after


class Done:
    """A finished training process, as `_finish` waits for it."""

    returncode = 0

    def communicate(self):
        return "", ""


def test_the_dev_check_swaps_an_equal_model_in_and_keeps_the_current_one_over_a_worse(trained_model, tmp_path):
    dev = write_corpus(tmp_path / "dev.txt", make_sentences(15, seed=21))
    backend = LS.Backend(trained_model, tmp_path / "work", dev)
    same = tmp_path / "same"
    shutil.copytree(trained_model, same, ignore=shutil.ignore_patterns("checkpoint*"))
    backend._finish(Done(), same)
    assert backend.training.state == "swapped" and backend.version.startswith("same-")
    worse = tmp_path / "worse"
    tagger = Tagger.load(trained_model)
    bias = np.array(tagger.tensors["emissions.bias"], dtype=np.float32)
    bias[tagger.tags.index("O")] += 1000.0  # every token O: no entity found
    Tagger(tagger.config, tagger.vocab, {**tagger.tensors, "emissions.bias": bias}, tagger.meta).save(worse)
    backend._finish(Done(), worse)
    assert backend.training.state == "kept" and backend.version.startswith("same-")
    assert json.loads(json.dumps(backend.health()))["training"]["state"] == "kept"


def test_uvicorns_factory_reads_the_backend_from_the_environment(trained_model, tmp_path, monkeypatch):
    monkeypatch.setenv(LS.ENV, json.dumps({"model": str(trained_model), "workdir": str(tmp_path / "w"),
                                           "strategy": "entropy"}))
    with TestClient(LS.app_from_env()) as c:
        assert c.get("/labelstudio/health").json()["status"] == "UP"
        answer = c.post("/labelstudio/predict", json={"tasks": tasks(TEXTS[:1]), "label_config": CONFIG}).json()
        assert answer["results"][0]["strategy"] == "entropy"
        assert c.post("/v1/tag", json={"text": TEXTS[0]}).status_code == 200  # the server's own routes beside
