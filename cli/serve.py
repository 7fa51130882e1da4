"""`tagger serve MODEL`: the tagger over HTTP (tagger/serving/server.py on uvicorn; --ray: Ray Serve).

Parses the options and calls tagger/commands/serve.py for the plan; what is process-wide lives here, at the
edge: SIGTERM (drain, then exit 0), the collector (gc.freeze once the model is loaded), the environment
(the workers' spec, prometheus_client's multiprocess directory) and uvicorn itself.
"""
from __future__ import annotations

import functools
import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional

import typer

from tagger.errors import ConfigError, InputError

if TYPE_CHECKING:  # imported when `tagger serve` runs: every other command starts without it
    from tagger.commands import serve as serving

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
        max_sentence_tokens: int = typer.Option(2000, "--max-sentence-tokens", min=1, help="a request with a "
                                                "longer sentence gets 413"),
        max_request_tokens: int = typer.Option(100_000, "--max-request-tokens", min=1, help="a request with more "
                                               "tokens gets 413"),
        read_timeout: float = typer.Option(10.0, "--read-timeout", min=0.001, metavar="SECONDS", help="a "
                                           "request's headers, then its body, must arrive within this time "
                                           "(headers: the connection is closed; body: 408)"),
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
        label_studio: Optional[Path] = typer.Option(None, "--label-studio", metavar="WORKDIR", help="mount the "
                                                    "Label Studio ML backend at /labelstudio/ (one worker); "
                                                    "annotations and new models go to WORKDIR"),
        dev: Optional[Path] = typer.Option(None, "--dev", help="with --label-studio: the dev set that lets it "
                                           "retrain (START_TRAINING) and checks each new model"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="log warnings and errors only"),
    ) -> None:
        """Serve MODEL_DIR over HTTP: POST /v1/tag, POST / (Hugging Face shape), /health, /info, /metrics."""
        from tagger.commands import serve as serving

        if (address or replicas) and not ray:
            raise ConfigError("--address and --replicas go with --ray")
        settings = serving.settings(max_batch_tokens=max_batch_tokens, batch_wait_ms=batch_wait,
                                    batch_size=batch_size, max_queue=max_queue, timeout_s=timeout,
                                    max_body_bytes=max_body, max_sentence_tokens=max_sentence_tokens,
                                    max_request_tokens=max_request_tokens, read_timeout_s=read_timeout,
                                    max_n_best=max_n_best, token=read_token(token_file),
                                    cors_origins=tuple(cors or ()))
        build = label_studio_app(model, label_studio, dev, host, settings, ray, workers)
        if ray:
            from tagger.serving import ray_serve

            ray_serve.serve(model, settings, host, port, address=address, replicas=replicas, quiet=quiet,
                            grace=grace)
            return
        run(serving.plan(model, settings, host, port, 1 if build else workers, grace, access_log, quiet), build)


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


def run(plan: serving.Plan, build: Optional[Callable[[Any], Any]] = None) -> None:
    """One worker: the app in this process. Several: uvicorn's supervisor spawns them (each loads the model,
    through `worker_app`) and replaces one that dies; their metrics meet in a prometheus_client
    multiprocess directory."""
    import uvicorn

    from tagger.commands import serve as serving

    # uvicorn re-raises SIGTERM once drained: exit 0, as a finished shutdown should
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.environ[serving.SERVE_ENV] = plan.spec()
    if plan.workers == 1:  # the factory runs inside uvicorn's signal handling, so that drain_on_sigterm chains
        factory = functools.partial(worker_app, plan.tagger, build)
        uvicorn.Server(uvicorn.Config(factory, factory=True, **plan.uvicorn)).run()
        return
    metrics_dir = tempfile.mkdtemp(prefix="tagger-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("cli.serve:worker_app", factory=True, workers=plan.workers, **plan.uvicorn)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_app(tagger: Any = None, build: Optional[Callable[[Any], Any]] = None) -> Any:
    """uvicorn's factory in each worker process (spawned, not forked: each loads the model itself): the app
    `run` described in SERVE_ENV, with this process's settings: the loaded model frozen out of the
    collector's walks, and SIGTERM draining the service."""
    from tagger.commands import serve as serving

    app = build(tagger) if build else serving.app_from_spec(os.environ[serving.SERVE_ENV], tagger)
    gc.freeze()  # the model lives as long as the process: the collector stops walking it
    drain_on_sigterm(app.state.service.drain)
    return app


def drain_on_sigterm(drain: Callable[[], None]) -> None:
    """Chain onto uvicorn's SIGTERM handler: `drain()` first (/health says 503, slow bodies are cut short),
    then uvicorn's graceful shutdown."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(sig: int, frame: Any) -> None:
        drain()
        if callable(previous):
            previous(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def label_studio_app(model: Path, workdir: Optional[Path], dev: Optional[Path], host: str, settings: Any,
                     ray: bool, workers: int) -> Optional[Callable[[Any], Any]]:
    """With --label-studio, checked: the builder of the server with the backend mounted, its training the
    library's (tagger.commands.train, given here: the doors do not import the commands). One worker, so that
    one model version answers and one training runs at a time; a token wherever it can train beyond loopback."""
    if workdir is None:
        if dev is not None:
            raise ConfigError("--dev goes with --label-studio")
        return None
    if ray or workers > 1:
        raise ConfigError("--label-studio serves from one worker, without --ray (one model version, one "
                          "training at a time): leave out --workers and --ray")
    from tagger import commands
    from tagger.serving import labelstudio

    labelstudio.check_exposure(host, settings.token, can_train=dev is not None)
    if dev is not None and not dev.is_file():
        raise InputError("no such dev file", path=str(dev))
    if workdir.exists() and not workdir.is_dir():
        raise InputError("the Label Studio work directory is not a directory", path=str(workdir))
    model, workdir, dev = model.resolve(), workdir.resolve(), dev.resolve() if dev else None
    return lambda tagger: labelstudio.create_app(model, workdir, dev, train=commands.train, settings=settings,
                                                 tagger=tagger)
