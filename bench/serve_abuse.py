"""bench/serve.py's --abuse and --long modes: what an attacker or a careless client costs `tagger serve`.

--abuse starts one server (a bearer token, default limits) and runs, one after the other, the floods of
issue 33, reporting the server's RSS (parent and workers) before, at its highest during, and after each:
  long-words  40 requests of unique 5,000-character words (authenticated): the word cache must not keep them
  pipelining  4 connections each writing --flood-mb MB of pipelined unauthenticated POSTs, never reading
  slowloris   200 connections trickling headers a byte a second: how many are still open after the read
              timeout (plus 2 s)
  slow-body   a body that declares 1,000 bytes and sends 29: its status and when it came
  heavy       small requests, one at a time, while a worker tags a maximal request (--max-request-tokens
              tokens in sentences of 40): their p50/p99 against an idle server's, and the heavy one's status

--long times `Tagger.predict` in this process on one sentence of N tokens (CoNLL-2003 test tokens, sentence
ends removed) against the same tokens as their own sentences, batched: microseconds a token each.
"""
from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

TOKEN = "bench-token"


class Peak:
    """The highest RSS of a process tree, sampled every 0.2 s in a thread while the context is open."""

    def __init__(self, pid: int, rss):
        self.pid, self.rss, self.high, self._stop = pid, rss, 0.0, threading.Event()

    def __enter__(self) -> "Peak":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.high = max(self.high, self.rss(self.pid))


def flood(name: str, server, rss, run) -> dict:
    """RSS before, at its highest during `run()` and 2 s after it, with what run() reports."""
    before = rss(server.process.pid)
    with Peak(server.process.pid, rss) as peak:
        found = run()
    time.sleep(2)
    return {"abuse": name, "rss_before_mb": round(before, 1), "rss_peak_mb": round(max(peak.high, before), 1),
            "rss_after_mb": round(rss(server.process.pid), 1), **found}


def long_words(url: str) -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses = []
    with httpx.Client(timeout=120) as client:
        for i in range(40):
            words = [f"{i:03d}{k:03d}" + "x" * 4994 for k in range(40)]
            statuses.append(client.post(f"{url}/v1/tag", json={"text": " ".join(words)}, headers=headers).status_code)
    return {"statuses": {str(s): statuses.count(s) for s in set(statuses)}}


def pipelining(port: int, megabytes: float) -> dict:
    body = b'{"text": "' + b"Paris " * 100 + b'"}'
    request = b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" \
        % (len(body), body)
    burst = request * max(1, int(64 * 1024 / len(request)))
    sent = [0] * 4

    def writer(k: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            try:
                while sent[k] < megabytes * 1e6:
                    sock.sendall(burst)
                    sent[k] += len(burst)
            except OSError:  # closed by the server (or its buffers full past the timeout)
                pass

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"connections": 4, "mb_sent_per_connection": [round(s / 1e6, 1) for s in sent]}


def slowloris(port: int, read_timeout: float) -> dict:
    socks = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        socks.append(sock)
    start = time.monotonic()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    position = 0
    while time.monotonic() - start < read_timeout + 2:
        for sock in socks:
            try:
                sock.send(request[position:position + 1])
            except OSError:
                pass
        position += 1
        time.sleep(1)
    still_open = 0
    for sock in socks:
        try:
            still_open += sock.recv(1) != b""
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        sock.close()
    return {"connections": 200, "open_after_s": round(read_timeout + 2), "still_open": still_open}


def slow_body(port: int) -> dict:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                     b"\r\nContent-Length: 1000\r\n\r\n" + b'{"text": "Paris is a city in"')
        answer = sock.recv(65536)
    return {"status_line": answer.split(b"\r\n", 1)[0].decode(), "answered_after_s": round(time.monotonic() - start, 1)}


def heavy(url: str, text: str, request_tokens: int) -> dict:
    """Small requests one at a time while a worker tags a maximal request; their latency idle first."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sentence = " ".join(["Paris"] * 39 + ["."])
    big = {"texts": [sentence] * (request_tokens // 40)}
    with httpx.Client(timeout=120, headers=headers) as client:
        idle = _latencies(client, url, text, 200)
        outcome: dict = {}

        def send_heavy() -> None:  # its own client: an httpx.Client is not shared between threads here
            start = time.monotonic()
            with httpx.Client(timeout=120, headers=headers) as own:
                outcome["status"] = own.post(f"{url}/v1/tag", json=big).status_code
            outcome["seconds"] = round(time.monotonic() - start, 2)

        thread = threading.Thread(target=send_heavy)
        thread.start()
        time.sleep(0.2)
        busy = []
        while thread.is_alive():
            busy += _latencies(client, url, text, 10)
        thread.join()
    return {"heavy_tokens": len(big["texts"]) * 40, "heavy_status": outcome["status"],
            "heavy_seconds": outcome["seconds"], "idle": _summary(idle), "during_heavy": _summary(busy)}


def _latencies(client: httpx.Client, url: str, text: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.post(f"{url}/v1/tag", json={"text": text})
        out.append((time.perf_counter() - start) * 1000)
    return out


def _summary(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"requests": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2)}


def abuse(args, server_class, rss, text: str) -> list[dict]:
    """Every flood above against one server, in turn."""
    with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
        f.write(TOKEN)
    extra = ["--token-file", f.name, "--read-timeout", str(args.read_timeout), *args.serve_args.split()]
    server = server_class(args.model, args.workers[0], extra)
    results = []
    try:
        results.append(flood("long-words", server, rss, lambda: long_words(server.url)))
        results.append(flood("pipelining", server, rss, lambda: pipelining(server.port, args.flood_mb)))
        results.append(flood("slowloris", server, rss, lambda: slowloris(server.port, args.read_timeout)))
        results.append(flood("slow-body", server, rss, lambda: slow_body(server.port)))
        results.append(flood("heavy", server, rss, lambda: heavy(server.url, text, args.max_request_tokens)))
    finally:
        code = server.stop()
        Path(f.name).unlink()
    return [r | {"workers": args.workers[0], "exit_code": code} for r in results]


def long_sentences(model: str, sentences: list[list[str]], lengths: list[int]) -> list[dict]:
    """µs a token of one sentence of n tokens, against the same tokens batched as their own sentences."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from tagger import Tagger

    tagger = Tagger.load(model)
    words = [t for s in sentences for t in s if t not in {".", "!", "?"}]
    out = []
    for n in lengths:
        tokens = (words * (n // len(words) + 1))[:n]
        one = " ".join(tokens)
        batched, k = [], 0
        while k < n:  # the same tokens in sentences of the test set's lengths
            size = len(sentences[len(batched) % len(sentences)])
            batched.append(" ".join(tokens[k:k + size]) + " .")
            k += size
        tagger.predict("Warm up .")
        start = time.perf_counter()
        tagger.predict(one)
        single = time.perf_counter() - start
        start = time.perf_counter()
        tagger.predict(batched)
        many = time.perf_counter() - start
        out.append({"long_sentence_tokens": n, "one_sentence_s": round(single, 3),
                    "one_sentence_us_per_token": round(single / n * 1e6, 1),
                    "batched_us_per_token": round(many / n * 1e6, 1)})
    return out


def library(model: str, text: str, calls: int) -> dict:
    """`Tagger.predict` on one sentence, in this process: what the server's answers are compared with."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from tagger import Tagger

    tagger = Tagger.load(model)
    for _ in range(50):
        tagger.predict(text)
    ms = []
    for _ in range(calls):
        start = time.perf_counter()
        tagger.predict(text)
        ms.append((time.perf_counter() - start) * 1000)
    return {"library": "Tagger.predict", "tokens": len(text.split()), **_summary(ms)}


if __name__ == "__main__":
    print(json.dumps({"usage": "python bench/serve.py --model M --abuse | --long"}))
