"""The Label Studio ML backend (tagger/serving/labelstudio.py) as Label Studio calls it: health, setup,
predictions with exact scores sorted by uncertainty, annotations into a training file, warm-start training
swapped in after a dev check."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the [serve] extra (starlette) is not installed")
from starlette.testclient import TestClient  # noqa: E402

from conftest import make_sentences, write_corpus  # noqa: E402
from corpora import schemes  # noqa: E402
from corpora.conll import read_conll  # noqa: E402
from tagger import commands  # noqa: E402
from tagger.api import Tagger  # noqa: E402
from tagger.errors import ConfigError, TaggerError  # noqa: E402
from tagger.serving.server import Settings  # noqa: E402
from tagger.serving import labelstudio as LS  # noqa: E402
from tagger.tagging import selection  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """<View>
  <Labels name="ner" toName="doc">
    <Label value="PER" background="red"/><Label value="LOC"/><Label value="ANIMAL"/>
  </Labels>
  <Text name="doc" value="$sentence"/>
</View>"""
TEXTS = ["Angela Merkel visited Paris.", "Jacques Chirac met Angela Merkel in Berlin. It rained.", "hello"]


TOKEN = "s3cret-token"


@pytest.fixture
def dev(tmp_path):
    return write_corpus(tmp_path / "dev.txt", make_sentences(15, seed=21))


@pytest.fixture
def client(trained_model, tmp_path, dev):
    app = LS.create_app(trained_model, tmp_path / "work", dev, train=commands.train)
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


# -- annotations are checked whole before anything is stored -------------------------------------------------

TEXT = "Angela Merkel visited Paris."


def broken(change):
    body = annotation(3, TEXT, [("PER", 0, 13)])
    change(body, body["annotation"]["result"][0] if body["annotation"]["result"] else None)
    return body


BAD_ANNOTATIONS = {
    "task id a list": lambda b, r: b["task"].update(id=[1]),
    "task id a boolean": lambda b, r: b["task"].update(id=True),
    "text not a string": lambda b, r: b["task"].update(data={"sentence": 5}),
    "result a string": lambda b, r: b["annotation"].update(result="PER 0 13"),
    "region not an object": lambda b, r: b["annotation"].update(result=[3]),
    "region without start": lambda b, r: r["value"].pop("start"),
    "start a string": lambda b, r: r["value"].update(start="a"),
    "start a boolean": lambda b, r: r["value"].update(start=False),
    "start after end": lambda b, r: r["value"].update(start=13, end=2),
    "end past the text": lambda b, r: r["value"].update(end=99),
    "labels a number": lambda b, r: r["value"].update(labels=5),
    "a label with a space": lambda b, r: r["value"].update(labels=["B PER"]),
    "value a number": lambda b, r: r.update(value=3),
    "regions overlapping": lambda b, r: b["annotation"]["result"].append(
        {"type": "labels", "value": {"start": 7, "end": 21, "labels": ["LOC"]}}),
    "two regions on one token": lambda b, r: b["annotation"]["result"].extend(
        [{"type": "labels", "value": {"start": 22, "end": 24, "labels": ["LOC"]}},
         {"type": "labels", "value": {"start": 24, "end": 27, "labels": ["ORG"]}}]),
    "was_cancelled a string": lambda b, r: b["annotation"].update(was_cancelled="no"),
}


@pytest.mark.parametrize("name", BAD_ANNOTATIONS)
def test_a_bad_annotation_is_a_400_with_one_line_and_is_not_stored(client, tmp_path, name):
    answer = client.post("/labelstudio/webhook", json=broken(BAD_ANNOTATIONS[name]))
    assert answer.status_code == 400, answer.text
    assert "\n" not in answer.json()["error"]
    assert not (tmp_path / "work" / "annotations.jsonl").exists()
    good = client.post("/labelstudio/webhook", json=annotation(4, TEXT, [("PER", 0, 13)]))
    assert good.status_code == 201, good.text  # the webhook still works after it
    assert len((tmp_path / "work" / "annotations.jsonl").read_text(encoding="utf-8").splitlines()) == 1


def test_a_bad_line_already_in_annotations_jsonl_is_skipped_with_a_warning(client, tmp_path, caplog):
    work = tmp_path / "work"
    (work / "annotations.jsonl").write_text(
        '{"task": [1], "text": "ab", "spans": []}\nnot json\n'
        '{"task": 2, "text": "ab", "spans": [["PER", "a", 1]]}\n', encoding="utf-8")
    answer = client.post("/labelstudio/webhook", json=annotation(7, TEXT, [("PER", 0, 13)]))
    assert answer.status_code == 201 and answer.json()["training_sentences"] == 1
    assert [s.tags for s in read_conll(work / "train.txt")] == [("B-PER", "I-PER", "O", "O", "O")]
    assert [r.getMessage().split(": ")[0] for r in caplog.records if "skipped" in r.getMessage()] == \
        [f"{work / 'annotations.jsonl'}:{n}" for n in (1, 2, 3)]


# -- the door: the server's token, as a bearer token or HTTP Basic's password ------------------------------------

@pytest.fixture
def guarded(trained_model, tmp_path, dev):
    app = LS.create_app(trained_model, tmp_path / "work", dev, train=commands.train, settings=Settings(token=TOKEN))
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/labelstudio/health", None), ("GET", "/labelstudio/", None),
    ("POST", "/labelstudio/setup", {"schema": CONFIG}),
    ("POST", "/labelstudio/predict", {"tasks": tasks(), "label_config": CONFIG}),
    ("POST", "/labelstudio/webhook", {"action": "START_TRAINING"})])
def test_every_route_needs_the_token_as_a_bearer_or_as_basic_auths_password(guarded, method, path, body):
    def ask(**auth):
        return guarded.request(method, path, json=body, **auth)

    for refused in (ask(), ask(auth=("label-studio", "wrong")), ask(headers={"Authorization": "Bearer wrong"}),
                    ask(headers={"Authorization": "Basic %%%"}), ask(headers={"Authorization": f"Token {TOKEN}"})):
        assert refused.status_code == 401 and "\n" not in refused.json()["error"]
        assert refused.headers["connection"] == "close"  # its body was never read: the connection goes
    allowed = [ask(auth=("any-user", TOKEN)), ask(headers={"Authorization": f"Bearer {TOKEN}"})]
    assert all(a.status_code != 401 for a in allowed), [a.text for a in allowed]


def test_the_servers_own_routes_beside_it_keep_their_token(guarded):
    assert guarded.post("/v1/tag", json={"text": "Paris"}).status_code == 401
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert guarded.get("/health").status_code == 200  # as on the plain server: no token, nothing told


def test_a_backend_that_can_train_needs_a_token_beyond_loopback():
    LS.check_exposure("127.0.0.1", None, can_train=True)
    LS.check_exposure("::1", None, can_train=True)
    LS.check_exposure("0.0.0.0", TOKEN, can_train=True)
    LS.check_exposure("0.0.0.0", None, can_train=False)  # it only tags, as the plain server does
    for host in ("0.0.0.0", "::", "192.168.1.7", "tagger.example.org"):
        with pytest.raises(ConfigError, match="--token-file"):
            LS.check_exposure(host, None, can_train=True)


# -- one model for every route, swapped after a training --------------------------------------------------------

def copy_new_model(train_ref, dev_ref, output, *, init, extend_tags, force):
    """A stand-in for tagger.commands.train, run in the spawned process: the model NEW_MODEL names."""
    assert Path(train_ref).is_absolute() and Path(dev_ref).is_absolute() and Path(init).is_absolute()
    shutil.copytree(os.environ["NEW_MODEL"], output)


def all_person(trained_model, path):
    """The trained model with every token tagged B-PER, and a corpus it was trained on (F1 1.0 on it)."""
    tagger = Tagger.load(trained_model)
    bias = np.array(tagger.tensors["emissions.bias"], dtype=np.float32)
    bias[tagger.tags.index("S-PER")] += 1000.0  # the model tags in BIOES: a one-token PER
    meta = {**tagger.meta, "training": {**tagger.meta.get("training", {}), "train": "all-person.txt"}}
    Tagger(tagger.config, tagger.vocab, {**tagger.tensors, "emissions.bias": bias}, meta).save(path)
    return path


def test_after_a_training_every_route_answers_with_the_new_model(trained_model, tmp_path, monkeypatch):
    monkeypatch.setenv("NEW_MODEL", str(all_person(trained_model, tmp_path / "new")))
    dev = write_corpus(tmp_path / "dev.txt", [(s, ["B-PER"] * len(s)) for s, _ in make_sentences(10, seed=3)])
    app = LS.create_app(trained_model, tmp_path / "work", dev, train=copy_new_model)
    with TestClient(app) as c:
        assert c.post("/labelstudio/webhook", json=annotation(1, TEXT, [("PER", 0, 13)])).status_code == 201
        before = {"tag": c.post("/v1/tag", json={"text": TEXT}).json(), "info": c.get("/info").json(),
                  "ls": c.post("/labelstudio/predict", json={"tasks": tasks([TEXT]), "label_config": CONFIG}).json()}
        assert c.post("/labelstudio/webhook", json={"action": "START_TRAINING"}).status_code == 201
        app.state.labelstudio.join()
        assert c.get("/labelstudio/health").json()["training"]["state"] == "swapped"
        tagged = c.post("/v1/tag", json={"text": TEXT}).json()
        info = c.get("/info").json()
        ls = c.post("/labelstudio/predict", json={"tasks": tasks([TEXT]), "label_config": CONFIG}).json()
    assert [e["label"] for e in before["tag"]["entities"]] != ["PER"] * 5
    assert [e["label"] for e in tagged["entities"]] == ["PER"] * 5  # "Angela", "Merkel", "visited", "Paris", "."
    assert before["info"]["training_corpus"] != "all-person.txt" and info["training_corpus"] == "all-person.txt"
    assert [r["value"]["text"] for r in ls["results"][0]["result"]] == ["Angela", "Merkel", "visited", "Paris", "."]
    assert ls["model_version"] != before["ls"]["model_version"] and ls["model_version"].startswith("20")


def test_training_runs_the_library_in_a_process_of_its_own_from_relative_paths(trained_model, tmp_path,
                                                                                 monkeypatch):
    shutil.copytree(trained_model, tmp_path / "m1", ignore=shutil.ignore_patterns("checkpoint*"))
    write_corpus(tmp_path / "dev.txt", make_sentences(15, seed=21))
    monkeypatch.chdir(tmp_path)
    app = LS.create_app("m1", "work", "dev.txt", train=commands.train)  # resolved now, not where training runs
    monkeypatch.chdir(ROOT)
    with TestClient(app) as c:
        for i, (tokens, tags) in enumerate(make_sentences(30, seed=5)):
            text = " ".join(tokens)
            starts = np.cumsum([0] + [len(t) + 1 for t in tokens[:-1]]).tolist()
            spans = [(label, starts[s], starts[e - 1] + len(tokens[e - 1]))
                     for label, s, e in schemes.spans(tags, "iob2") if label in ("PER", "LOC")]
            assert c.post("/labelstudio/webhook", json=annotation(i, text, spans)).status_code == 201
        before = c.get("/labelstudio/health").json()["model_version"]
        started = c.post("/labelstudio/webhook", json={"action": "START_TRAINING"})
        assert started.status_code == 201 and started.json()["status"] == "training"
        assert c.post("/labelstudio/webhook", json={"action": "START_TRAINING"}).json()["status"] == "already training"
        app.state.labelstudio.join()
        state = c.get("/labelstudio/health").json()
    output = Path(state["training"]["output"])
    assert state["training"]["state"] in ("swapped", "kept"), state  # the dev check decides: either is right
    assert output.is_relative_to(tmp_path / "work") and Tagger.load(output).labels == Tagger.load(trained_model).labels
    assert (state["model_version"] != before) == (state["training"]["state"] == "swapped")


def test_a_failed_training_is_one_line_in_health(trained_model, tmp_path, dev):
    backend = LS.create_app(trained_model, tmp_path / "work", dev, train=commands.train).state.labelstudio
    (tmp_path / "work" / "train.txt").write_text("Paris B-LOC\nbad\n", encoding="utf-8")
    backend.start_training()
    backend.join()
    assert backend.training.state == "failed" and backend.training.message.startswith("error: ")
    assert "train.txt:2" in backend.training.message and "\n" not in backend.training.message


def test_the_dev_check_swaps_an_equal_model_in_and_keeps_the_current_one_over_a_worse(trained_model, tmp_path, dev):
    backend = LS.create_app(trained_model, tmp_path / "work", dev).state.labelstudio
    same = tmp_path / "same"
    shutil.copytree(trained_model, same, ignore=shutil.ignore_patterns("checkpoint*"))
    backend.consider(same)
    assert backend.training.state == "swapped" and backend.version(backend.tagger).startswith("same-")
    worse = tmp_path / "worse"
    tagger = Tagger.load(trained_model)
    bias = np.array(tagger.tensors["emissions.bias"], dtype=np.float32)
    bias[tagger.tags.index("O")] += 1000.0  # every token O: no entity found
    Tagger(tagger.config, tagger.vocab, {**tagger.tensors, "emissions.bias": bias}, tagger.meta).save(worse)
    backend.consider(worse)
    assert backend.training.state == "kept" and backend.version(backend.tagger).startswith("same-")
    assert json.loads(json.dumps(backend.health()))["training"]["state"] == "kept"


def test_without_a_training_function_or_a_dev_set_the_backend_only_tags(trained_model, tmp_path):
    with TestClient(LS.create_app(trained_model, tmp_path / "work")) as c:
        assert c.post("/labelstudio/webhook", json=annotation(1, TEXT, [("PER", 0, 13)])).status_code == 201
        answer = c.post("/labelstudio/webhook", json={"action": "START_TRAINING"})
    assert answer.status_code == 400 and "cannot train" in answer.json()["error"]


# -- predictions are tagged in the engine's thread ----------------------------------------------------------------

def test_health_answers_while_a_large_predict_is_being_tagged(client, monkeypatch):
    started, release, answers = threading.Event(), threading.Event(), {}
    real = LS.selection.text_uncertainties

    def held(*args, **kwargs):  # the engine's work on the predict, held until /health has been asked
        started.set()
        release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(LS.selection, "text_uncertainties", held)
    many = tasks(TEXTS * 300)
    predict = threading.Thread(target=lambda: answers.update(predict=client.post(
        "/labelstudio/predict", json={"tasks": many, "label_config": CONFIG})))
    predict.start()
    assert started.wait(120)
    health = threading.Thread(target=lambda: answers.update(health=client.get("/health")))
    health.start()
    health.join(60)  # on the event loop, /health would wait for `release`, which only comes after
    answered_meanwhile = "health" in answers
    release.set()
    predict.join()
    health.join()
    assert answered_meanwhile and answers["health"].status_code == 200
    assert answers["predict"].status_code == 200 and len(answers["predict"].json()["results"]) == len(many)


def test_a_predict_past_the_servers_token_limit_is_a_413(trained_model, tmp_path):
    app = LS.create_app(trained_model, tmp_path / "work", settings=Settings(max_request_tokens=20))
    with TestClient(app) as c:
        answer = c.post("/labelstudio/predict", json={"tasks": tasks(TEXTS * 3), "label_config": CONFIG})
        assert c.post("/v1/tag", json={"text": TEXTS[0]}).status_code == 200  # the engine goes on
    assert answer.status_code == 413 and "--max-request-tokens" in answer.json()["error"]


# -- the door: `tagger serve MODEL --label-studio WORKDIR [--dev DEV]` --------------------------------------------

def test_tagger_serve_mounts_the_backend_behind_the_token(trained_model, tmp_path, dev):
    from test_server import Server

    (tmp_path / "token").write_text(TOKEN, encoding="utf-8")
    server = Server(trained_model, "--label-studio", str(tmp_path / "work"), "--dev", str(dev),
                    "--token-file", str(tmp_path / "token"))
    try:
        assert server.client.get("/labelstudio/health").status_code == 401
        assert server.client.post("/labelstudio/webhook", json={"action": "START_TRAINING"}).status_code == 401
        health = server.client.get("/labelstudio/health", auth=("label-studio", TOKEN))
        assert health.status_code == 200 and health.json()["training"]["state"] == "idle"
        predicted = server.client.post("/labelstudio/predict", auth=("label-studio", TOKEN),
                                       json={"tasks": tasks(), "label_config": CONFIG})
        assert predicted.status_code == 200 and len(predicted.json()["results"]) == len(TEXTS)
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("options,fragment", [
    (["--host", "0.0.0.0"], "--token-file"),
    (["--workers", "2"], "one worker"),
    (["--ray"], "one worker"),
])
def test_tagger_serve_refuses_a_backend_it_cannot_keep_in_one_line(trained_model, tmp_path, dev, options, fragment):
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["serve", str(trained_model), "--label-studio", str(tmp_path / "work"),
                                      "--dev", str(dev), *options])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    alone = CliRunner().invoke(app, ["serve", str(trained_model), "--dev", str(dev)])
    assert alone.exit_code == 1 and "--dev goes with --label-studio" in alone.stderr


def wait_forever(train_ref, dev_ref, output):
    """A training that starts (it writes `output`) and never ends (run in the spawned process)."""
    Path(output).write_text(str(os.getpid()), encoding="utf-8")
    threading.Event().wait()


def test_a_training_process_ends_with_the_server_even_when_it_leaves_by_os_exit(tmp_path):
    script = ("import os, sys, time; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
              "from tagger.serving import labelstudio_training\nfrom test_labelstudio import wait_forever\n"
              "running = labelstudio_training.spawn(wait_forever, 'train.txt', 'dev.txt', sys.argv[3])\n"
              "while not os.path.exists(sys.argv[3]): time.sleep(0.05)\n"
              "os._exit(0)  # as tagger serve ends: no atexit clean-up of daemonic children\n")
    marker = tmp_path / "started"
    subprocess.run([sys.executable, "-c", script, str(ROOT / "tests"), str(ROOT), str(marker)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300)
    child = int(marker.read_text(encoding="utf-8"))  # the training had started
    try:
        deadline = time.monotonic() + 120  # a guard against hanging, not a timing: it leaves at once
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
