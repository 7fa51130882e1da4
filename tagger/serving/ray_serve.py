"""`tagger serve MODEL --ray`: the same app (tagger/serving/server.py) deployed on Ray Serve.

Each replica builds the app with `create_app` and hands jobs to a `@serve.batch` method instead of the
server's own Batcher: Ray Serve gathers the requests that arrive together at a replica (up to
max_batch_size, or after batch_wait_timeout_s) and the replica tags them in one engine call (in a thread,
off its event loop). Ray routes, scales (`--replicas auto`: Ray's autoscaling config) and replaces replicas;
nothing of that is ours. The endpoints are the same; /metrics covers the replica that answers it (Ray Serve
exports its own per-deployment metrics to Prometheus).

The plain server's promises, kept on Ray:
- Overload is refused in the app, as JSON: a replica tags up to --max-queue requests at a time, and Ray sends
  it HEADROOM more (`max_ongoing_requests`), so that what is past the queue reaches the app at once and gets
  the app's 503 with Retry-After, and /health is not queued behind them in Ray's router. Ray's router queue,
  as long, is for a flood past that (`max_queued_requests`: Ray's 503, text, with Retry-After).
- A request is answered within --timeout of reaching the app (504, JSON). Ray's proxy timeout
  (`request_timeout_s`, a text 408 counted from the proxy) stays off: under a flood the time a request spends
  in Ray's proxy before the app sees it would turn the app's JSON 504s into Ray's 408s.
- SIGTERM drains: the command tells every replica through a small Ray actor (Drain); from then on a replica
  answers /health 503, takes requests for LATE_S more (those Ray's proxy took before SIGTERM), then answers
  new ones 503 (JSON, Retry-After), and reports once the requests it took are answered and QUIET_S have
  passed without a request (Ray's proxy is still writing the last answers, and may hand over one it held). The command waits
  for every replica (up to --grace), then stops Ray (or deletes the app from a cluster, whose proxies stay
  up) and exits 0.
- Ray started here for a loopback --host listens on loopback (Ray's local mode: its node address is
  127.0.0.1), but for one socket a replica that Ray Serve binds to every interface itself (its
  inter-deployment gRPC server, behind Ray's cluster token). The bearer token reaches the replicas as a
  deployment argument (kept by Ray's control store), never in a process environment.

The model directory must exist at the same path on every node that runs a replica.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from tagger.errors import ConfigError, TaggerError
from tagger.serving.batcher import QueueFull
from tagger.serving.bodies import TagJob
from tagger.serving.server import Settings

APP = "tagger"  # the Ray Serve application's name
MAX_BATCH_REQUESTS = 256  # @serve.batch counts requests, not tokens: the budget over a typical 16-token request
HEADROOM = 4096  # requests a replica takes beyond its queue: /health, /info, /metrics, and those refused with 503
LATE_S = 1.0  # after SIGTERM, a replica still takes requests this long: those Ray's proxy had taken before
QUIET_S = 1.0  # a drained replica reports once no request has come or gone this long: the proxy's last writes
DEFAULT_GRACE_S = 30.0  # on SIGTERM, how long the replicas may take to answer what they have
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is 127.0.0.1 (read at import)
DRAINING = json.dumps({"error": "the server is shutting down; retry shortly"}).encode()


class Door:
    """The replica's ASGI app around the tagger's: counts the requests in flight and, once draining (LATE_S
    after SIGTERM), answers every new one but /health with 503 (JSON, Retry-After, Connection: close)."""

    def __init__(self, app: Callable, service: Any, quiet_s: float = QUIET_S):
        self.app, self.service, self.quiet_s = app, service, quiet_s
        self.in_flight = 0
        self.draining = False
        self.last_seen = time.monotonic()  # a request came or went

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":  # lifespan
            return await self.app(scope, receive, send)
        self.last_seen = time.monotonic()
        if self.draining and scope["path"] != "/health":
            return await _refuse(send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last_seen = time.monotonic()

    async def drain(self) -> None:
        """Take requests for LATE_S more (those Ray's proxy took before SIGTERM are on their way here), then
        no more; return once those taken are answered and none has come or gone for quiet_s: Ray's proxy
        is still writing the last answers to their clients, and stopping Ray would cut them."""
        self.service.drain()  # /health: 503; a body still arriving gets a second more
        await asyncio.sleep(LATE_S)
        self.draining = True
        while self.in_flight or time.monotonic() - self.last_seen < self.quiet_s:
            await asyncio.sleep(0.05)


async def _refuse(send: Callable) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(DRAINING)).encode()),
               (b"retry-after", b"1"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": DRAINING})


def _deployment(serve):
    """The deployment class, made when Ray Serve is imported (it decorates with serve's own functions)."""

    @serve.deployment(name="tagger")
    @serve.ingress()
    class TaggerDeployment:
        async def __init__(self, model: str, settings: dict, drain: Any):
            from tagger.serving.server import create_app

            options = Settings(**{k: tuple(v) if k == "cors_origins" else v for k, v in settings.items()})
            self.asgi = create_app(model, options, submit=self.submit)  # not .app: Ray's wrapper has that name
            self.service = self.asgi.state.service
            self.door = Door(self.asgi, self.service)
            self.max_queue, self.queued = options.max_queue, 0
            self.tag.set_max_batch_size(max(1, min(MAX_BATCH_REQUESTS, options.max_batch_tokens // 16)))
            self.tag.set_batch_wait_timeout_s(options.batch_wait_ms / 1000)
            self.me, self.drain = uuid.uuid4().hex, drain
            self.watch = asyncio.get_running_loop().create_task(self.await_drain())

        def __serve_build_asgi_app__(self):
            return self.door

        async def submit(self, job: TagJob):
            """A job to @serve.batch, or QueueFull (the app's 503) past --max-queue waiting or being tagged."""
            if self.queued >= self.max_queue:
                raise QueueFull
            self.queued += 1
            try:
                return await self.tag(job)
            finally:
                self.queued -= 1

        @serve.batch(max_batch_size=MAX_BATCH_REQUESTS, batch_wait_timeout_s=0.0)
        async def tag(self, jobs: list[TagJob]) -> list:
            return await asyncio.to_thread(self.service.handle, jobs)

        async def await_drain(self) -> None:
            """Wait for SIGTERM (the Drain actor), drain, say so."""
            await self.drain.wait.remote(self.me)
            await self.door.drain()
            await self.drain.idle.remote(self.me)

        async def __del__(self):  # Ray stops this replica (scaled down, replaced): SIGTERM need not wait for it
            await self.drain.idle.remote(self.me)

    return TaggerDeployment


def _drain_actor(ray):
    """SIGTERM's messenger: each replica waits in `wait` and reports `idle` once drained; `start` wakes
    them all; `busy` counts the replicas still answering."""

    @ray.remote(num_cpus=0)
    class Drain:
        def __init__(self):
            self.started, self.replicas = asyncio.Event(), set()

        async def wait(self, replica: str) -> None:
            self.replicas.add(replica)
            await self.started.wait()

        async def start(self) -> None:
            self.started.set()

        async def idle(self, replica: str) -> None:
            self.replicas.discard(replica)

        async def busy(self) -> int:
            return len(self.replicas)

    return Drain


def serve(model: Path, settings: Settings, host: str, port: int, address: str | None = None,
          replicas: str | None = None, quiet: bool = False, grace: float = DEFAULT_GRACE_S) -> None:
    """Deploy MODEL's app on Ray Serve (this machine's Ray, or the cluster at `address`) and keep it up
    until SIGTERM or Ctrl-C, which drain it (see the module's docstring); exits 0. The signal handlers
    are the caller's again on return."""
    scale = _replicas(replicas)
    from tagger.tagging.tagger import Tagger

    Tagger.load(model)  # a bad model directory is one line here, not a failed replica
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    ray, ray_serve = _start_ray(address, host, quiet)
    stop = threading.Event()  # SIGTERM or Ctrl-C from here on (ray.init installed a handler: ours replaces it)
    for sig in handlers:
        signal.signal(sig, lambda *_: stop.set())
    try:
        ray_serve.start(http_options={"host": host, "port": port},
                        logging_config={"log_level": "WARNING"} if quiet else None)
        drain = _drain_actor(ray).remote()
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
        deployment = _deployment(ray_serve).options(**scale, **_limits(settings, grace))
        app = deployment.bind(str(Path(model).resolve()), fields, drain)
        try:
            ray_serve.run(app, name=APP, route_prefix="/")
        except RuntimeError as e:  # the replicas' own errors are in Ray's log above
            raise TaggerError(f"Ray Serve could not deploy the tagger ({str(e).splitlines()[0]})") from None
        if not quiet:
            print(f"tagger: serving {model} on Ray Serve at http://{host}:{port}", flush=True)
        while not stop.wait(0.2):
            pass
        _drain(ray, drain, grace)
        if address is not None:  # a cluster's proxies stay up: the app goes (it has answered everything)
            ray_serve.delete(APP)
    finally:
        if address is None:  # the Ray this command started: gone with it; a cluster's stays up
            ray.shutdown()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _start_ray(address: str | None, host: str, quiet: bool):
    """ray and ray.serve, connected to `address` or to a Ray started here: on loopback only when `host`
    is a loopback address (set before Ray is first imported; a process that imported it already gets Ray's
    usual addresses)."""
    local_only = address is None and _is_loopback(host) and "ray" not in sys.modules
    previous = os.environ.get(LOCAL_ONLY_ENV)
    if local_only:
        os.environ[LOCAL_ONLY_ENV] = "0"
    try:
        import ray
        from ray import serve as ray_serve
    except ImportError:
        raise ConfigError("--ray needs Ray Serve: pip install 'bilstm-tagger[ray]'") from None
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING" if quiet else "INFO",
                 configure_logging=True)
    finally:  # Ray's processes have it; this process's environment is as it was
        if local_only and previous is None:
            os.environ.pop(LOCAL_ONLY_ENV, None)
        elif local_only:
            os.environ[LOCAL_ONLY_ENV] = previous
    return ray, ray_serve


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _drain(ray, drain: Any, grace: float) -> None:
    """Tell every replica to drain; return once all have answered what they took, or after `grace` s (a
    replica that died unannounced holds it that long)."""
    ray.get(drain.start.remote())
    deadline = time.monotonic() + grace
    while ray.get(drain.busy.remote()) and time.monotonic() < deadline:
        time.sleep(0.05)


def _limits(settings: Settings, grace: float) -> dict:
    """Ray Serve's deployment options for the server's limits (see the module's docstring)."""
    from ray.serve.config import BackpressureConfig

    slots = settings.max_queue + HEADROOM  # Ray's router also counts requests it is placing: never only a few
    return {"max_ongoing_requests": slots, "max_queued_requests": slots,
            "backpressure_config": BackpressureConfig(retry_after_s=1), "graceful_shutdown_timeout_s": grace}


def _replicas(value: str | None) -> dict:
    """--replicas N (a number) or auto (Ray Serve's default autoscaling config); default 1."""
    if value is None:
        return {"num_replicas": 1}
    if value == "auto":
        return {"num_replicas": "auto"}
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--replicas must be a number of at least 1 or 'auto', not {value!r}")
    return {"num_replicas": int(value)}
