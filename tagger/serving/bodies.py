"""What a request to the server may say, checked: the body read within its size and time limits, then /v1/tag's
and the Hugging Face shape's fields, types and ranges. Each refusal is an HTTPError with its status (400 not
JSON, nested too deep, an integer too long or a lone surrogate; 408 too slow; 413 too large; 422 wrong fields
or types) and a one-line message (tagger/serving/server.py answers it)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from starlette.requests import ClientDisconnect, Request

from tagger.tagging.confidence import ScoreOptions

TAG_FIELDS = {"text", "texts", "tokens", "scores", "min_score", "n_best"}
HF_FIELDS = {"inputs", "parameters", "options"}
HF_PARAMETERS = {"aggregation_strategy", "ignore_labels", "stride"}
HF_AGGREGATIONS = {None, "simple", "first", "average", "max"}  # each gives whole entities, as the tagger does
MAX_INT_DIGITS = 20  # no field needs a longer integer; Python refuses to convert past 4,300 digits anyway
DEFAULT_READ_TIMEOUT_S = 10.0
CLOSE = {"Connection": "close"}  # answered before its body was read: the connection cannot be reused
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a UTF-16 surrogate written as a JSON escape


class HTTPError(Exception):
    """A request the server refuses: its status and a one-line message (and extra headers)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, " ".join(message.split()), headers or {}


@dataclass(frozen=True)
class TagJob:
    """One request's work for the engine: raw texts or token lists, and what to add."""

    kind: str  # "text" or "tokens"
    items: tuple
    options: ScoreOptions
    deadline: float | None = field(default=None, compare=False)  # time.monotonic() past which nobody waits


class ClientGone(Exception):
    """The client closed its connection before its body arrived: nothing to answer, and not a server error."""


class BodyReads:
    """The request bodies being read now, each under a deadline of `timeout_s` seconds. `drain()` (SIGTERM)
    brings every deadline to at most `drain_s` from then: a body arriving at speed still completes, a slow
    one gets 503 within `drain_s`, so that shutting down never waits for a slow client."""

    def __init__(self, timeout_s: float, drain_s: float = 1.0):
        self.timeout_s, self.drain_s, self.draining = timeout_s, drain_s, False
        self._open: set[asyncio.Timeout] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def drain(self) -> None:
        """Called from a signal handler: the deadlines move to now on the event loop's own thread."""
        self.draining = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._end_all)

    def _end_all(self) -> None:
        last = asyncio.get_running_loop().time() + self.drain_s
        for deadline in self._open:
            deadline.reschedule(min(last, deadline.when() or last))

    async def chunks(self, request: Request) -> AsyncIterator[bytes]:
        """The body's chunks, within the deadline: 408 past it, 503 when draining, ClientGone on a hang-up.
        A body already received is never cut: the deadline only fires while waiting for bytes."""
        self._loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(min(self.timeout_s, self.drain_s) if self.draining else self.timeout_s)
        try:
            async with deadline:
                self._open.add(deadline)
                async for chunk in request.stream():
                    yield chunk
        except TimeoutError:
            if self.draining:
                raise HTTPError(503, "the server is shutting down: send the request again",
                                {"Retry-After": "1", **CLOSE}) from None
            raise HTTPError(408, f"the body did not arrive within the time limit of {self.timeout_s:g} s",
                            CLOSE) from None
        except ClientDisconnect:
            raise ClientGone() from None
        finally:
            self._open.discard(deadline)


async def read_json(request: Request, limit: int, reads: BodyReads | None = None) -> Any:
    """The body as JSON: 413 past `limit` bytes (told by Content-Length or found while reading), 408 or 503
    when it does not arrive in time (`reads`), 400 when it is not JSON, is nested too deep, holds an integer
    of more than MAX_INT_DIGITS digits or a lone UTF-16 surrogate (no text can hold one). Without `reads`
    (the server's Service.reads), a deadline of DEFAULT_READ_TIMEOUT_S that no drain cuts short."""
    reads = reads or BodyReads(DEFAULT_READ_TIMEOUT_S)
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HTTPError(413 if length.isdigit() else 400,
                        f"the body is larger than the limit of {limit} bytes" if length.isdigit()
                        else "Content-Length is not a number", CLOSE)
    chunks, size = [], 0
    async with contextlib.aclosing(reads.chunks(request)) as stream:  # closed here: its deadline with it
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"the body is larger than the limit of {limit} bytes", CLOSE)
            chunks.append(chunk)
    return parse_json(b"".join(chunks))


def parse_json(body: bytes) -> Any:
    """A body's JSON (see read_json for what is refused, with 400)."""
    if not body.strip():
        raise HTTPError(400, "the body is empty: send a JSON object")
    try:
        value = _DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HTTPError(400, f"the body is not valid JSON ({e})") from None
    except RecursionError:
        raise HTTPError(400, "the body is not valid JSON here: it is nested too deeply") from None
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(value):
        raise HTTPError(400, "the body holds a lone UTF-16 surrogate (such as \\ud800), which is not text")
    return value


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise HTTPError(400, f"the body holds an integer of {len(digits)} digits; "
                             f"the limit is {MAX_INT_DIGITS}")
    return int(digits)


_DECODER = json.JSONDecoder(parse_int=_int)


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string in a parsed body (keys included) holds a surrogate that is not half of a pair."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            todo += item.keys()
            todo += item.values()
        elif isinstance(item, list):
            todo += item
    return False


def parse_tag_request(body: Any, max_n_best: int) -> tuple[TagJob, bool]:
    """A /v1/tag body -> its job, and whether the answer is one record ("text") rather than a list. 422
    for wrong types, unknown fields or not exactly one of text/texts/tokens."""
    if not isinstance(body, dict):
        raise HTTPError(422, f"the body must be a JSON object, not {_json_type(body)}")
    unknown = sorted(set(body) - TAG_FIELDS)
    if unknown:
        raise HTTPError(422, f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(TAG_FIELDS))})")
    given = [name for name in ("text", "texts", "tokens") if name in body]
    if len(given) != 1:
        raise HTTPError(422, "give exactly one of \"text\", \"texts\" or \"tokens\"")
    name = given[0]
    value = body[name]
    if name == "text":
        _expect(isinstance(value, str), "\"text\" must be a string")
        items: tuple = (value,)
    elif name == "texts":
        _expect(isinstance(value, list) and all(isinstance(t, str) for t in value),
                "\"texts\" must be a list of strings")
        items = tuple(value)
    else:
        _expect(isinstance(value, list) and all(isinstance(s, list) and all(isinstance(t, str) for t in s)
                                                for s in value),
                "\"tokens\" must be a list of sentences, each a list of strings")
        items = tuple(tuple(s) for s in value)
    return TagJob("text" if name != "tokens" else "tokens", items, _options(body, max_n_best)), name == "text"


def _options(body: dict, max_n_best: int) -> ScoreOptions:
    scores = body.get("scores", False)
    min_score = body.get("min_score")
    n_best = body.get("n_best", 0)
    _expect(isinstance(scores, bool), "\"scores\" must be true or false")
    _expect(min_score is None or (isinstance(min_score, (int, float)) and not isinstance(min_score, bool)
                                  and math.isfinite(min_score) and 0 <= min_score <= 1),
            "\"min_score\" must be a number in [0, 1]")
    _expect(n_best is None or (isinstance(n_best, int) and not isinstance(n_best, bool) and 0 <= n_best),
            "\"n_best\" must be a whole number >= 0")
    if n_best and n_best > max_n_best:
        raise HTTPError(422, f"\"n_best\" may be at most {max_n_best} (the server's --max-n-best)")
    return ScoreOptions(scores=scores, min_score=None if min_score is None else float(min_score),
                        n_best=n_best or 0)


def parse_hf_request(body: Any) -> tuple[list[str], bool, set[str]]:
    """A Hugging Face token-classification body -> (texts, whether "inputs" was one string, labels to drop)."""
    if not isinstance(body, dict):
        raise HTTPError(422, f"the body must be a JSON object, not {_json_type(body)}")
    unknown = sorted(set(body) - HF_FIELDS)
    if unknown:
        raise HTTPError(422, f"unknown field {unknown[0]!r} (fields: inputs, parameters, options)")
    inputs = body.get("inputs")
    _expect(isinstance(inputs, str) or (isinstance(inputs, list) and all(isinstance(t, str) for t in inputs)),
            "\"inputs\" must be a string or a list of strings")
    parameters = body.get("parameters") or {}
    _expect(isinstance(parameters, dict), "\"parameters\" must be an object")
    unknown = sorted(set(parameters) - HF_PARAMETERS)
    if unknown:
        raise HTTPError(422, f"unknown parameter {unknown[0]!r} (parameters: {', '.join(sorted(HF_PARAMETERS))})")
    aggregation = parameters.get("aggregation_strategy")
    _expect(aggregation in HF_AGGREGATIONS, "\"aggregation_strategy\" must be one of simple, first, average, "
            "max: the tagger answers whole entities")
    ignore = parameters.get("ignore_labels") or []
    _expect(isinstance(ignore, list) and all(isinstance(x, str) for x in ignore),
            "\"ignore_labels\" must be a list of strings")
    stride = parameters.get("stride")
    _expect(stride is None or (isinstance(stride, int) and not isinstance(stride, bool) and stride >= 0),
            "\"stride\" must be a whole number >= 0 (the tagger needs no chunking: it is accepted and unused)")
    return ([inputs] if isinstance(inputs, str) else list(inputs)), isinstance(inputs, str), set(ignore)


def hf_entities(record: dict, ignore: set[str]) -> list[dict]:
    """A /v1/tag record's entities in the Hugging Face pipeline's aggregated shape."""
    return [{"entity_group": e["label"], "score": e["score"], "word": e["text"], "start": e["start"],
             "end": e["end"]} for e in record["entities"] if e["label"] not in ignore]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise HTTPError(422, message)


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
