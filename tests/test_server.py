"""`tagger serve` as a client sees it: a real server on a free localhost port, a real HTTP client.

The models are small ones trained on the bundled samples (samples/en, English IOB2; samples/zh, Chinese
characters in BMES), so answers hold real entities with real offsets, Unicode included.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from corpora.conll import read_conll

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SMALL = {"hidden_size": 32, "char_filters": 10, "word_dim": 32, "epochs": 3, "batch_size": 16, "lr": 0.05,
         "threads": 1}


def train_sample_model(root: Path, language: str) -> Path:
    from tagger import commands

    config = root / "small.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in SMALL.items()), encoding="utf-8")
    out = root / "model"
    commands.train(str(SAMPLES / language / "train.txt"), str(SAMPLES / language / "dev.txt"), out,
                   config_file=config)
    return out


@pytest.fixture(scope="module")
def en_model(tmp_path_factory) -> Path:
    return train_sample_model(tmp_path_factory.mktemp("en"), "en")


@pytest.fixture(scope="module")
def zh_model(tmp_path_factory) -> Path:
    return train_sample_model(tmp_path_factory.mktemp("zh"), "zh")


def sample_lines(language: str, n: int = 120) -> list[str]:
    """Raw text lines made of the samples' test sentences: one sentence, or two (offsets past the first)."""
    glue = " " if language == "en" else ""
    sentences = [glue.join(s.tokens) for s in read_conll(SAMPLES / language / "test.txt", labelled=False)][:n]
    return [a if i % 3 else f"{a} {b}" for i, (a, b) in enumerate(zip(sentences, sentences[1:]))]


def same(actual, expected) -> bool:
    """Equal records, probabilities to 1e-5: the network computes in float32, so a text's scores move in
    the 6th or 7th digit with the batch it is tagged in (its padding), in the server's micro-batches (64
    sentences a pass) as in the chunks of `tagger predict` (256)."""
    if isinstance(expected, float) and isinstance(actual, float):
        return actual == pytest.approx(expected, rel=0, abs=1e-5)
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k]) for k in expected)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    return type(actual) is type(expected) and actual == expected


def free_port() -> int:
    """A free port between Ray's worker ports (10002-19999) and Linux's ephemeral range (32768 on). A port the
    kernel hands out (bind to 0) is free only until another socket is given it: Ray opens dozens while it
    starts, and once took the port its proxy was about to bind."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


class Server:
    """`tagger serve MODEL ARGS` in a child process, up once /health answers 200."""

    def __init__(self, model: Path, *args: str, workers: int = 1, startup_s: float = 60):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "cli.main", "serve", str(model), "--port", str(self.port),
                   "--workers", str(workers), "--quiet", *args]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stdout.read()
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not start in {startup_s} s")

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def tag(self, **body) -> httpx.Response:
        return self.client.post("/v1/tag", json=body)

    def metrics(self) -> dict[str, float]:
        """/metrics as {series with labels: value}."""
        return _parse_metrics(self.client.get("/metrics").text)


def _parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.fixture(scope="module")
def en_server(en_model):
    server = Server(en_model)
    yield server
    server.stop()


def predict_cli(model: Path, lines: list[str], tmp_path: Path, *options: str) -> list[dict]:
    """What `tagger predict MODEL FILE OPTIONS` writes, one record per line."""
    path = tmp_path / "input.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", str(model), str(path), *options])
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


# -- answers are tagger predict's -----------------------------------------------------------------------------

@pytest.mark.parametrize("scores", [False, True])
def test_texts_answer_what_tagger_predict_writes(en_server, en_model, tmp_path, scores):
    lines = sample_lines("en")
    expected = predict_cli(en_model, lines, tmp_path, *(["--scores"] if scores else []))
    response = en_server.tag(texts=lines, scores=scores)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert same(response.json(), expected)
    assert sum(len(r["entities"]) for r in expected) > 50  # the samples' entities are found, with offsets
    one = en_server.tag(text=lines[0], scores=scores).json()  # "text": the one record, not a list
    assert same(one, expected[0])


def test_chinese_text_offsets_are_characters_as_in_tagger_predict(zh_model, tmp_path):
    lines = sample_lines("zh")
    server = Server(zh_model)
    try:
        for options, body in [((), {}), (("--scores",), {"scores": True}), (("--n-best", "3"), {"n_best": 3})]:
            expected = predict_cli(zh_model, lines, tmp_path, *options)
            assert same(server.tag(texts=lines, **body).json(), expected)
        entity = next(e for r in expected for e in r["entities"])
        text = next(r["text"] for r in expected if entity in r["entities"])
        assert text[entity["start"]:entity["end"]] == entity["text"]
    finally:
        assert server.stop() == 0


def test_tokens_answer_what_predict_input_format_tokens_writes(en_server, en_model, tmp_path):
    sentences = [s.tokens for s in read_conll(SAMPLES / "en" / "test.txt", labelled=False)][:80]
    lines = [" ".join(tokens) for tokens in sentences]
    for options, body in [((), {}), (("--scores", "--min-score", "0.5"), {"scores": True, "min_score": 0.5})]:
        expected = predict_cli(en_model, lines, tmp_path, "--input-format", "tokens", *options)
        assert same(en_server.tag(tokens=[list(t) for t in sentences], **body).json(), expected)


def test_concurrent_requests_each_get_their_own_answer(en_server, en_model, tmp_path):
    lines = sample_lines("en", 201)[:200]
    expected = predict_cli(en_model, lines, tmp_path, "--scores")
    batches_before = en_server.metrics().get("tagger_batch_requests_count", 0)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=en_server.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/tag", json={"text": t, "scores": True}) for t in lines))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * len(lines)
    assert [r.json()["text"] for r in responses] == lines
    assert same([r.json() for r in responses], expected)
    engine_calls = en_server.metrics()["tagger_batch_requests_count"] - batches_before
    assert engine_calls < len(lines)  # requests that arrived together shared engine calls


# -- the Hugging Face shape -----------------------------------------------------------------------------------

def test_huggingface_client_gets_spans_with_offsets(en_server):
    from huggingface_hub import InferenceClient

    text = sample_lines("en")[0]
    record = en_server.tag(text=text, scores=True).json()
    assert record["entities"]
    spans = InferenceClient(base_url=en_server.url).token_classification(text)
    assert [(s.entity_group, s.word, s.start, s.end) for s in spans] == \
        [(e["label"], e["text"], e["start"], e["end"]) for e in record["entities"]]
    assert [s.score for s in spans] == pytest.approx([e["score"] for e in record["entities"]])
    assert all(text[s.start:s.end] == s.word for s in spans)


def test_huggingface_shape_takes_a_list_and_ignore_labels(en_server):
    texts = sample_lines("en")[:3]
    answers = en_server.client.post("/", json={"inputs": texts, "parameters": {"ignore_labels": ["PER"]}}).json()
    records = en_server.tag(texts=texts, scores=True).json()
    assert len(answers) == 3
    for answer, record in zip(answers, records):
        assert [a["word"] for a in answer] == [e["text"] for e in record["entities"] if e["label"] != "PER"]


# -- bad input ------------------------------------------------------------------------------------------------

BAD_REQUESTS = [
    # (path, body bytes, status, fragment of the one-line message)
    ("/v1/tag", b"{\"text\": \"unterminated", 400, "not valid JSON"),
    ("/v1/tag", b"", 400, "empty"),
    ("/v1/tag", b"\xff\xfe", 400, "not valid JSON"),
    ("/v1/tag", b"[\"a list\"]", 422, "JSON object"),
    ("/v1/tag", b"{\"text\": 3}", 422, "\"text\" must be a string"),
    ("/v1/tag", b"{\"texts\": \"one string\"}", 422, "list of strings"),
    ("/v1/tag", b"{\"tokens\": [\"flat\", \"list\"]}", 422, "list of sentences"),
    ("/v1/tag", b"{\"text\": \"a\", \"texts\": [\"b\"]}", 422, "exactly one"),
    ("/v1/tag", b"{\"text\": \"a\", \"model\": \"/etc/passwd\"}", 422, "unknown field 'model'"),
    ("/v1/tag", b"{\"text\": \"a\", \"scores\": \"yes\"}", 422, "true or false"),
    ("/v1/tag", b"{\"text\": \"a\", \"min_score\": 2}", 422, "[0, 1]"),
    ("/v1/tag", b"{\"text\": \"a\", \"n_best\": -1}", 422, "whole number"),
    ("/v1/tag", b"{\"text\": \"a\", \"n_best\": 1000}", 422, "at most 10"),
    ("/", b"{\"inputs\": 5}", 422, "\"inputs\" must be a string"),
    ("/", b"{\"inputs\": \"a\", \"parameters\": {\"aggregation_strategy\": \"none\"}}", 422, "whole entities"),
    ("/", b"{\"inputs\": \"a\", \"parameters\": {\"file\": \"x\"}}", 422, "unknown parameter 'file'"),
    ("/v1/tag", b"[" * 5000 + b"]" * 5000, 400, "nested too deeply"),
    ("/v1/tag", b"{\"text\": \"a\", \"n_best\": " + b"7" * 5000 + b"}", 400, "integer of 5000 digits"),
    ("/v1/tag", b"{\"text\": \"Paris \\ud800\"}", 400, "lone UTF-16 surrogate"),
    ("/v1/tag", b"{\"tokens\": [[\"Paris\", \"\\udfff\"]]}", 400, "lone UTF-16 surrogate"),
    ("/", b"{\"inputs\": [\"\\ud83d\"]}", 400, "lone UTF-16 surrogate"),
]


@pytest.mark.parametrize("path,body,status,fragment", BAD_REQUESTS)
def test_bad_input_gets_its_status_and_one_line(en_server, path, body, status, fragment):
    response = en_server.client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert fragment in response.json()["error"]
    assert "\n" not in response.text and "Traceback" not in response.text


def test_a_too_large_body_gets_413_and_the_server_answers_afterwards(en_model):
    text = sample_lines("en")[0]
    server = Server(en_model, "--max-body", "2000000")
    try:
        too_big = server.client.post("/v1/tag", content=b"{\"text\": \"" + b"x" * 2_000_000 + b"\"}")
        assert too_big.status_code == 413 and "2000000 bytes" in too_big.json()["error"]
        assert server.tag(text=text).json()["text"] == text
    finally:
        assert server.stop() == 0


def test_a_full_queue_gets_503_and_a_late_answer_504(en_model):
    """The engine is held on an event while one request is in it and one queued: a third is refused at
    once (503), and the two waiting ones get 504 at the time limit; the engine then serves again."""
    from starlette.testclient import TestClient

    from tagger.serving.server import Settings, create_app

    text = sample_lines("en")[0]
    app = create_app(en_model, Settings(max_queue=1, timeout_s=2, inline_tokens=0))  # all through the engine
    in_engine, release = threading.Event(), threading.Event()
    tag = app.state.service.batcher.handler

    def held(batch):
        in_engine.set()
        release.wait(30)
        return tag(batch)

    app.state.service.batcher.handler = held
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/v1/tag", json={"text": text})
        assert in_engine.wait(30)  # the first request is in the engine
        second = pool.submit(client.post, "/v1/tag", json={"text": text})  # queued (or 504 once it waited)
        deadline = time.monotonic() + 30
        while app.state.service.batcher.depth < 1 and not second.done():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = client.post("/v1/tag", json={"text": text})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert first.result().status_code == 504 and "2 s" in first.result().json()["error"]
        assert second.result().status_code == 504
        release.set()
        assert client.post("/v1/tag", json={"text": text}).json()["text"] == text


def test_a_surrogate_pair_is_text_not_a_lone_surrogate(en_server):
    answer = en_server.client.post("/v1/tag", content=b"{\"text\": \"Paris \\ud83d\\ude00\"}")
    assert answer.status_code == 200 and answer.json()["text"] == "Paris \U0001F600"


# -- bounded work and memory ---------------------------------------------------------------------------------

def test_requests_past_the_token_limits_get_413_naming_the_limit(en_model):
    server = Server(en_model, "--max-sentence-tokens", "50", "--max-request-tokens", "200")
    try:
        for body, flag in [({"text": "Paris " * 60}, "--max-sentence-tokens"),
                           ({"tokens": [["Paris"] * 60]}, "--max-sentence-tokens"),
                           ({"texts": ["Paris is big. " * 10] * 6}, "--max-request-tokens"),
                           ({"tokens": [["Paris"] * 40] * 6}, "--max-request-tokens")]:
            answer = server.tag(**body)
            assert answer.status_code == 413, body
            assert flag in answer.json()["error"] and "\n" not in answer.text
        assert server.tag(text="Paris " * 50).status_code == 200  # at the limit: tagged
        assert server.tag(texts=["Paris is big. " * 10] * 5).status_code == 200
    finally:
        assert server.stop() == 0


def test_the_issues_one_megabyte_sentence_is_refused_at_once_by_default(en_server):
    """The probe's requests that held a worker for 12 s and 28 s: 413 under the default limits."""
    for body in ({"text": "Paris " * 166666}, {"tokens": [["a"] * 190000]}):
        answer = en_server.tag(**body)
        assert answer.status_code == 413 and "--max-sentence-tokens" in answer.json()["error"]
    assert en_server.tag(text="Paris").status_code == 200


def test_work_past_its_deadline_stops_at_the_next_chunk(en_model, monkeypatch):
    """A request cut in chunks (of --max-batch-tokens) whose client has left (deadline passed) is tagged no
    further: only the chunk under way when its time ran out is finished."""
    from tagger import Tagger
    from tagger.serving import jobs
    from tagger.serving.bodies import TagJob
    from tagger.tagging.confidence import ScoreOptions

    tagged = []
    real_tag = jobs.tag
    monkeypatch.setattr(jobs, "tag", lambda tagger, kind, items, *rest: tagged.append(len(items)) or
                        real_tag(tagger, kind, items, *rest))
    now = iter([0.0, 5.0])  # the clock as the engine reads it before each chunk of the first request
    job = TagJob("text", tuple(["Paris is big ."] * 30), ScoreOptions(), deadline=1.0)
    limits = jobs.Limits(sentence_tokens=100, request_tokens=1000, chunk_tokens=40, batch_size=64)
    fresh = TagJob("text", ("Paris is big .",), ScoreOptions())  # no deadline: always finished
    abandoned, done = jobs.handle(Tagger.load(en_model), [job, fresh], limits, clock=lambda: next(now))
    assert abandoned.status == 504
    assert tagged == [10, 1]  # 40 tokens a chunk: its first chunk, none after its deadline; then the other
    assert len(done.records) == 1


def test_a_short_text_is_tokenised_once_and_its_tokens_counted_exactly(en_model, monkeypatch):
    """Raw text with fewer characters than the token limits cannot pass them (a token is at least a
    character): the limits do not tokenise it a second time; its tokens are counted as it is tagged."""
    from tagger import Tagger
    from tagger.serving import jobs
    from tagger.serving.bodies import TagJob
    from tagger.tagging.confidence import ScoreOptions
    from tagger.text import split_sentences

    scans = []
    real_scan = jobs.sentence_ends
    monkeypatch.setattr(jobs, "sentence_ends", lambda *a: scans.append(a) or real_scan(*a))
    text = "Paris, France (the capital) is big. So is Berlin!"
    limits = jobs.Limits(sentence_tokens=len(text), request_tokens=2 * len(text), chunk_tokens=40, batch_size=64)
    tagger = Tagger.load(en_model)
    short, = jobs.handle(tagger, [TagJob("text", (text, text), ScoreOptions())], limits)
    assert scans == [] and short.tokens == 2 * sum(map(len, split_sentences(text)))
    longer, = jobs.handle(tagger, [TagJob("text", (text + " Rome.",), ScoreOptions())], limits)
    assert len(scans) == 1 and longer.tokens == sum(map(len, split_sentences(text + " Rome.")))


def test_an_idle_server_answers_at_once_whatever_the_batch_wait():
    """A lone request never waits for companions: --batch-wait only applies when requests are queued."""
    from tagger.serving.batcher import Batcher

    async def one() -> list:
        batcher = Batcher(lambda payloads: [p.upper() for p in payloads], max_tokens=100, max_wait=3600)
        batcher.start()
        try:
            return await asyncio.wait_for(batcher.submit("a", 1, timeout=3600), 30)
        finally:
            await batcher.stop()

    assert asyncio.run(one()) == "A"


def test_long_unique_words_do_not_grow_the_word_cache(en_model):
    """40 requests of unique 5,000-character words: the encoder's cache keeps none of them."""
    from starlette.testclient import TestClient

    from tagger.serving.server import create_app

    app = create_app(en_model)
    cache = app.state.service.tagger.encode.cache
    before = len(cache)
    with TestClient(app) as client:
        for i in range(40):
            words = [f"{i:03d}{k:02d}" + "x" * 4995 for k in range(5)]
            assert client.post("/v1/tag", json={"text": " ".join(words)}).status_code == 200
    assert len(cache) - before <= 1  # (the warm-up's words, or none)
    assert max(map(len, cache), default=0) <= 64


def _raw(port: int, data: bytes, timeout: float = 20) -> bytes:
    """Send raw bytes on a new connection and read until the server closes it (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_pipelining_flood_is_cut_short(en_model, tmp_path):
    """Requests pipelined without reading the answers: an unauthenticated one ends its connection at the
    first 401 (its body is never read); past 16 queued requests a connection is closed, whatever they are."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    server = Server(en_model, "--token-file", str(token_file))
    body = b"{\"text\": \"Paris\"}"
    post = b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    try:
        answers = _raw(server.port, post * 10)
        assert answers.count(b"HTTP/1.1 401") == 1  # then closed: the other 9 are never read
        assert _raw(server.port, post * 500).count(b"HTTP/1.1 ") <= 17  # closed past the pipelining cap
        health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        answers = _raw(server.port, health * 500)
        assert answers.count(b"HTTP/1.1 200") <= 17  # closed, not 500 answers
        assert server.client.get("/health").status_code == 200
    finally:
        assert server.stop() == 0


def test_slow_headers_are_closed_and_a_slow_body_gets_408(en_model):
    server = Server(en_model, "--read-timeout", "1")
    try:
        assert _raw(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n") == b""  # closed, no answer
        assert _raw(server.port, b"") == b""  # a connection that never sends a byte is closed too
        answer = _raw(server.port, b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                                   b"{\"text\": \"Paris is a city\"")
        assert answer.startswith(b"HTTP/1.1 408")
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith("the body did not arrive")
    finally:
        assert server.stop() == 0


def test_a_client_that_leaves_mid_body_is_no_server_error(en_model):
    server = Server(en_model)
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"text\": ")
        deadline = time.monotonic() + 30
        while 'tagger_request_seconds_count{route="tag"}' not in (metrics := server.metrics()):
            assert time.monotonic() < deadline, "the request was never counted"
            time.sleep(0.05)
        assert metrics['tagger_requests_total{route="tag",status="499"}'] == 1
        assert not any('status="500"' in series for series in metrics)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.process.stdout.read()


def test_sigterm_during_a_slow_body_answers_503_at_once(en_model):
    """Draining does not wait the grace period for a body that may never come: it answers 503 in JSON."""
    server = Server(en_model, "--grace", "60", "--read-timeout", "60")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"text\": ")
        assert server.tag(text="Paris").status_code == 200  # the slow request is being read by now
        server.process.send_signal(signal.SIGTERM)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 503") and b"application/json" in answer
    assert "shutting down" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert server.process.wait(timeout=20) == 0
    server.stop()


def test_create_app_leaves_no_process_wide_state(en_model):
    """gc.freeze and the SIGTERM handler belong to `tagger serve` (the CLI edge), not to the library call."""
    import gc

    from tagger.serving.server import create_app

    handler, frozen = signal.getsignal(signal.SIGTERM), gc.get_freeze_count()
    create_app(en_model)
    assert signal.getsignal(signal.SIGTERM) is handler
    assert gc.get_freeze_count() == frozen


def test_server_still_tags_correctly_after_bad_input(en_server, en_model, tmp_path):
    for path, body, _, _ in BAD_REQUESTS:
        en_server.client.post(path, content=body)
    assert en_server.client.get("/health").json() == {"status": "ready"}
    lines = sample_lines("en")[:5]
    assert en_server.tag(texts=lines).json() == predict_cli(en_model, lines, tmp_path)


# -- safety ---------------------------------------------------------------------------------------------------

def test_bearer_token_missing_wrong_or_right(en_model, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    server = Server(en_model, "--token-file", str(token_file))
    try:
        body = {"text": "Paris"}
        assert server.client.post("/v1/tag", json=body).status_code == 401
        wrong = server.client.post("/v1/tag", json=body, headers={"Authorization": "Bearer s3cret-tokeN"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        for path in ("/info", "/metrics"):
            assert server.client.get(path).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert server.client.post("/v1/tag", json=body, headers=right).status_code == 200
        assert server.client.get("/info", headers=right).status_code == 200
        assert server.client.get("/health").status_code == 200  # probes carry no token
        from huggingface_hub import InferenceClient
        assert InferenceClient(base_url=server.url, api_key="s3cret-token").token_classification("Paris") == []
    finally:
        assert server.stop() == 0


def test_no_cors_headers_unless_asked(en_server, en_model):
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in en_server.client.options("/v1/tag", headers=preflight).headers
    server = Server(en_model, "--cors", "https://example.org")
    try:
        answer = server.client.options("/v1/tag", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://example.org"
    finally:
        server.stop()


def test_post_v1_tag_skips_starlettes_stack_unless_middleware_must_see_it(en_model):
    """POST /v1/tag goes straight to its endpoint (the router and exception middlewares are a tenth of a small
    request's cost), with the same answers, errors included; other routes go through Starlette, and with
    --cors every request does, so that CORS headers are added."""
    from starlette.testclient import TestClient

    from tagger.serving.server import Settings, create_app

    for cors in ((), ("https://example.org",)):
        app = create_app(en_model, Settings(cors_origins=cors))
        with TestClient(app) as client:
            stack, through = app.middleware_stack, []

            async def counted(scope, receive, send):
                through.append(scope["path"])
                await stack(scope, receive, send)

            app.middleware_stack = counted
            origin = {"Origin": "https://example.org"}
            tagged = client.post("/v1/tag", json={"text": "Paris is big ."}, headers=origin)
            refused = client.post("/v1/tag", content=b"{\"text\": 1}")
            assert tagged.json()["text"] == "Paris is big ." and refused.status_code == 422
            assert client.get("/health").status_code == 200 and client.get("/v1/tag").status_code == 405
        if cors:
            assert through == ["/v1/tag", "/v1/tag", "/health", "/v1/tag"]
            assert tagged.headers["access-control-allow-origin"] == "https://example.org"
        else:
            assert through == ["/health", "/v1/tag"]  # only the GETs


def test_info_is_tagger_info_json(en_server, en_model):
    result = CliRunner().invoke(app, ["info", str(en_model), "--json"])
    assert en_server.client.get("/info").json() == json.loads(result.stdout)


def test_the_server_binds_localhost_by_default(en_server):
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A"]  # local address (hex IP:port) of each listening socket
    assert f"0100007F:{en_server.port:04X}" in listening  # 127.0.0.1 only
    assert f"00000000:{en_server.port:04X}" not in listening  # not every interface


# -- metrics --------------------------------------------------------------------------------------------------

def test_metrics_count_what_was_sent(en_server):
    texts = sample_lines("en")[:5]
    before = en_server.metrics()
    tokens = 0
    for text in texts:
        assert en_server.tag(text=text).status_code == 200
        tokens += len(en_server.tag(tokens=[text.split()]).json()[0]["tokens"])
    en_server.client.post("/v1/tag", content=b"{\"text\": 1}")
    after = en_server.metrics()

    def grew(series: str) -> float:
        return after.get(series, 0) - before.get(series, 0)

    assert grew('tagger_requests_total{route="tag",status="200"}') == 10
    assert grew('tagger_requests_total{route="tag",status="422"}') == 1
    assert grew('tagger_request_seconds_count{route="tag"}') == 11
    assert grew("tagger_tokens_total") == 2 * tokens
    assert grew("tagger_batch_requests_sum") == 10
    assert after["tagger_queue_depth"] == 0


# -- lifecycle ------------------------------------------------------------------------------------------------

def test_sigterm_during_a_burst_answers_every_accepted_request_and_exits_0(en_model, tmp_path):
    lines = sample_lines("en", 41)[:40]
    expected = predict_cli(en_model, [" ".join(lines)] * 1, tmp_path)
    server = Server(en_model)

    async def burst() -> list:
        async with httpx.AsyncClient(base_url=server.url, limits=httpx.Limits(max_connections=50),
                                     timeout=30) as client:
            pending = [asyncio.ensure_future(client.post("/v1/tag", json={"texts": [" ".join(lines)] * 20}))
                       for _ in range(30)]
            deadline = time.monotonic() + 30
            while "tagger_requests_in_flight 31.0" not in (await client.get("/metrics")).text:
                assert time.monotonic() < deadline  # until all 30 are in the server (and this /metrics one)
                await asyncio.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*pending, return_exceptions=True)

    try:
        answers = asyncio.run(burst())
        assert [getattr(a, "status_code", a) for a in answers] == [200] * 30
        assert all(a.json() == expected * 20 for a in answers)
        assert server.process.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):  # stopped: no more connections
            httpx.get(f"{server.url}/health", timeout=2)
    finally:
        server.stop()


def test_a_killed_worker_is_replaced_and_its_requests_fail_cleanly(en_model):
    server = Server(en_model, "--timeout", "60", workers=2)
    try:
        children = _children(server.process.pid)
        assert len(children) == 2
        text = sample_lines("en")[0]

        async def during_a_kill() -> list:
            async with httpx.AsyncClient(base_url=server.url, timeout=90) as client:
                pending = [asyncio.ensure_future(client.post("/v1/tag", json={"texts": [text] * 2000}))
                           for _ in range(6)]
                deadline = time.monotonic() + 30
                while "tagger_requests_in_flight 7.0" not in (await client.get("/metrics")).text:
                    assert time.monotonic() < deadline  # until all 6 are in the workers (and this /metrics one)
                    await asyncio.sleep(0.01)
                os.kill(children[0], signal.SIGKILL)
                return await asyncio.gather(*pending, return_exceptions=True)

        answers = asyncio.run(during_a_kill())
        for answer in answers:  # answered, or the connection dropped: never a hang (no timeout)
            assert isinstance(answer, (httpx.Response, httpx.RemoteProtocolError, httpx.ReadError)), repr(answer)
            assert not isinstance(answer, httpx.Response) or answer.status_code == 200
        deadline = time.monotonic() + 30
        while len(_children(server.process.pid)) < 2 or children[0] in _children(server.process.pid):
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.2)
        for _ in range(10):  # both workers answer
            assert server.tag(text=text).json()["text"] == text
        metrics = server.metrics()
        assert metrics['tagger_requests_total{route="tag",status="200"}'] >= 10  # summed over the workers
    finally:
        assert server.stop() == 0


def _children(pid: int) -> list[int]:
    """Worker processes of the server `pid` (uvicorn's supervisor spawns them; multiprocessing adds a
    resource tracker, which runs no server; -ww: its command line is never cut, however long the path)."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "resource_tracker" not in line]


# -- Python: mounting and extending -----------------------------------------------------------------------------

def test_create_app_takes_extra_routes(en_model):
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from tagger.serving.server import create_app

    async def count(request: Request) -> JSONResponse:
        body = await request.json()
        records = await request.app.state.service.tag_texts(body["texts"])
        return JSONResponse({"entities": sum(len(r["entities"]) for r in records)})

    texts = sample_lines("en")[:20]
    application = create_app(en_model, routes=[Route("/count", count, methods=["POST"])])
    with TestClient(application) as client:
        expected = sum(len(r["entities"]) for r in client.post("/v1/tag", json={"texts": texts}).json())
        assert client.post("/count", json={"texts": texts}).json() == {"entities": expected}


# -- Ray Serve ------------------------------------------------------------------------------------------------

def test_ray_flag_without_ray_is_one_line(en_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = CliRunner().invoke(app, ["serve", str(en_model), "--ray"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["error: --ray needs Ray Serve: pip install 'bilstm-tagger[ray]'"]


def test_replicas_without_ray_is_refused(en_model):
    result = CliRunner().invoke(app, ["serve", str(en_model), "--replicas", "2"])
    assert result.exit_code == 1 and "go with --ray" in result.stderr


def test_ray_serve_answers_as_the_plain_server(en_server, en_model):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'bilstm-tagger[ray]')")
    lines = sample_lines("en")[:30]
    server = Server(en_model, "--ray", "--replicas", "1", startup_s=180)
    try:
        for body in ({"texts": lines}, {"texts": lines, "scores": True}, {"tokens": [t.split() for t in lines]}):
            assert same(server.client.post("/v1/tag", json=body).json(), en_server.tag(**body).json())
        answers = asyncio.run(_burst(server.url, lines))  # requests arriving together, batched by @serve.batch
        assert [a.json()["text"] for a in answers] == lines
        assert server.client.post("/v1/tag", json={"text": 3}).status_code == 422
        assert server.client.get("/health").status_code == 200
        hf = server.client.post("/", json={"inputs": lines[0]}).json()
        assert [e["word"] for e in hf] == [e["text"] for e in en_server.tag(text=lines[0]).json()["entities"]]
    finally:
        assert server.stop() == 0


async def _burst(url: str, texts: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post("/v1/tag", json={"text": t}) for t in texts))


def test_a_long_text_of_few_spaces_is_never_tagged_on_the_event_loop(en_model):
    """Tokens are estimated from spaces: 4,000 characters without one would pass for a 1-token job, and
    tagging them on the event loop would stall every other request. Short texts still go inline."""
    from starlette.testclient import TestClient

    from tagger.serving.server import Settings, create_app

    app = create_app(en_model, Settings())
    submit, asked = app.state.service.batcher.submit, []

    async def spy(job, size, timeout=None, inline=False):
        asked.append(inline)
        return await submit(job, size, timeout, inline)

    app.state.service.batcher.submit = spy
    with TestClient(app) as client:
        assert client.post("/v1/tag", json={"text": "Angela Merkel visited Paris ."}).status_code == 200
        assert client.post("/v1/tag", json={"text": "a." * 2000}).status_code == 200
        assert client.post("/v1/tag", json={"tokens": [["x" * 60] * 40]}).status_code == 200
    assert asked == [True, False, False]
