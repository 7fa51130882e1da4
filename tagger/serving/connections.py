"""What one connection may cost the server, below the app: uvicorn's httptools protocol with two bounds it
lacks (uvicorn's issue #157: no timeout covers a request's headers, nothing caps pipelined requests).

- A request's headers must arrive within `header_timeout_s` of its first byte (or of the connection's
  opening): a client trickling headers (slowloris) is closed then, instead of holding a connection forever.
  Idle keep-alive connections are uvicorn's own `timeout_keep_alive`; the body's deadline is the app's
  (tagger/serving/bodies.py BodyReads, a 408 in JSON).
- A connection may queue at most `max_pipelined` requests behind the one being answered. uvicorn parses
  every request in what it has read and queues them all: a client that pipelines requests and never reads
  the answers made the server hold everything it sent (1.4 GB from 4 connections). Past the cap the
  connection is closed and its queue dropped.

`tagger serve` hands uvicorn `functools.partial(BoundedHttpTools, header_timeout_s=...)` as its protocol.
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_PIPELINED = 16  # requests a connection may send ahead of its answers; browsers and most clients send none


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a headers deadline and a pipelining cap (see the module docstring)."""

    def __init__(self, *args: Any, header_timeout_s: float = 10.0, max_pipelined: int = MAX_PIPELINED,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_timeout_s, self.max_pipelined = header_timeout_s, max_pipelined
        self._headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._headers_due is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if len(self.pipeline) > self.max_pipelined:
            self.pipeline.clear()
            if not self.transport.is_closing():
                self.logger.warning("closed a connection that pipelined more than %d requests", self.max_pipelined)
                self.transport.close()

    def _arm(self) -> None:
        self._headers_due = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_too_slow(self) -> None:
        self._headers_due = None
        if not self.transport.is_closing():
            self.transport.close()
