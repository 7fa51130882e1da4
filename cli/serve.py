"""`tagger serve MODEL`: the tagger over HTTP (tagger/serving/server.py on uvicorn; --ray: Ray Serve)."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, List, Optional

import typer

from tagger.errors import ConfigError, InputError

DEFAULT_GRACE_S = 30.0


def register(app: typer.Typer, user_errors: Callable) -> None:
    @app.command()
    @user_errors
    def serve(
        model: Path = typer.Argument(..., metavar="MODEL_DIR"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
        port: int = typer.Option(8080, "--port", min=0, max=65535),
        workers: int = typer.Option(0, "--workers", min=0, help="server processes, each with its own copy of "
                                    "the model (0: one per CPU core)"),
        max_batch_tokens: int = typer.Option(16384, "--max-batch-tokens", min=1, help="a batch of requests "
                                             "closes at this many tokens"),
        batch_wait: float = typer.Option(0.0, "--batch-wait", min=0, metavar="MS", help="...or this many "
                                         "milliseconds after its first request (0: take what has arrived)"),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="sentences per network pass within "
                                       "a batch (sorted by length: smaller passes pad less)"),
        max_queue: int = typer.Option(1024, "--max-queue", min=1, help="requests waiting per worker; more "
                                      "get 503 with Retry-After"),
        timeout: float = typer.Option(10.0, "--timeout", min=0.001, metavar="SECONDS", help="a request not "
                                      "answered in this time gets 504"),
        max_body: int = typer.Option(1 << 20, "--max-body", min=1, metavar="BYTES", help="a larger request "
                                     "body gets 413"),
        max_n_best: int = typer.Option(10, "--max-n-best", min=0, help="the largest n_best a request may ask"),
        token_file: Optional[Path] = typer.Option(None, "--token-file", help="a file holding the bearer token "
                                                  "every request but /health must carry"),
        cors: Optional[List[str]] = typer.Option(None, "--cors", metavar="ORIGIN", help="allow this origin "
                                                 "(repeatable; '*': any); default: no CORS"),
        grace: float = typer.Option(DEFAULT_GRACE_S, "--grace", min=0, metavar="SECONDS", help="on SIGTERM, "
                                    "how long requests in flight may take to finish"),
        access_log: bool = typer.Option(False, "--access-log", help="log every request (costs throughput)"),
        ray: bool = typer.Option(False, "--ray", help="deploy on Ray Serve (pip extra: ray)"),
        address: Optional[str] = typer.Option(None, "--address", help="with --ray: the cluster ('auto', "
                                              "'ray://HOST:10001'; default: Ray on this machine)"),
        replicas: Optional[str] = typer.Option(None, "--replicas", metavar="N|auto", help="with --ray: "
                                               "replicas, or 'auto' for Ray Serve's autoscaling (default 1)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="log warnings and errors only"),
    ) -> None:
        """Serve MODEL_DIR over HTTP: POST /v1/tag, POST / (Hugging Face shape), /health, /info, /metrics."""
        try:
            from tagger.serving.server import Settings
        except ImportError as e:
            raise ConfigError(f"tagger serve needs the serve extra ({e.name} is missing): "
                              "pip install 'bilstm-tagger[serve]'") from None

        if (address or replicas) and not ray:
            raise ConfigError("--address and --replicas go with --ray")
        settings = Settings(max_batch_tokens=max_batch_tokens, batch_wait_ms=batch_wait, batch_size=batch_size,
                            max_queue=max_queue,
                            timeout_s=timeout, max_body_bytes=max_body, max_n_best=max_n_best,
                            token=read_token(token_file), cors_origins=tuple(cors or ()), drain_on_sigterm=True)
        if ray:
            from tagger.serving import ray_serve

            ray_serve.serve(model, settings, host, port, address=address, replicas=replicas, quiet=quiet)
            return
        workers = workers or len(os.sched_getaffinity(0))
        run(model, settings, host, port, workers, grace, access_log, quiet)


def read_token(path: Optional[Path]) -> Optional[str]:
    """The bearer token in `path` (surrounding whitespace dropped), or None without --token-file."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the token file ({e.__class__.__name__})", path=str(path)) from None
    if not token or any(c.isspace() for c in token):
        raise InputError("the token file must hold one token, without spaces", path=str(path))
    return token


def run(model: Path, settings, host: str, port: int, workers: int, grace: float, access_log: bool,
        quiet: bool) -> None:
    """One worker: the app in this process. Several: uvicorn's supervisor spawns them (each loads the model)
    and replaces one that dies; their metrics meet in a prometheus_client multiprocess directory."""
    import json

    import uvicorn

    from tagger.tagging.tagger import Tagger
    from tagger.serving.server import SERVE_ENV, create_app

    options = dict(host=host, port=port, timeout_graceful_shutdown=grace, access_log=access_log,
                   log_level="warning" if quiet else "info", lifespan="on", server_header=False)
    # uvicorn re-raises SIGTERM once drained: exit 0, as a finished shutdown should
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if workers == 1:
        app = create_app(model, settings)
        uvicorn.Server(uvicorn.Config(app, **options)).run()
        return
    Tagger.load(model)  # a bad model directory is one line here, not a traceback in every worker
    metrics_dir = tempfile.mkdtemp(prefix="tagger-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(settings).items()}
    os.environ[SERVE_ENV] = json.dumps({"model": str(model.resolve()), "settings": fields})
    try:
        uvicorn.run("tagger.serving.server:app_from_env", factory=True, workers=workers, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
