"""`tagger serve MODEL`: what the command does, from the model directory and options to a server plan, and
each uvicorn worker's app. (Named `serve`, not `serving`, so as not to share a name with tagger.serving.)

The CLI (cli/serve.py) parses the options, calls `plan`, then owns what is process-wide: signal handlers,
the collector (gc.freeze), environment variables and running uvicorn. Every bound on what a client may
cost is set here: the app's `Settings` (tokens, body size and read time, queue, time), and uvicorn's
(`limit_concurrency`, `backlog`, keep-alive, and tagger/serving/connections.py's header deadline and
pipelining cap).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tagger.errors import ConfigError

SERVE_ENV = "TAGGER_SERVE"  # JSON {"model": ..., "settings": {...}}: what each worker builds its app from
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this (uvicorn's default)
CONNECTIONS_PER_WORKER = 4096  # a last bound: more open connections or tasks get uvicorn's 503


@dataclass
class Plan:
    """A checked `tagger serve`: the model, the app's settings, the worker count and uvicorn's options."""

    model: Path
    settings: Any  # tagger.serving.server.Settings (imported when serving: the web stack is an extra)
    workers: int
    uvicorn: dict
    tagger: Any = None  # the model, loaded to check it: one worker in this process serves it as is

    def spec(self) -> str:
        """What a worker process needs to build its app (SERVE_ENV), as JSON."""
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.settings).items()}
        return json.dumps({"model": str(self.model.resolve()), "settings": fields})


def settings(**options: Any) -> Any:
    """The app's Settings from `tagger serve`'s options (a one-line error naming the extra without it)."""
    try:
        from tagger.serving.server import Settings
    except ImportError as e:
        raise ConfigError(f"tagger serve needs the serve extra ({e.name} is missing): "
                          "pip install 'bilstm-tagger[serve]'") from None
    return Settings(**options)


def plan(model: Path, settings: Any, host: str, port: int, workers: int, grace: float, access_log: bool,
         quiet: bool) -> Plan:
    """Check the model (a bad directory is one line here, not a traceback in every worker) and say how to
    run it: `workers` 0 means one per CPU core."""
    from tagger.serving.connections import BoundedHttpTools
    from tagger.serving.server import check_servable
    from tagger.tagging.tagger import Tagger

    tagger = Tagger.load(model)
    check_servable(tagger, str(model))

    options = dict(host=host, port=port, timeout_graceful_shutdown=grace, access_log=access_log,
                   log_level="warning" if quiet else "info", lifespan="on", server_header=False,
                   timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=CONNECTIONS_PER_WORKER,
                   http=functools.partial(BoundedHttpTools, header_timeout_s=settings.read_timeout_s))
    return Plan(model, settings, workers or len(os.sched_getaffinity(0)), options, tagger)


def app_from_spec(spec: str, tagger: Any = None) -> Any:
    """A worker's ASGI app from `Plan.spec()`: the model (loaded here unless given), warm, with the
    settings given."""
    from tagger.serving.server import Settings, create_app

    fields = json.loads(spec)
    options = Settings(**{k: tuple(v) if k == "cors_origins" else v for k, v in fields["settings"].items()})
    return create_app(tagger or fields["model"], options)
