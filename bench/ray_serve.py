"""`tagger serve --ray` under issue 33's flood and SIGTERM: what every request got, how long /health took.

    python bench/ray_serve.py --model M [--clients 1500] [--in-flight 100] [--sentences 20]

Starts `tagger serve M --ray` (its own Ray, default limits), then:
  flood    --clients requests at once, each --sentences 12-token sentences; while they are out, one GET
           /health (the app's) and one /-/healthz (Ray's proxy's own: is the proxy or the replica slow?).
           Reports the answers by (status, content type, Retry-After), the requests closed without an
           answer, the slowest answer, and both health checks' status and seconds.
  sigterm  --in-flight requests at once; SIGTERM once the first is answered. Reports the answers as above,
           and the command's exit status and seconds from SIGTERM to exit.
Prints one JSON object; the server's log goes to $TMPDIR/ray-serve-bench.log. Run it alone on the machine:
the client, Ray's proxy and the replica share its cores.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "John Smith visited Paris and met Angela Merkel in Berlin last week . "  # 12 tokens


def free_port() -> int:
    """A free port below Linux's ephemeral range, which Ray's own sockets draw from while it starts."""
    for port in random.sample(range(20000, 32768), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


def start(model: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "cli.main", "serve", model, "--ray", "--quiet", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while True:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)


async def burst(url: str, n: int, body: dict, meanwhile) -> tuple[dict, dict]:
    """n requests at once, `meanwhile(client, pending)` awaited while they are out; a summary of the answers
    and what meanwhile returned."""
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=n + 8)) as c:
        async def one():
            response = await c.post("/v1/tag", json=body)
            return response, time.perf_counter() - start

        pending = [asyncio.ensure_future(one()) for _ in range(n)]
        during = await meanwhile(c, pending)
        done = await asyncio.gather(*pending, return_exceptions=True)
    counts = collections.Counter()
    for item in done:
        if isinstance(item, Exception):
            counts[f"no answer ({type(item).__name__})"] += 1
        else:
            r = item[0]
            counts[f"{r.status_code} {r.headers.get('content-type')} retry-after={r.headers.get('retry-after')}"] += 1
    slowest = max((item[1] for item in done if not isinstance(item, Exception)), default=None)
    return {"answers": dict(counts.most_common()), "slowest_answer_s": slowest}, during


async def health(client, pending) -> dict:
    """/health (the app's, through Ray's proxy) and /-/healthz (the proxy's own), 0.5 s into the flood."""
    await asyncio.sleep(0.5)
    app, proxy = await asyncio.gather(timed(client, "/health"), timed(client, "/-/healthz"))
    return {"health": app, "proxy_healthz": proxy}


async def timed(client, path: str) -> dict:
    start = time.perf_counter()
    try:
        status = (await client.get(path)).status_code
    except httpx.TransportError as e:
        status = type(e).__name__
    return {"status": status, "s": round(time.perf_counter() - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--clients", type=int, default=1500)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--sentences", type=int, default=20)
    args = parser.parse_args()
    body = {"text": SENTENCE * args.sentences}
    log = Path(tempfile.gettempdir()) / "ray-serve-bench.log"  # the server's output
    out = {"clients": args.clients, "in_flight": args.in_flight, "tokens_a_request": 12 * args.sentences}

    process, url = start(args.model, log)
    flood, during = asyncio.run(burst(url, args.clients, body, health))
    out["flood"] = flood | during
    signalled = {}

    async def sigterm(client, pending):
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        process.send_signal(signal.SIGTERM)
        signalled["at"] = time.perf_counter()

    out["sigterm"], _ = asyncio.run(burst(url, args.in_flight, body, sigterm))
    out["sigterm"] |= {"exit": process.wait(timeout=300), "exit_s": round(time.perf_counter() - signalled["at"], 2)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
