"""A Label Studio ML backend on the tagger's HTTP server (tagger/serving/server.py): pre-annotated tasks
sorted by how unsure the model is, annotations collected for training, and warm-start retraining.

`tagger serve MODEL --label-studio WORKDIR [--dev DEV]` mounts it (`create_app`) at http://HOST:PORT/labelstudio.
Every route needs the server's token (--token-file), as a bearer token or as HTTP Basic's password (any user
name), which Label Studio's model connection offers. Its routes:
  GET  /health   {"status": "UP", "model_version", "training": the last training's state}
  POST /setup    {"project", "schema": the labelling config XML} -> {"model_version"}, the config's labels the
                 model lacks ("unknown_labels": reported, never predicted) and the model's the config lacks
  POST /predict  {"tasks", "label_config"} -> {"results": a prediction per task, "model_version"}: each
                 {"result": regions, "score", "model_version"}; a region {"from_name", "to_name", "type":
                 "labels", "value": {"start", "end", "text", "labels"}, "score"}: character offsets, P(exactly
                 this entity | text), exact under the CRF; a task's score is its uncertainty (`strategy`; least
                 confidence: 1 - P(best analysis)), by which the Data Manager sorts. Tagged in the server's
                 engine thread, within /v1/tag's limits (tokens, queue, time).
  POST /webhook  ANNOTATION_CREATED | ANNOTATION_UPDATED: checked whole (tagger/serving/labelstudio_data.py),
                 appended to WORKDIR/annotations.jsonl; train.txt (each task's latest annotation, CoNLL in the
                 model's scheme) written again. START_TRAINING: the library's training (`train`, the caller's:
                 tagger.commands.train) on train.txt, --dev DEV, --init the current model, in a spawned
                 process (labelstudio_training.py); the new model is swapped in on every route if its dev F1
                 is at least the current one's. Other actions are acknowledged and ignored. Errors: a 4xx, one
                 line of JSON.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
import ipaddress
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from tagger import store
from tagger.errors import USER_ERRORS, ConfigError, InputError, TaggerError
from tagger.serving import jobs
from tagger.serving.bodies import CLOSE, HTTPError, TagJob, read_json
from tagger.serving.labelstudio_data import (LabelConfig, conll_blocks, parse_annotation, parse_label_config,
                                             read_annotations, task_text)
from tagger.serving.labelstudio_training import Running, Training, TrainFunction, spawn
from tagger.tagging import pipeline, selection
from tagger.tagging.confidence import ScoreOptions
from tagger.tagging.tagger import Tagger

ANNOTATIONS, TRAIN = "annotations.jsonl", "train.txt"
log = logging.getLogger("tagger.labelstudio")


def check_exposure(host: str, token: str | None, can_train: bool) -> None:
    """ConfigError when a backend that can train would listen beyond this machine without a token: whoever
    reaches it could start training after training and fill the disk."""
    if can_train and token is None and not _loopback(host):
        raise ConfigError(f"--label-studio with --dev trains on request: on --host {host} it needs --token-file "
                          "(or listen on 127.0.0.1)")


def _loopback(host: str) -> bool:
    try:  # a host name other than localhost may resolve to anything
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def authorize(request: Any, token: str | None) -> None:
    """401 unless the request carries `token` as a bearer token or as HTTP Basic's password (any user)."""
    if token is None:
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    given = value.strip()
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given, validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = ""
    if scheme.lower() not in ("basic", "bearer") or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPError(401, "missing or wrong token: send it as a bearer token or as the password of HTTP Basic "
                             "authentication", {"WWW-Authenticate": 'Basic realm="tagger", Bearer', **CLOSE})


class Backend:
    """What Label Studio talks to: the server's Service (its model is the one every route serves), the work
    directory (annotations, training file, new models), the dev set (for training and its check) and the
    training function. Paths are made absolute here, when the backend starts. `strategy`: the task score
    (tagger/tagging/selection.py)."""

    def __init__(self, service: Any, model: str | Path, workdir: str | Path, dev: str | Path | None = None,
                 strategy: str = "least-confidence", extend_tags: bool = False, train: TrainFunction | None = None):
        selection.check(1, strategy)
        self.service, self.strategy, self.extend_tags, self.train = service, strategy, extend_tags, train
        self.model, self.workdir = Path(model).resolve(), Path(workdir).resolve()
        self.dev = None if dev is None else Path(dev).resolve()
        if self.dev is not None and not self.dev.is_file():
            raise InputError("no such dev file", path=str(dev))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.names = {_weights(self.tagger): self.model.name}  # a model's weights -> its directory's name
        self.training, self.dev_f1 = Training(), None  # dev_f1: the served model's, once a training needs it
        self.lock = threading.Lock()
        self._waiter: threading.Thread | None = None

    @property
    def tagger(self) -> Tagger:
        """The served model: the server's one reference (Service.tagger), swapped there after a training."""
        return self.service.tagger

    def version(self, tagger: Tagger) -> str:
        weights = _weights(tagger)
        return f"{self.names.get(weights, 'model')}-{weights[:8]}"

    # -- what the endpoints do --------------------------------------------------------------------------------

    def health(self) -> dict:
        t = self.training
        return {"status": "UP", "model_version": self.version(self.tagger),
                "training": {"state": t.state, "output": t.output, "message": t.message}}

    def setup(self, body: dict) -> dict:
        tagger = self.tagger
        answer = {"model_version": self.version(tagger)}
        if body.get("schema"):
            answer |= _label_report(tagger, parse_label_config(body["schema"]))
        return answer

    async def predict(self, body: dict) -> dict:
        """The predictions, computed in the server's engine thread (Service.run) with one model throughout."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise TaggerError("'tasks' must be a list of Label Studio tasks")
        config = parse_label_config(body.get("label_config") or body.get("schema") or "")
        texts = tuple(task_text(task, config.data_key) for task in tasks)
        size = sum(len(t) if self.tagger.config.tokenizer == "chars" else t.count(" ") + 1 for t in texts)
        answer = await self.service.run(functools.partial(self._predict, texts, config), size)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _predict(self, texts: tuple[str, ...], config: LabelConfig, tagger: Tagger) -> dict | Exception:
        """In the engine thread: the answer, or its error (an HTTPError 413 past the server's limits),
        returned, not raised: the other requests of the engine's batch must not get it."""
        try:
            jobs.measure(tagger, TagJob("text", texts, ScoreOptions()), self.service.settings.limits)
            return self._answer(texts, config, tagger)
        except Exception as e:  # raised again by `predict`, on the event loop: a 4xx, or a bug's 500
            return e

    def _answer(self, texts: tuple[str, ...], config: LabelConfig, tagger: Tagger) -> dict:
        version, report = self.version(tagger), _label_report(tagger, config)
        tagged = pipeline.tag_texts(tagger, texts, ScoreOptions(scores=True), self.service.settings.batch_size)
        uncertainty = selection.text_uncertainties(tagger, texts, self.strategy, self.service.settings.batch_size)
        shown, results = set(config.labels), []
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
        return self.start_training() if action == "START_TRAINING" else {"action": str(action)[:80],
                                                                             "status": "ignored"}

    # -- annotations -> training file -------------------------------------------------------------------------

    def add_annotation(self, body: dict) -> dict:
        """Check the annotation whole (a TaggerError stores nothing), append it to annotations.jsonl and
        write train.txt again: the latest annotation of each task."""
        annotation = parse_annotation(body)
        conll_blocks(self.tagger, annotation.text, annotation.spans)  # two regions on one token: refused here
        with self.lock:
            with open(self.workdir / ANNOTATIONS, "a", encoding="utf-8") as f:
                f.write(json.dumps(annotation.record(), ensure_ascii=False) + "\n")
            sentences = self._write_training_file()
        return {"status": "stored", "task": annotation.task, "training_sentences": sentences}

    def _write_training_file(self) -> int:
        latest = {}
        for annotation in read_annotations(self.workdir / ANNOTATIONS):
            latest[annotation.task] = annotation
        blocks = []
        for a in latest.values():
            try:
                blocks += [] if a.cancelled else conll_blocks(self.tagger, a.text, a.spans)
            except TaggerError as e:  # a record another model's tokens could take: skipped, said once
                log.warning("%s: task %s skipped: %s", self.workdir / ANNOTATIONS, a.task, e)
        store.atomic_write(self.workdir / TRAIN, "".join(blocks).encode("utf-8"))
        return len(blocks)

    # -- warm-start training in a process of its own ----------------------------------------------------------

    def start_training(self) -> dict:
        """The training function in a spawned process (--init the current model); a thread waits for it and
        swaps the new model in when it passes the dev check. One training at a time."""
        if self.dev is None or self.train is None:
            raise TaggerError("this backend cannot train: start it with a dev set (--dev), which also checks "
                              "each new model")
        if not (self.workdir / TRAIN).is_file() or not (self.workdir / TRAIN).read_text(encoding="utf-8").strip():
            raise TaggerError("no annotations yet: nothing to train on")
        with self.lock:
            if self.training.state == "running":
                return {"status": "already training", "output": self.training.output}
            output = self.workdir / "models" / time.strftime("%Y%m%d-%H%M%S")
            running = spawn(self.train, str(self.workdir / TRAIN), str(self.dev), output, init=self.model,
                            extend_tags=self.extend_tags, force=True)
            self.training = Training("running", str(output), "training", time.time())
            self._waiter = threading.Thread(target=self._finish, args=(running, output), daemon=True,
                                            name="labelstudio-train")
            self._waiter.start()
        return {"status": "training", "output": str(output)}

    def _finish(self, running: Running, output: Path) -> None:
        """Wait for the training process; on success, the dev check (`consider`)."""
        error = running.wait()
        if error is not None:
            self.training = Training("failed", str(output), error, self.training.started)
            return
        self.consider(output)

    def consider(self, output: Path) -> None:
        """Swap the model in `output` in (on every route) if its dev F1 is at least the current model's. The
        served model is never used here, beside the engine thread: its score comes from a copy, once."""
        from corpora.conll import read_conll

        try:
            dev = list(read_conll(self.dev))
            new = Tagger.load(output)
            if self.dev_f1 is None:
                self.dev_f1 = Tagger.load(self.model).evaluate(dev)["f1"]
            before, after = self.dev_f1, new.evaluate(dev)["f1"]
        except USER_ERRORS as e:
            self.training = Training("failed", str(output), str(e), self.training.started)
            return
        if after >= before:
            with self.lock:
                self.names[_weights(new)] = Path(output).name
                self.model = Path(output).resolve()
                self.service.swap(new)
                self.dev_f1 = after
            state, message = "swapped", f"dev F1 {100 * before:.2f} -> {100 * after:.2f}: now {self.version(new)}"
        else:
            state, message = "kept", f"dev F1 {100 * after:.2f} < {100 * before:.2f}: the current model stays"
        self.training = Training(state, str(output), message, self.training.started)

    def join(self, timeout: float | None = None) -> None:  # wait for a training to end and be considered
        if self._waiter is not None:
            self._waiter.join(timeout)


def _weights(tagger: Tagger) -> str:
    return tagger.meta.get("sha256", {}).get("model.safetensors", "")


def _label_report(tagger: Tagger, config: LabelConfig) -> dict:
    """The config's labels the model lacks, and the model's entity types the config lacks (never shown)."""
    known = set(tagger.entity_types)
    return {"unknown_labels": [x for x in config.labels if x not in known],
            "unused_model_labels": [x for x in tagger.entity_types if x not in config.labels]}


# -- HTTP -------------------------------------------------------------------------------------------------------


def routes(prefix: str = "/labelstudio") -> list:
    """The backend's routes, mounted under `prefix`, for `server.create_app(model, routes=...)`: they find
    the Backend at `app.state.labelstudio`."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    def route(path: str, name: str, method: str, status: int = 200) -> Route:
        async def inner(request: Request) -> JSONResponse:
            service, backend = request.app.state.service, request.app.state.labelstudio
            authorize(request, service.settings.token)
            if method == "GET":
                return JSONResponse(backend.health())
            body = await read_json(request, service.settings.max_body_bytes, service.reads)
            if not isinstance(body, dict):
                raise HTTPError(400, "the body must be a JSON object")
            try:
                if name == "predict":
                    return JSONResponse(await backend.predict(body), status)
                return JSONResponse(await run_in_threadpool(getattr(backend, name), body), status)  # disk, a lock
            except TaggerError as e:
                raise HTTPError(400, str(e)) from None

        async def endpoint(request: Request):
            return await request.app.state.service.endpoint(f"labelstudio-{name}", inner, auth=False)(request)
        return Route(path, endpoint, methods=[method])

    table = [route("/health", "health", "GET"), route("/", "health", "GET"), route("/setup", "setup", "POST"),
             route("/predict", "predict", "POST"), route("/webhook", "webhook", "POST", 201)]
    return [Mount(prefix, routes=table)]


def create_app(model: str | Path, workdir: str | Path, dev: str | Path | None = None, *,
               train: TrainFunction | None = None, strategy: str = "least-confidence", extend_tags: bool = False,
               prefix: str = "/labelstudio", settings: Any = None, tagger: Tagger | None = None) -> Any:
    """The tagger's HTTP server with the Label Studio backend mounted at `prefix` (`tagger`: the model, if
    already loaded). It trains only given a dev set and `train` (tagger.commands.train: the caller's, since
    the doors do not import the commands)."""
    from tagger.serving.server import create_app as server_app

    app = server_app(tagger or model, settings, routes=routes(prefix))
    app.state.labelstudio = Backend(app.state.service, model, workdir, dev, strategy, extend_tags, train)
    return app
