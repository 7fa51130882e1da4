"""The tagger over HTTP: `create_app("model/")` is an ASGI app (Starlette), `tagger serve` runs it on uvicorn.

Endpoints:
  POST /v1/tag   {"text": str} | {"texts": [str]} | {"tokens": [[str]]}, optional "scores", "min_score",
                 "n_best": the records `tagger predict` writes (JSONL writer), one object for "text", a
                 list in input order otherwise.
  POST /         the Hugging Face token-classification shape: {"inputs": str | [str], "parameters": {...}}
                 -> [{"entity_group", "score", "word", "start", "end"}] (a list of those per input for a list).
  GET /health    200 {"status": "ready"}; 503 while loading or draining. Never needs the token.
  GET /info      what `tagger info --json` prints.
  GET /metrics   Prometheus text: requests by route and status, latency, batch sizes, tokens, queue depth.

Requests are micro-batched (tagger/serving/batcher.py): whatever arrives together is tagged in one engine
call, in a thread, off the event loop (tagger/serving/jobs.py); an idle server tags a lone small request at
once, on the event loop (no thread hops: `Settings.inline_tokens`). Every
limit (body size and read time, tokens a sentence and a request, queue, time, batch) is a `Settings` field
and a `tagger serve` flag; a request past one gets its status (408, 413, 503 + Retry-After, 504) and a
one-line JSON body {"error": "..."}, never a traceback. Work past a 504 stops at the next chunk. No request
names a file or a model: the model is the one given at start. A client that hangs up mid-body is counted
under status 499 and logged by nobody. Process-wide settings (signals, the collector) are the caller's:
`tagger serve` (cli/serve.py) calls `Service.drain` on SIGTERM.

Extending (e.g. an annotation tool's backend): pass `routes=[Route(...)]` to `create_app`; an endpoint finds
the `Service` (the tagger, the batcher, `await service.tag_texts(...)`) at `request.app.state.service` and
can wrap itself in `service.endpoint(name, fn)` to get the token check, metrics and error handling.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from itertools import chain
from typing import Any, Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tagger.errors import ConfigError, ModelError
from tagger.serving import jobs
from tagger.serving.batcher import Batcher, BatchStats, QueueFull
from tagger.serving.bodies import (CLOSE, BodyReads, ClientGone, HTTPError, TagJob, hf_entities, parse_hf_request,
                                   parse_tag_request, read_json)
from tagger.serving.jobs import Tagged
from tagger.serving.server_metrics import Metrics
from tagger.tagging.confidence import ScoreOptions
from tagger.tagging.tagger import Tagger
from tagger.tagging.writers import jsonl

log = logging.getLogger("tagger.server")

JSON = "application/json"
INLINE_CHARS_PER_TOKEN = 16  # what a small job may hold (Settings.inline_tokens): its tokens are estimated from
                             # spaces, so a long text of few spaces must not pass for one


@dataclass
class Settings:
    """What `tagger serve` flags set; the defaults are the documented ones (bench/README.md: serving)."""

    max_batch_tokens: int = 16384  # a batch closes at this many tokens...
    batch_wait_ms: float = 0.0     # ...or this long after its first request (0: take what has arrived)
    max_queue: int = 1024          # requests waiting for the engine per worker; more get 503 + Retry-After
    timeout_s: float = 10.0        # a request not answered in this time gets 504
    max_body_bytes: int = 1 << 20  # a larger body gets 413
    max_sentence_tokens: int = 2000  # a request with a longer sentence gets 413 (one sentence is tagged
                                     # token after token: ~80 us a token, batching cannot share its steps)
    max_request_tokens: int = 100_000  # a request with more tokens in all gets 413
    read_timeout_s: float = 10.0   # a body not received in this time gets 408 (headers: serving/connections.py)
    max_n_best: int = 10           # the largest n_best a request may ask for
    token: str | None = None       # bearer token (--token-file); None: no authentication
    cors_origins: tuple[str, ...] = ()  # origins allowed by CORS (--cors); none: no CORS headers at all
    batch_size: int = 64           # sentences per network pass within an engine call (sorted by length)
    inline_tokens: int = 64        # a request of at most this many tokens (estimated) and 16 characters a
                                   # token that finds the engine idle is tagged on the event loop, without the
                                   # thread hops (0: never)

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_queue", "max_body_bytes", "batch_size", "max_sentence_tokens",
                     "max_request_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not self.batch_wait_ms >= 0 or not self.timeout_s > 0 or self.max_n_best < 0 \
                or not self.read_timeout_s > 0 or self.inline_tokens < 0:
            raise ConfigError("--batch-wait must be >= 0, --timeout and --read-timeout > 0, --max-n-best >= 0 "
                              "and inline_tokens >= 0")

    @property
    def limits(self) -> jobs.Limits:
        return jobs.Limits(self.max_sentence_tokens, self.max_request_tokens, self.max_batch_tokens,
                           self.batch_size)


class Service:
    """The loaded model behind the endpoints: tags jobs in batches, keeps the metrics and the state."""

    def __init__(self, tagger: Tagger, settings: Settings,
                 submit: Callable[[TagJob], Awaitable[Tagged]] | None = None):
        self.tagger, self.settings, self.submit = tagger, settings, submit
        self.metrics = Metrics()
        self.batcher = Batcher(self.handle, settings.max_batch_tokens, settings.batch_wait_ms / 1000,
                               settings.max_queue, on_batch=self._on_batch)
        self.reads = BodyReads(settings.read_timeout_s)
        self.state = "loading"  # -> "ready" once loaded and warm -> "draining" at SIGTERM or shutdown
        self.info = json.dumps(tagger.info(), ensure_ascii=False).encode("utf-8")

    # -- the engine side (a worker thread) --------------------------------------------------------------

    def handle(self, batch: Sequence[TagJob]) -> list[Tagged | Exception]:
        """Tag a batch of requests (tagger/serving/jobs.py): those asking the same (kind, options) together;
        their tokens are counted here, once a batch."""
        results = jobs.handle(self.tagger, batch, self.settings.limits)
        self.metrics.tokens.inc(sum(r.tokens for r in results if isinstance(r, Tagged)))
        return results

    # -- the event-loop side ----------------------------------------------------------------------------

    async def tag(self, job: TagJob, size: int | None = None) -> Tagged:
        """Tag one request through the batcher: QueueFull -> 503, past the time limit -> 504 (and the
        engine drops the job at its next chunk: the job carries its deadline)."""
        if size is None:
            size = sum(jobs.estimate(self.tagger, text) for text in job.items) if job.kind == "text" \
                else sum(map(len, job.items))
        if job.kind == "tokens":  # token lists are measured at once: one past a limit is never queued (413)
            jobs.measure(self.tagger, job, self.settings.limits)
        job = TagJob(job.kind, job.items, job.options, time.monotonic() + self.settings.timeout_s)
        try:
            if self.submit is not None:  # another batcher (Ray Serve's): it bounds its own queue
                tagged = await asyncio.wait_for(self.submit(job), self.settings.timeout_s)
                if isinstance(tagged, Exception):  # @serve.batch returns handle()'s per-job errors as values
                    raise tagged
            else:
                inline = job.kind != "call" and size <= self.settings.inline_tokens \
                    and sum(map(len, chain.from_iterable(job.items) if job.kind == "tokens" else job.items)) \
                    <= INLINE_CHARS_PER_TOKEN * self.settings.inline_tokens  # a text of few spaces is no small job
                tagged = await self.batcher.submit(job, size, self.settings.timeout_s, inline)
        except QueueFull:
            raise HTTPError(503, "the server is busy: too many requests are waiting; retry shortly",
                            {"Retry-After": "1"}) from None
        except TimeoutError:
            raise HTTPError(504, f"not answered within the time limit of {self.settings.timeout_s:g} s") from None
        return tagged

    async def tag_texts(self, texts: Sequence[str], options: ScoreOptions = ScoreOptions()) -> list[dict]:
        """For extra routes: the /v1/tag records of raw texts, as dicts."""
        return (await self.tag(TagJob("text", tuple(texts), options))).records

    async def run(self, fn: Callable[[Tagger], Any], size: int) -> Any:
        """For extra routes: fn(the served tagger) in the engine thread, with /v1/tag's queue and time limits
        (503, 504); `size`: the tokens it will tag, roughly (what the batch budget counts)."""
        return (await self.tag(TagJob("call", (fn,), ScoreOptions()), max(1, size))).records[0]

    def swap(self, tagger: Tagger) -> None:
        """Serve `tagger` on every route from now on (a retrained model): the next batch, /info and the
        extra routes read it; a batch already in the engine finishes with the model it started with."""
        self.info = json.dumps(tagger.info(), ensure_ascii=False).encode("utf-8")
        self.tagger = tagger

    def _on_batch(self, stats: BatchStats) -> None:
        self.metrics.batch(stats)
        self.metrics.queue.set(self.batcher.depth)

    def drain(self) -> None:
        """Shutting down (SIGTERM; safe to call from a signal handler): /health answers 503 from now on, and
        bodies still arriving get a second more, then 503, so that draining never waits for a slow client."""
        self.state = "draining"
        self.reads.drain()

    def endpoint(self, route: str, handler: Callable[[Request], Awaitable[Response]], auth: bool = True
                 ) -> Callable[[Request], Awaitable[Response]]:
        """`handler` with the token check (if `auth`), a one-line JSON body for any refusal, a 500 without
        a traceback for a bug (logged here), and the request counted and timed under `route`. A client that
        hung up mid-body is counted under 499 (nginx's "client closed request") and gets nothing."""
        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            self.metrics.in_flight.inc()
            try:
                if auth:
                    self._check_token(request)
                response = await handler(request)
            except HTTPError as e:
                response = JSONResponse({"error": e.message}, e.status, e.headers)
            except ClientGone:
                response = Response(status_code=499)
            except Exception:  # a bug: logged with its traceback here, never sent
                log.exception("%s %s failed", request.method, request.url.path)
                response = JSONResponse({"error": "internal error (logged by the server)"}, 500)
            self.metrics.in_flight.dec()
            self.metrics.answered(route, response.status_code, time.perf_counter() - start)
            return response
        return wrapped

    def _check_token(self, request: Request) -> None:
        expected = self.settings.token
        if expected is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected.encode())
        if not ok:
            raise HTTPError(401, "missing or wrong bearer token (Authorization: Bearer ...)",
                            {"WWW-Authenticate": "Bearer", **CLOSE})  # its body is never read: close


# -- the app ----------------------------------------------------------------------------------------------------

class ServingApp(Starlette):
    """Starlette with one shortcut: POST /v1/tag, what every tagging client calls, goes straight to its
    endpoint, past the router and Starlette's two exception middlewares (a tenth of the event loop's time
    for a small request): the endpoint (`Service.endpoint`) answers every error itself, 4xx or 500. Not
    taken when there is middleware (CORS) to run; any other path, method or scope goes through Starlette."""

    shortcut: Callable[[Request], Awaitable[Response]] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.shortcut is None or scope["type"] != "http" or scope["path"] != "/v1/tag" \
                or scope["method"] != "POST":
            return await super().__call__(scope, receive, send)
        scope["app"] = self
        response = await self.shortcut(Request(scope, receive, send))
        await response(scope, receive, send)


def create_app(model: str | os.PathLike | Tagger, settings: Settings | None = None,
               routes: Sequence[BaseRoute] = (),
               submit: Callable[[TagJob], Awaitable[Tagged]] | None = None) -> Starlette:
    """The ASGI app serving `model` (a model directory, or a loaded Tagger), for uvicorn or to mount in
    another service. `routes` are added after the built-in ones (see the module docstring). `submit`: how a
    job reaches the engine, when not through this process's Batcher (Ray Serve passes its @serve.batch
    method, which calls `Service.handle` on the batch)."""
    settings = settings or Settings()
    tagger = model if isinstance(model, Tagger) else Tagger.load(model)
    check_servable(tagger, None if isinstance(model, Tagger) else str(model))
    service = Service(tagger, settings, submit)
    warm_up = TagJob("text", ("Warm up the engine.",), ScoreOptions())
    jobs.handle(tagger, [warm_up], settings.limits)  # the first request pays no set-up (and counts no tokens)

    async def tag(request: Request) -> Response:
        body = await read_json(request, settings.max_body_bytes, service.reads)
        job, single = parse_tag_request(body, settings.max_n_best)
        records = [jsonl(record)[:-1] for record in (await service.tag(job)).records]
        answer = records[0] if single else "[" + ",".join(records) + "]"
        return Response(answer.encode("utf-8"), media_type=JSON)

    async def hf(request: Request) -> Response:
        texts, single, ignore = parse_hf_request(await read_json(request, settings.max_body_bytes, service.reads))
        tagged = await service.tag(TagJob("text", tuple(texts), ScoreOptions(scores=True)))
        answers = [hf_entities(record, ignore) for record in tagged.records]
        return JSONResponse(answers[0] if single else answers)

    async def health(request: Request) -> Response:
        ready = service.state == "ready"
        return JSONResponse({"status": service.state}, 200 if ready else 503, None if ready else {"Retry-After": "1"})

    async def info(request: Request) -> Response:
        return Response(service.info, media_type=JSON)

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if service.submit is None:
            service.batcher.start()
        yield
        service.state = "draining"
        await service.batcher.stop()

    table = [Route("/v1/tag", service.endpoint("tag", tag), methods=["POST"]),
             Route("/", service.endpoint("hf", hf), methods=["POST"]),
             Route("/health", service.endpoint("health", health, auth=False), methods=["GET"]),
             Route("/info", service.endpoint("info", info), methods=["GET"]),
             Route("/metrics", service.endpoint("metrics", metrics), methods=["GET"]),
             *routes]
    middleware = []
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                                     allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"]))
    app = ServingApp(routes=table, middleware=middleware, lifespan=lifespan)
    if not middleware:
        app.shortcut = table[0].endpoint  # POST /v1/tag
    app.state.service = service
    service.state = "ready"  # loaded and warm (mounted without lifespan events, the batcher starts on first use)
    return app


def check_servable(tagger: Tagger, path: str | None) -> None:
    """HTTP requests carry no feature columns: a model that needs them cannot be served (one line)."""
    if tagger.vocab.features:
        raise ModelError("this model needs feature columns (CoNLL input), which HTTP requests do not carry: "
                         "serve a model trained without --features", path=path)
