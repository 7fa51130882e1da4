"""`tagger serve --ray` keeps the plain server's promises: every request it took is answered on SIGTERM,
overload is a JSON 503 with Retry-After and a late answer a JSON 504 while /health still answers, Ray's own
processes listen on loopback for a loopback --host, and the bearer token is in no process's environment.

Each server starts its own Ray (half a minute here), so the module starts two and asks each several
things; the one that is stopped with SIGTERM is stopped last. (That the answers equal the plain server's
is tests/test_server.py's test_ray_serve_answers_as_the_plain_server.)
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from test_server import free_port, train_sample_model

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'bilstm-tagger[ray]')")

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token-4-tests"
SENTENCE = "Angela Merkel visited Paris and met John Smith of Siemens AG in Berlin . "  # 15 tokens


class RayServer:
    """`tagger serve MODEL --ray ARGS` in a child process (its log in a file), up once /health answers 200."""

    def __init__(self, model: Path, log: Path, *args: str, headers: dict | None = None):
        self.url = f"http://127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "cli.main", "serve", str(model), "--ray", "--quiet",
                   "--port", self.url.rsplit(":", 1)[1], *args]
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=60, headers=headers)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text(errors="replace")
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the Ray server did not start in 240 s")

    def stop(self) -> int:
        """SIGTERM; the exit status."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture(scope="module")
def en_model(tmp_path_factory) -> Path:
    return train_sample_model(tmp_path_factory.mktemp("en"), "en")


@pytest.fixture(scope="module")
def ray_server(en_model, tmp_path_factory):
    """Default limits, a bearer token."""
    root = tmp_path_factory.mktemp("ray")
    (root / "token").write_text(TOKEN + "\n", encoding="utf-8")
    server = RayServer(en_model, root / "log", "--token-file", str(root / "token"),
                       headers={"Authorization": f"Bearer {TOKEN}"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_server(en_model, tmp_path_factory):
    """Two requests a replica at a time, and 0.2 s to answer one."""
    server = RayServer(en_model, tmp_path_factory.mktemp("ray-small") / "log", "--max-queue", "2",
                       "--timeout", "0.2")
    yield server
    server.stop()


async def _flood(url: str, n: int, body: dict, headers: dict | None = None, while_waiting=None) -> tuple:
    """n requests at once; while they are out, `while_waiting(client, pending)` (awaited); the answers (a
    response, or the exception that ended the request) and what while_waiting returned."""
    limits = httpx.Limits(max_connections=n + 8)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, headers=headers) as client:
        pending = [asyncio.ensure_future(client.post("/v1/tag", json=body)) for _ in range(n)]
        during = await while_waiting(client, pending) if while_waiting else None
        return await asyncio.gather(*pending, return_exceptions=True), during


def _is_json_error(response: httpx.Response) -> bool:
    return response.headers["content-type"] == "application/json" and list(response.json()) == ["error"]


# -- the replica's door, without Ray ------------------------------------------------------------------------

def test_the_door_answers_what_it_took_refuses_the_rest_once_draining_and_waits_for_quiet():
    from tagger.serving.ray_serve import Door

    class Service:
        state = "ready"

        def drain(self):
            self.state = "draining"

    release = asyncio.Event()

    async def app(scope, receive, send):  # the tagger's app: /v1/tag answers once released
        if scope["path"] == "/v1/tag":
            await release.wait()
        body = json.dumps({"status": service.state}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def call(door, path):
        sent = []

        async def send(message):
            sent.append(message)

        await door({"type": "http", "path": path}, None, send)
        return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]

    async def scenario():
        door = Door(app, service, quiet_s=0.3)
        taken = asyncio.ensure_future(call(door, "/v1/tag"))
        await asyncio.sleep(0)  # in the app, waiting
        drained = asyncio.ensure_future(door.drain())
        while not door.draining:
            await asyncio.sleep(0.05)
        refused = await call(door, "/v1/tag")
        health = await call(door, "/health")
        assert not drained.done()  # the request it took is not answered yet
        release.set()
        answered = await taken
        last_answer = time.monotonic()
        await drained  # and not at once: Ray's proxy is still writing that answer to its client
        assert time.monotonic() - last_answer >= 0.3
        return answered, refused, health

    service = Service()
    taken, refused, health = asyncio.run(scenario())
    assert taken[0] == 200
    assert refused[0] == 503 and json.loads(refused[2]) == {"error": "the server is shutting down; retry shortly"}
    assert refused[1][b"retry-after"] == b"1" and refused[1][b"content-type"] == b"application/json"
    assert health == (200, {}, b'{"status": "draining"}')  # the app's own /health (503 in the real one)


# -- overload ----------------------------------------------------------------------------------------------

def test_overload_is_a_json_503_with_retry_after_a_late_answer_a_json_504_and_health_answers(small_server):
    body = {"texts": [SENTENCE * 2] * 1500}  # 45,000 tokens: longer than 0.2 s on any machine

    async def health(client, pending):
        return await client.get("/health", timeout=30)

    answers, health = asyncio.run(_flood(small_server.url, 24, body, while_waiting=health))
    assert health.status_code == 200 and health.json() == {"status": "ready"}
    assert not [a for a in answers if isinstance(a, Exception)]
    statuses = {a.status_code for a in answers}
    assert {503, 504} <= statuses <= {200, 503, 504}
    refused = [a for a in answers if a.status_code != 200]
    assert all(_is_json_error(a) for a in refused), [(a.status_code, a.text) for a in refused]
    assert all(a.headers["retry-after"] == "1" for a in refused if a.status_code == 503)
    assert small_server.client.post("/v1/tag", json={"text": SENTENCE}).status_code in (200, 504)


# -- what listens where, where the token is ------------------------------------------------------------------

def test_rays_processes_listen_on_loopback_and_hold_no_token(ray_server):
    assert ray_server.client.get("/info").status_code == 200
    assert httpx.get(f"{ray_server.url}/info").status_code == 401  # the token is needed (and known to Ray's app)
    processes = _tree(ray_server.process.pid)
    assert len(processes) > 5  # the command, Ray's GCS, raylet, agents, the controller, proxy and replica
    listening = _listening(processes)
    outside = sorted(name for address, name in listening if address not in LOOPBACK)
    # one socket Ray Serve binds to every interface itself: the replica's inter-deployment gRPC server
    assert outside == ["ray::ServeRepli"]
    for pid in processes:
        for part in ("environ", "cmdline"):
            try:
                assert TOKEN.encode() not in Path(f"/proc/{pid}/{part}").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue  # gone meanwhile


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def _tree(root: int) -> list[int]:
    """root and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _listening(pids: list[int]) -> list[tuple[str, str]]:
    """(local address in /proc/net's hex, process name) of every listening TCP socket the processes hold."""
    owner = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[link[8:-1]] = name
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in owner:  # 0A: LISTEN; fields[9]: the socket's inode
                out.append((fields[1].split(":")[0], owner[fields[9]]))
    return out


# -- SIGTERM (last: it stops the server) ---------------------------------------------------------------------

def test_sigterm_answers_every_request_in_flight_and_exits_0(ray_server):
    body = {"texts": [SENTENCE] * 300}
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def sigterm_once_tagging(client, pending):
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)  # the replica is at work
        ray_server.process.send_signal(signal.SIGTERM)

    answers, _ = asyncio.run(_flood(ray_server.url, 60, body, headers, sigterm_once_tagging))
    assert not [a for a in answers if isinstance(a, Exception)]  # none closed without an answer
    tagged = [a for a in answers if a.status_code == 200]
    assert tagged and all(len(a.json()) == 300 for a in tagged)
    # a request still on its way to the replica when the drain began: refused, to be retried
    refused = [a for a in answers if a.status_code != 200]
    assert all(a.status_code == 503 and _is_json_error(a) and a.headers["retry-after"] == "1" for a in refused)
    assert ray_server.process.wait(timeout=120) == 0
