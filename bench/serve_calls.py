"""The server's own work per request, without sockets or a load generator: `tagger serve`'s protocol
(tagger/serving/connections.py on uvicorn) and app, fed by in-process connections that send their next
`POST /v1/tag` (one 12-token sentence) as soon as their answer is complete.

    python bench/serve_calls.py --model M [--connections 1 32] [--requests 2000] [--checkout DIR]

For each number of connections it reports:
- `calls_per_request`: Python and C function calls a request costs, in every thread (the engine's too),
  counted by a profile hook. Deterministic: valid on a busy machine, and comparable between checkouts
  (--checkout: another one's tagger/, e.g. `git worktree add /tmp/base 86e8972`).
- `writes_per_answer`: the transport writes (system calls, on a socket) an answer takes.
- `cpu_us_per_request`: process CPU time per request, best of --rounds (valid only alone on the machine).
With one connection the engine is idle at each request; with 32 they are batched.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import threading
import time
from pathlib import Path

from runcli import emit  # bench/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parent.parent
TEXT = "SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT ."


class Connection:
    """One client on a fake transport: sends a request, counts the writes, sends the next once answered."""

    def __init__(self, protocol, request: bytes, left: dict):
        self.protocol, self.request, self.left = protocol, request, left
        self.buffer, self.writes, self.closed = b"", 0, False
        protocol.connection_made(self)

    # what uvicorn's protocol asks of its transport
    def write(self, data: bytes) -> None:
        self.writes += 1
        self.buffer += data
        head, found, body = self.buffer.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if not found or length is None or len(body) < length:
            return
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"error: the server answered {head.splitlines()[0]!r}")
        self.buffer = b""
        self.left["requests"] -= 1
        if self.left["requests"] > 0:
            asyncio.get_running_loop().call_soon(self.send)
        elif not self.left["done"].done():
            self.left["done"].set_result(None)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def send(self) -> None:
        if self.left["requests"] > 0:
            self.protocol.data_received(self.request)


async def drive(make, request: bytes, connections: int, requests: int) -> tuple[float, float, list]:
    """Send `requests` requests over `connections` connections: (wall s, CPU s, the connections)."""
    left = {"requests": requests, "done": asyncio.get_running_loop().create_future()}
    clients = [Connection(make(), request, left) for _ in range(connections)]
    wall, cpu = time.perf_counter(), time.process_time()
    for client in clients:
        client.send()
    await left["done"]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await asyncio.sleep(0.05)  # the last answers of the other connections
    for client in clients:
        client.protocol.connection_lost(None)
    return wall, cpu, clients


def counting() -> tuple[list[int], object]:
    count = [0]

    def hook(frame, event, arg) -> None:
        if event == "call" or event == "c_call":
            count[0] += 1
    return count, hook


async def measure(args) -> list[dict]:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from tagger.serving.connections import BoundedHttpTools
    from tagger.serving.server import Settings, create_app

    body = json.dumps({"text": TEXT}).encode()
    request = b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" \
        % (len(body), body)
    app = create_app(args.model, Settings())
    config = Config(app, lifespan="off", log_level="warning", access_log=False, proxy_headers=False)
    config.load()
    loop = asyncio.get_running_loop()
    make = functools.partial(BoundedHttpTools, config=config, server_state=ServerState(), app_state={}, _loop=loop)
    results = []
    for connections in args.connections:
        app.state.service.batcher.start()  # a fresh engine thread, started under the hook below
        count, hook = counting()
        threading.setprofile(hook)
        sys.setprofile(hook)
        _, _, clients = await drive(make, request, connections, args.requests)
        sys.setprofile(None)
        threading.setprofile(None)
        await app.state.service.batcher.stop()
        app.state.service.batcher.start()
        cpu = min([(await drive(make, request, connections, args.requests))[1] for _ in range(args.rounds)])
        await app.state.service.batcher.stop()
        results.append({"checkout": str(args.checkout), "connections": connections, "requests": args.requests,
                        "calls_per_request": round(count[0] / args.requests),
                        "writes_per_answer": round(sum(c.writes for c in clients) / args.requests, 2),
                        "cpu_us_per_request": round(cpu / args.requests * 1e6)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="CPU time: the best of this many runs")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose tagger/ serves")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    args.model = str(Path(args.model).resolve())
    sys.path.insert(0, str(args.checkout.resolve()))
    import uvloop

    emit(uvloop.run(measure(args)), args.output)


if __name__ == "__main__":
    main()
