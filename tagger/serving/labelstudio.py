"""A Label Studio ML backend on the tagger's HTTP server (tagger/serving/server.py): pre-annotated tasks
sorted by how unsure the model is, annotations collected for training, and warm-start retraining.

Label Studio calls, under the URL it is given (e.g. http://host:9090/labelstudio, see `mount`):
  GET  /health   {"status": "UP", "model_version", "training": the last training's state}
  POST /setup    {"project", "schema": the labelling config XML, ...} -> {"model_version"}, and any labels
                 of the config the model does not know ("unknown_labels") or of the model the config lacks
  POST /predict  {"tasks": [...], "label_config": XML} -> {"results": [one prediction per task], "model_version"}:
                 each prediction {"result": regions, "score", "model_version"}; a region is
                 {"from_name", "to_name", "type": "labels", "value": {"start", "end", "text", "labels"}, "score"}
                 with character offsets into the task's text and score = P(exactly this entity | text), exact
                 under the CRF; the prediction's score is the task's uncertainty (`strategy`, by default least
                 confidence, 1 - P(best analysis)), so the Data Manager sorts the tasks by it.
  POST /webhook  {"action": "ANNOTATION_CREATED" | "ANNOTATION_UPDATED", "task", "annotation"}: the annotation
                 is appended to annotations.jsonl in the work directory and train.txt (CoNLL, the latest
                 annotation of each task, in the model's training scheme) is written again.
                 {"action": "START_TRAINING"}: `tagger train train.txt --dev DEV --init MODEL` runs in a
                 background process; when it ends, the new model is swapped in if its dev F1 is at least
                 the current model's, and model_version changes. Other actions are acknowledged and ignored.

from_name, to_name, the text's data key and the labels come from the labelling config (<Labels name toName>
with <Label value>, and the <Text name value="$key"> it points to), never from the model. A label the model
does not know is reported (in /setup's answer and each prediction's "unknown_labels"), never predicted; an
entity of a type the config lacks is left out of the regions. Errors are a 4xx with a one-line JSON body.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from corpora import schemes
from corpora.conll import Sentence
from corpora.conll_writer import format_sentence
from tagger import store
from tagger.errors import TaggerError
from tagger.tagging import pipeline, selection
from tagger.tagging.confidence import ScoreOptions
from tagger.serving.bodies import HTTPError, read_json
from tagger.tagging.tagger import Tagger
from tagger.text import sentence_ends

ANNOTATIONS, TRAIN = "annotations.jsonl", "train.txt"


@dataclass(frozen=True)
class LabelConfig:
    """What a labelling config says about named entities: the Labels control's name (from_name), the Text
    object's name (to_name), the task data key holding the text, and the labels offered."""

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]


def parse_label_config(xml: str) -> LabelConfig:
    """The first <Labels> whose toName is a <Text>; TaggerError (a 400 for the caller) when there is none."""
    if not isinstance(xml, str) or not xml.strip():
        raise TaggerError("no labelling config (label_config / schema)")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise TaggerError(f"the labelling config is not XML ({e})") from None
    texts = {t.get("name"): t.get("value", "") for t in root.iter() if t.tag in ("Text", "HyperText")}
    for labels in root.iter("Labels"):
        target = labels.get("toName", "")
        if labels.get("name") and target in texts:
            values = tuple(x.get("value") for x in labels.iter("Label") if x.get("value"))
            return LabelConfig(labels.get("name"), target, texts[target].lstrip("$"), values)
    raise TaggerError("the labelling config has no <Labels name=... toName=...> pointing at a <Text>")


@dataclass
class Training:
    """The last warm-start training: its state (idle, running, swapped, kept, failed), the output directory
    and a one-line message."""

    state: str = "idle"
    output: str | None = None
    message: str = ""
    started: float = 0.0


@dataclass
class Backend:
    """The model Label Studio talks to, its work directory (annotations, training file, new models) and dev
    set (for training and its check). `strategy`: the task score (tagger/tagging/selection.py)."""

    model: Path
    workdir: Path
    dev: Path | None = None
    strategy: str = "least-confidence"
    extend_tags: bool = False
    tagger: Tagger = field(init=False)
    version: str = field(init=False)
    training: Training = field(default_factory=Training)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        selection.check(1, self.strategy)
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._load(Path(self.model))

    def _load(self, model: Path) -> None:
        self.tagger, self.model = Tagger.load(model), model
        weights = self.tagger.meta.get("sha256", {}).get("model.safetensors", "")
        self.version = f"{model.name}-{weights[:8]}"

    # -- what the endpoints do --------------------------------------------------------------------------------

    def health(self) -> dict:
        t = self.training
        return {"status": "UP", "model_version": self.version,
                "training": {"state": t.state, "output": t.output, "message": t.message}}

    def setup(self, body: dict) -> dict:
        answer = {"model_version": self.version}
        if body.get("schema"):
            answer |= self._label_report(parse_label_config(body["schema"]))
        return answer

    def _label_report(self, config: LabelConfig) -> dict:
        """The config's labels the model lacks, and the model's entity types the config lacks (never shown)."""
        known = set(self.tagger.entity_types)
        return {"unknown_labels": [x for x in config.labels if x not in known],
                "unused_model_labels": [x for x in self.tagger.entity_types if x not in config.labels]}

    def predict(self, body: dict) -> dict:
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise TaggerError("'tasks' must be a list of Label Studio tasks")
        config = parse_label_config(body.get("label_config") or body.get("schema") or "")
        texts = [_task_text(task, config.data_key) for task in tasks]
        tagger = self.tagger  # one model for the whole request, even if a training swaps it meanwhile
        version = self.version
        report = self._label_report(config)
        tagged = list(pipeline.tag_texts(tagger, texts, ScoreOptions(scores=True)))
        uncertainty = selection.text_uncertainties(tagger, texts, self.strategy)
        shown = set(config.labels)
        results = []
        for t, u in zip(tagged, uncertainty):
            regions = [{"from_name": config.from_name, "to_name": config.to_name, "type": "labels",
                        "value": {"start": e["start"], "end": e["end"], "text": e["text"], "labels": [e["label"]]},
                        "score": e["score"]} for e in t.entities if e["label"] in shown]
            results.append({"result": regions, "score": u.score(self.strategy), "model_version": version,
                            "strategy": self.strategy, **({"unknown_labels": report["unknown_labels"]}
                                                          if report["unknown_labels"] else {})})
        return {"results": results, "model_version": version}

    def webhook(self, body: dict) -> dict:
        action = body.get("action")
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            return self.add_annotation(body)
        if action == "START_TRAINING":
            return self.start_training()
        return {"action": action, "status": "ignored"}

    # -- annotations -> training file -------------------------------------------------------------------------

    def add_annotation(self, body: dict) -> dict:
        """Append the annotation (its text and labelled character spans) to annotations.jsonl and write
        train.txt again: the latest annotation of each task."""
        task, annotation = body.get("task") or {}, body.get("annotation") or {}
        if not isinstance(task, dict) or not isinstance(annotation, dict):
            raise TaggerError("'task' and 'annotation' must be objects")
        regions = [r for r in annotation.get("result") or [] if r.get("type") == "labels" and "value" in r]
        project = body.get("project") if isinstance(body.get("project"), dict) else {}
        key = parse_label_config(project["label_config"]).data_key if project.get("label_config") else None
        text = _annotated_text(task, key)
        spans = [(r["value"]["labels"][0], int(r["value"]["start"]), int(r["value"]["end"]))
                 for r in regions if r["value"].get("labels")]
        for label, start, end in spans:
            if not 0 <= start < end <= len(text):
                raise TaggerError(f"region [{start}, {end}) ({label}) is outside the task's text of {len(text)} characters")
        record = {"task": task.get("id"), "annotation": annotation.get("id"), "text": text, "spans": spans,
                  "cancelled": bool(annotation.get("was_cancelled"))}
        with self.lock:
            with open(self.workdir / ANNOTATIONS, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            sentences = self._write_training_file()
        return {"status": "stored", "task": task.get("id"), "training_sentences": sentences}

    def _write_training_file(self) -> int:
        latest: dict[Any, dict] = {}
        with open(self.workdir / ANNOTATIONS, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                latest[record["task"] if record["task"] is not None else f"line{len(latest)}"] = record
        blocks = [b for r in latest.values() if not r["cancelled"] for b in self._conll(r["text"], r["spans"])]
        store.atomic_write(self.workdir / TRAIN, "".join(blocks).encode("utf-8"))
        return len(blocks)

    def _conll(self, text: str, spans: Sequence[tuple[str, int, int]]) -> list[str]:
        """The text's sentences as CoNLL blocks, tokenised as the model tokenises, tagged from the character
        spans (a token belongs to a span it overlaps) in the scheme the model was trained on."""
        tokenizer = "words" if self.tagger.config.tokenizer == "auto" else self.tagger.config.tokenizer
        tokens, ends = sentence_ends(text, tokenizer)
        scheme = self.tagger.vocab.source_scheme or "iob2"
        blocks, first = [], 0
        for end in ends:
            starts, stops = tokens.starts[first:end], tokens.ends[first:end]
            mine = []
            for label, s, e in spans:
                inside = [i for i, (a, b) in enumerate(zip(starts, stops)) if a < e and b > s]
                if inside:
                    mine.append((label, inside[0], inside[-1] + 1))
            tags = schemes.from_spans(sorted(mine, key=lambda x: x[1]), end - first, scheme) if mine else \
                ["O"] * (end - first)
            blocks.append(format_sentence(Sentence(tuple(tokens.texts[first:end])), tags))
            first = end
        return blocks

    # -- warm-start training in the background ----------------------------------------------------------------

    def start_training(self) -> dict:
        """`tagger train` with --init in a background process; a thread waits for it and swaps the model in
        when it passes the dev check. One training at a time."""
        if self.dev is None:
            raise TaggerError("no dev set: start the backend with one to train (it also checks each new model)")
        if not (self.workdir / TRAIN).exists() or not (self.workdir / TRAIN).read_text(encoding="utf-8").strip():
            raise TaggerError("no annotations yet: nothing to train on")
        with self.lock:
            if self.training.state == "running":
                return {"status": "already training", "output": self.training.output}
            output = self.workdir / "models" / time.strftime("%Y%m%d-%H%M%S")
            command = [sys.executable, "-m", "cli.main", "train", str(self.workdir / TRAIN), "--dev", str(self.dev),
                       "--output", str(output), "--init", str(self.model), "--quiet", "--force",
                       *(["--extend-tags"] if self.extend_tags else [])]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                       cwd=Path(__file__).resolve().parents[2])
            self.training = Training("running", str(output), "training", time.time())
        threading.Thread(target=self._finish, args=(process, output), daemon=True, name="labelstudio-train").start()
        return {"status": "training", "output": str(output)}

    def _finish(self, process: subprocess.Popen, output: Path) -> None:
        """Wait for the training; swap its model in if its dev F1 is at least the current model's."""
        _, stderr = process.communicate()
        if process.returncode:
            line = (stderr.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
            self.training = Training("failed", str(output), line, self.training.started)
            return
        try:
            dev = list(_read_dev(self.dev))
            new = Tagger.load(output)
            before, after = self.tagger.evaluate(dev)["f1"], new.evaluate(dev)["f1"]
        except TaggerError as e:
            self.training = Training("failed", str(output), str(e), self.training.started)
            return
        if after >= before:
            with self.lock:
                self._load(output)
            state, message = "swapped", f"dev F1 {100 * before:.2f} -> {100 * after:.2f}: now {self.version}"
        else:
            state, message = "kept", f"dev F1 {100 * after:.2f} < {100 * before:.2f}: the current model stays"
        self.training = Training(state, str(output), message, self.training.started)


def _read_dev(path: Path):
    from corpora.conll import read_conll

    return read_conll(path)


def _task_text(task: Any, key: str) -> str:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise TaggerError("each task must be an object with a 'data' object")
    text = task["data"].get(key)
    if not isinstance(text, str):
        raise TaggerError(f"task {task.get('id', '?')} has no text under data.{key} (the config's <Text value=\"${key}\">)")
    return text


def _annotated_text(task: dict, key: str | None) -> str:
    """The annotated text: the task's data under `key` (from the project's labelling config), else its only
    string, else data.text."""
    if key is not None:
        return _task_text(task, key)
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    strings = [v for v in data.values() if isinstance(v, str)]
    if len(strings) == 1:
        return strings[0]
    return _task_text(task, "text")


# -- HTTP -------------------------------------------------------------------------------------------------------


def routes(backend: Backend, prefix: str = "/labelstudio") -> list:
    """The backend's routes, mounted under `prefix`, for `server.create_app(model, routes=...)`: the server
    then answers Label Studio at http://HOST:PORT{prefix} beside its own endpoints."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    def call(fn, status: int = 200):
        async def endpoint(request: Request) -> JSONResponse:
            service = request.app.state.service
            body = await read_json(request, service.settings.max_body_bytes) if request.method == "POST" else {}
            if not isinstance(body, dict):
                raise HTTPError(400, "the body must be a JSON object")
            try:
                return JSONResponse(fn(body) if request.method == "POST" else fn(), status)
            except TaggerError as e:
                raise HTTPError(400, str(e)) from None
        return endpoint

    def wrapped(name: str, fn, status: int = 200):
        inner = call(fn, status)

        async def endpoint(request):
            return await request.app.state.service.endpoint(f"labelstudio-{name}", inner, auth=name != "health")(request)
        return endpoint

    table = [Route("/health", wrapped("health", backend.health), methods=["GET"]),
             Route("/", wrapped("health", backend.health), methods=["GET"]),
             Route("/setup", wrapped("setup", backend.setup), methods=["POST"]),
             Route("/predict", wrapped("predict", backend.predict), methods=["POST"]),
             Route("/webhook", wrapped("webhook", backend.webhook, 201), methods=["POST"])]
    return [Mount(prefix, routes=table)]


def create_app(model: str | Path, workdir: str | Path, dev: str | Path | None = None,
               strategy: str = "least-confidence", prefix: str = "/labelstudio", settings=None):
    """The tagger's HTTP server with the Label Studio backend mounted at `prefix`."""
    from tagger.serving.server import create_app as server_app

    backend = Backend(Path(model), Path(workdir), Path(dev) if dev else None, strategy)
    app = server_app(backend.tagger, settings, routes=routes(backend, prefix))
    app.state.labelstudio = backend
    return app


ENV = "TAGGER_LABEL_STUDIO"  # JSON {"model", "workdir", "dev", "strategy"}: what app_from_env serves


def app_from_env():
    """uvicorn's factory, until `tagger serve` has a flag for it:
    TAGGER_LABEL_STUDIO='{"model": "m", "workdir": "ls", "dev": "dev.txt"}' uvicorn --factory \\
        tagger.serving.labelstudio:app_from_env --port 9090   (Label Studio's URL: http://HOST:9090/labelstudio)"""
    spec = json.loads(os.environ[ENV])
    return create_app(spec["model"], spec["workdir"], spec.get("dev"), spec.get("strategy", "least-confidence"))
