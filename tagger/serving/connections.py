"""What one connection may cost the server, below the app: uvicorn's httptools protocol with two bounds it
lacks (uvicorn's issue #157: no timeout covers a request's headers, nothing caps pipelined requests), and
one answer one write.

- A request's headers must arrive within `header_timeout_s` of its first byte (or of the connection's
  opening): a client trickling headers (slowloris) is closed then, instead of holding a connection forever.
  Idle keep-alive connections are uvicorn's own `timeout_keep_alive`; the body's deadline is the app's
  (tagger/serving/bodies.py BodyReads, a 408 in JSON). One timer a connection, not one a request: each
  request moves the deadline, and the timer, when it fires, closes the connection or re-arms for the
  deadline it finds (a keep-alive client sending a request a millisecond re-arms once every timeout).
- A connection may queue at most `max_pipelined` requests behind the one being answered. uvicorn parses
  every request in what it has read and queues them all: a client that pipelines requests and never reads
  the answers made the server hold everything it sent (1.4 GB from 4 connections). Past the cap the
  connection is closed and its queue dropped.
- uvicorn writes an answer's status line and headers, then its body: two system calls, two TCP segments.
  The head is held until the body's first bytes and both go in one write (a quarter of the event loop's
  time for small answers went to these writes).

`tagger serve` hands uvicorn `functools.partial(BoundedHttpTools, header_timeout_s=...)` as its protocol.
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_PIPELINED = 16  # requests a connection may send ahead of its answers; browsers and most clients send none


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a headers deadline, a pipelining cap and an answer in one write (see
    the module docstring)."""

    def __init__(self, *args: Any, header_timeout_s: float = 10.0, max_pipelined: int = MAX_PIPELINED,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_timeout_s, self.max_pipelined = header_timeout_s, max_pipelined
        self._headers_due: float | None = None  # loop time by which the current request's headers must be in
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._headers_due is None:
            self._expect_headers()

    def on_headers_complete(self) -> None:
        self._headers_due = None
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, OneWrite):
            self.cycle.transport = OneWrite(self.transport, self.cycle)
        if len(self.pipeline) > self.max_pipelined:
            self.pipeline.clear()
            if not self.transport.is_closing():
                self.logger.warning("closed a connection that pipelined more than %d requests", self.max_pipelined)
                self.transport.close()

    def _expect_headers(self) -> None:
        self._headers_due = self.loop.time() + self.header_timeout_s
        if self._timer is None:
            self._timer = self.loop.call_at(self._headers_due, self._check_headers)

    def _check_headers(self) -> None:
        """The timer: close a connection whose headers are late, re-arm for a deadline still ahead."""
        self._timer = None
        if self._headers_due is None or self.transport.is_closing():
            return
        if self.loop.time() >= self._headers_due:
            self.transport.close()
        else:
            self._timer = self.loop.call_at(self._headers_due, self._check_headers)


class OneWrite:
    """The connection's transport as one answer's cycle sees it: the head (the first write once the response
    has started) is held and goes out with the next write, the body's first bytes, in one system call; at
    the latest at the end of the event loop's turn (a HEAD answer writes no body, a stream may wait). A 100
    Continue (written before the response starts) goes at once; a close writes what is held first."""

    __slots__ = ("transport", "cycle", "held", "head_seen")

    def __init__(self, transport: asyncio.Transport, cycle: Any):
        self.transport, self.cycle = transport, cycle
        self.held: bytes | None = None
        self.head_seen = False

    def write(self, data: bytes) -> None:
        if not self.head_seen and self.cycle.response_started:
            self.head_seen, self.held = True, data
            asyncio.get_running_loop().call_soon(self.flush)
        elif self.held is not None:
            held, self.held = self.held, None
            self.transport.write(held + data)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # anything else uvicorn may ask of its transport
        return getattr(self.transport, name)
