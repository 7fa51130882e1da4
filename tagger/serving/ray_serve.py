"""`tagger serve MODEL --ray`: the same app (tagger/serving/server.py) deployed on Ray Serve.

Each replica builds the app with `create_app` and hands jobs to a `@serve.batch` method instead of the
server's own Batcher: Ray Serve gathers the requests that arrive together at a replica (up to
max_batch_size, or after batch_wait_timeout_s) and the replica tags them in one engine call (in a thread,
off its event loop). Ray routes, queues (`max_queued_requests`: past it, 503), scales (`--replicas auto`:
Ray's autoscaling config) and replaces replicas; nothing of that is ours. The endpoints are the same; /metrics
covers the replica that answers it (Ray Serve exports its own per-deployment metrics to Prometheus).

The model directory must exist at the same path on every node that runs a replica.
"""
from __future__ import annotations

import asyncio
import threading
import signal
from dataclasses import asdict
from pathlib import Path

from tagger.errors import ConfigError, TaggerError
from tagger.serving.bodies import TagJob
from tagger.serving.server import Settings, Tagged

APP = "tagger"  # the Ray Serve application's name
MAX_BATCH_REQUESTS = 256  # @serve.batch counts requests, not tokens: the budget over a typical 16-token request


def _deployment(serve):
    """The deployment class, made when Ray Serve is imported (it decorates with serve's own functions)."""

    @serve.deployment(name="tagger")
    @serve.ingress()
    class TaggerDeployment:
        def __init__(self, model: str, settings: dict):
            from tagger.serving.server import create_app

            options = Settings(**{k: tuple(v) if k == "cors_origins" else v for k, v in settings.items()})
            self.asgi = create_app(model, options, submit=self.tag)  # not .app: Ray's wrapper has that name
            self.service = self.asgi.state.service
            self.tag.set_max_batch_size(max(1, min(MAX_BATCH_REQUESTS, options.max_batch_tokens // 16)))
            self.tag.set_batch_wait_timeout_s(options.batch_wait_ms / 1000)

        def __serve_build_asgi_app__(self):
            return self.asgi

        @serve.batch(max_batch_size=MAX_BATCH_REQUESTS, batch_wait_timeout_s=0.0)
        async def tag(self, jobs: list[TagJob]) -> list[Tagged | Exception]:
            return await asyncio.to_thread(self.service.handle, jobs)

    return TaggerDeployment


def serve(model: Path, settings: Settings, host: str, port: int, address: str | None = None,
          replicas: str | None = None, quiet: bool = False) -> None:
    """Deploy MODEL's app on Ray Serve (this machine's Ray, or the cluster at `address`) and keep it up
    until SIGTERM or Ctrl-C, which shut the deployment down; exits 0."""
    try:
        import ray
        from ray import serve as ray_serve
    except ImportError:
        raise ConfigError("--ray needs Ray Serve: pip install 'bilstm-tagger[ray]'") from None
    deploy_options = _replicas(replicas) | {"max_queued_requests": settings.max_queue}
    from tagger.tagging.tagger import Tagger

    Tagger.load(model)  # a bad model directory is one line here, not a failed replica
    ray.init(address=address, include_dashboard=False, logging_level="WARNING" if quiet else "INFO",
             configure_logging=True)
    stop = threading.Event()  # SIGTERM or Ctrl-C from here on (ray.init installed a handler: ours replaces it)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        ray_serve.start(http_options={"host": host, "port": port},
                        logging_config={"log_level": "WARNING"} if quiet else None)
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
        app = _deployment(ray_serve).options(**deploy_options).bind(str(Path(model).resolve()), fields)
        try:
            ray_serve.run(app, name=APP, route_prefix="/")
        except RuntimeError as e:  # the replicas' own errors are in Ray's log above
            raise TaggerError(f"Ray Serve could not deploy the tagger ({str(e).splitlines()[0]})") from None
        if not quiet:
            print(f"tagger: serving {model} on Ray Serve at http://{host}:{port}", flush=True)
        while not stop.wait(0.2):
            pass
        ray_serve.delete(APP)  # its replicas finish the requests in flight first
    finally:
        if address is None:  # the Ray this command started: gone with it; a cluster's stays up
            ray.shutdown()


def _replicas(value: str | None) -> dict:
    """--replicas N (a number) or auto (Ray Serve's default autoscaling config); default 1."""
    if value is None:
        return {"num_replicas": 1}
    if value == "auto":
        return {"num_replicas": "auto"}
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--replicas must be a number of at least 1 or 'auto', not {value!r}")
    return {"num_replicas": int(value)}
